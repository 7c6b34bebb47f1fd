"""A container's mounts as the kernel reports them (``/proc/<pid>/mountinfo``): pure parsing.

The live truth of a workspace's fast mounts is its mount table, not a record the service
keeps: a mount made there is listed until it is unmounted or the container ends. From it:

- :func:`project_mount`: the workspace's ``/data/project`` (the project's shared data) and
  whether it is read-only;
- :func:`fast_mounts`: every mount at or below ``/data/mounts/``, with its mode and its
  source under ``/data/project`` (a fast mount is a bind of a directory of the project mount:
  same device, its root below the project mount's root);
- each mount's **identity** (device and root within that file system): the same directory
  of the project's data has the same identity in every container, which is what read-write
  claims compare (:mod:`.claims`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .paths import MOUNTS_ROOT, PROJECT_ROOT

__all__ = ["FastMount", "MountEntry", "fast_mounts", "parse_mountinfo", "project_mount"]

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo: ``device`` ("major:minor"), ``root`` (the directory of that
    file system mounted here), ``mount_point`` (as the process sees it)."""

    mount_id: int
    device: str
    root: str
    mount_point: str
    read_only: bool


@dataclass(frozen=True)
class FastMount:
    """A fast mount of a workspace: ``source`` is None when the mount is not of the project
    data (something else mounted below /data/mounts)."""

    mount_path: str
    source: str | None
    read_only: bool
    device: str
    root: str

    @property
    def mode(self) -> str:
        return "read-only" if self.read_only else "read-write"

    def as_json(self) -> dict:
        return {"mount_path": self.mount_path, "source": self.source, "mode": self.mode}


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a mountinfo text, in its order (later mounts over earlier ones).
    Lines that do not parse are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            fields.index("-", 6)  # the separator before the file system's fields
            options = fields[5].split(",")
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    device=fields[2],
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    read_only="ro" in options,
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


def _topmost(entries: Iterable[MountEntry], mount_point: str) -> MountEntry | None:
    found = None
    for entry in entries:
        if entry.mount_point == mount_point:
            found = entry  # a later mount at the same point hides the earlier one
    return found


def project_mount(entries: list[MountEntry]) -> MountEntry | None:
    """The mount at ``/data/project``, None when the workspace has none."""
    return _topmost(entries, PROJECT_ROOT)


def _below(root: str, base: str) -> str | None:
    """``root`` relative to ``base`` ("" when equal), None when not below it."""
    if root == base:
        return ""
    prefix = base.rstrip("/") + "/"
    return root[len(prefix) :] if root.startswith(prefix) else None


def fast_mounts(entries: list[MountEntry]) -> list[FastMount]:
    """The mounts at or below ``/data/mounts/`` (the topmost at each point), sorted by path."""
    project = project_mount(entries)
    points = {}
    for entry in entries:
        if entry.mount_point.startswith(MOUNTS_ROOT + "/"):
            points[entry.mount_point] = entry
    found = []
    for point, entry in sorted(points.items()):
        source = None
        if project is not None and entry.device == project.device:
            relative = _below(entry.root, project.root)
            if relative is not None:
                source = f"{PROJECT_ROOT}/{relative}" if relative else PROJECT_ROOT
        found.append(FastMount(point, source, entry.read_only, entry.device, entry.root))
    return found
