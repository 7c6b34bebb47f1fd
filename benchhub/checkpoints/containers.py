"""What checkpoints need to know about a workspace container, read from ``docker inspect``.

Pure functions of the inspect document (docker-py's ``inspect_container`` result), so the
spawner and the hub service agree on them and they are tested without an engine:

- :func:`upper_dir_of`: the container's writable layer (overlay2's ``UpperDir``), which is
  what a checkpoint captures and a restore fills.
- :func:`excluded_paths_of`: every mount point (``/data`` and anything mounted below it or
  elsewhere) plus the configured extras; mounted data is persistent on its own.
- :func:`host_dir_of`: the workspace's host directory, the parent of the ``/data`` bind
  mount's source (``<storage_root>/<user>/<workspace>/mnt``); it holds the checkpoint state.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from benchhub.labels import USER, WORKSPACE

from .errors import CheckpointError

__all__ = [
    "DATA_MOUNT",
    "excluded_paths_of",
    "host_dir_of",
    "image_of",
    "upper_dir_of",
    "workspace_of",
]

DATA_MOUNT = "/data"
USER_LABEL, WORKSPACE_LABEL = USER, WORKSPACE


def upper_dir_of(inspect: dict) -> str:
    """The container's overlay2 upper directory; raises :class:`CheckpointError` naming the
    storage driver when it is not overlay2."""
    driver = inspect.get("GraphDriver") or {}
    upper = (driver.get("Data") or {}).get("UpperDir")
    if driver.get("Name") != "overlay2" or not upper:
        raise CheckpointError(
            f"container {inspect.get('Name', '?').lstrip('/')} uses the "
            f"{driver.get('Name') or 'unknown'} storage driver: checkpoints need Docker's "
            "overlay2 driver (dockerd --storage-driver=overlay2)"
        )
    return upper


def excluded_paths_of(inspect: dict, extra=(DATA_MOUNT,)) -> list[str]:
    """Absolute container paths a checkpoint leaves out: the container's mount points and
    ``extra`` (``/data`` by default, whether or not it is mounted yet), sorted."""
    paths = {posixpath.normpath(p) for p in extra}
    for mount in inspect.get("Mounts") or ():
        destination = mount.get("Destination")
        if destination and destination.startswith("/"):
            paths.add(posixpath.normpath(destination))
    return sorted(paths)


def host_dir_of(inspect: dict) -> Path | None:
    """The host directory of the workspace (parent of the ``/data`` mount's source), or
    None if the container has no ``/data`` bind mount (not a BenchHub workspace)."""
    for mount in inspect.get("Mounts") or ():
        if mount.get("Destination") == DATA_MOUNT and mount.get("Type") == "bind":
            return Path(mount["Source"]).parent
    return None


def image_of(inspect: dict) -> dict:
    """``{"name", "id"}`` of the image the container runs: a checkpoint's files belong on
    top of it and nothing else."""
    return {"name": (inspect.get("Config") or {}).get("Image", ""), "id": inspect.get("Image", "")}


def workspace_of(container: dict) -> tuple[str, str] | None:
    """``(user, workspace)`` from a container's labels (``docker ps`` or inspect shape)."""
    labels = container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}
    user, name = labels.get(USER_LABEL), labels.get(WORKSPACE_LABEL)
    return (user, name) if user and name else None
