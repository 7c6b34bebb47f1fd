"""Read-write claims: only one running workspace may hold a directory of project data
read-write through a fast mount (Seqera: one running session per writable path).

Claims are not stored: they are the read-write fast mounts of the running workspaces, read
from their mount tables (:mod:`.mountinfo`) when a request comes. A workspace that stopped has
no mount table, so its claims are gone with it; nothing can go stale across a restart of the
service or of the host. Two claims collide when they are of the same file system (device) and
one directory is the other or contains it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .mountinfo import FastMount

__all__ = ["Holder", "holder_of"]


@dataclass(frozen=True)
class Holder:
    """Who holds a directory read-write: workspace ``key`` (``alice/lab``) at ``mount_path``,
    of ``source``."""

    key: str
    mount_path: str
    source: str | None


def _contains(a: str, b: str) -> bool:
    """Whether directory ``a`` is ``b`` or an ancestor of it."""
    return a == b or b.startswith(a.rstrip("/") + "/")


def holder_of(
    device: str, root: str, asking: str, mounts: Mapping[str, Iterable[FastMount]]
) -> Holder | None:
    """The running workspace other than ``asking`` that holds the directory (``device``,
    ``root``), a directory inside it or one around it read-write, or None. ``mounts``: each
    running workspace's fast mounts by key."""
    for key in sorted(mounts):
        if key == asking:
            continue  # a workspace may mount what it holds again
        for mount in mounts[key]:
            if mount.read_only or mount.device != device:
                continue
            if _contains(mount.root, root) or _contains(root, mount.root):
                return Holder(key, mount.mount_path, mount.source)
    return None
