"""Host ids of users inside containers, for tests that make files a container uses.

On an engine that remaps user namespaces, the workspace user (container uid 1000, gid 100)
is another host id (101000:100100 with Docker's default ranges): a test that prepares a
directory for a container chowns it to these ids, never to ``1000:100``.
"""

from __future__ import annotations

from benchhub.user_namespace import engine_id_map
from benchhub.volumes import DATA_GID, DATA_UID


def workspace_user_host_ids() -> tuple[int, int]:
    """The host ``(uid, gid)`` of the workspace user (jovyan, 1000:100 in the container)."""
    return engine_id_map().host_ids(DATA_UID, DATA_GID)


def container_root_host_uid() -> int:
    """The host uid that root in a container runs as (0 without remapping)."""
    return engine_id_map().host_ids(0, 0)[0]
