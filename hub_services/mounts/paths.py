"""What a fast-mount request may name: pure checks of ``mount_path``, ``source`` and ``mode``.

A fast mount binds a directory of the project's shared data (``source``, under
``/data/project/``) to a directory under ``/data/mounts/`` (``mount_path``) of a running
workspace. Both are given as the workspace sees them; each must be an absolute path of one or
more *safe segments* below its root: letters, digits, ``.``, ``_``, ``-``, at most
:data:`MAX_SEGMENT` characters, not ``.`` or ``..``, no empty segment, at most
:data:`MAX_DEPTH` segments. Nothing here resolves a link: the host side walks each segment
without following links (:mod:`.namespace`), so a link the user made is refused there.

:func:`parse_mount_request` turns a request body into a :class:`MountRequest` or raises
:class:`FieldProblem` naming the field and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_DEPTH",
    "MAX_SEGMENT",
    "MODES",
    "MOUNTS_ROOT",
    "PROJECT_ROOT",
    "FieldProblem",
    "MountRequest",
    "nested",
    "parse_mount_path",
    "parse_mount_request",
    "segments_below",
]

MOUNTS_ROOT = "/data/mounts"
PROJECT_ROOT = "/data/project"
MODES = ("read-only", "read-write")
MAX_SEGMENT = 128
MAX_DEPTH = 16
_SEGMENT = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_FIELDS = ("mount_path", "source", "mode")
SAFE_SEGMENTS = (
    "one or more segments of letters, digits, '.', '_' or '-', not starting with '-' "
    f"(at most {MAX_SEGMENT} characters each, at most {MAX_DEPTH} segments, no '.' or '..', "
    "no '//', no trailing '/')"
)


class FieldProblem(ValueError):
    """A request field that is not allowed: ``field`` and a sentence saying what is."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class MountRequest:
    """A checked request: ``target`` and ``source`` are the segments below
    :data:`MOUNTS_ROOT` and :data:`PROJECT_ROOT`."""

    target: tuple[str, ...]
    source: tuple[str, ...]
    read_only: bool = True

    @property
    def mount_path(self) -> str:
        return "/".join((MOUNTS_ROOT, *self.target))

    @property
    def source_path(self) -> str:
        return "/".join((PROJECT_ROOT, *self.source))

    @property
    def mode(self) -> str:
        return MODES[0] if self.read_only else MODES[1]


def segments_below(value: object, root: str, field: str) -> tuple[str, ...]:
    """The safe segments of ``value`` below ``root`` (``root/a/b`` → ``("a", "b")``), or
    :class:`FieldProblem` for ``field``."""
    what = f"must be a path under {root}/: {SAFE_SEGMENTS}"
    if not isinstance(value, str):
        raise FieldProblem(field, f"{what}; got {value!r}"[:300])
    if not value.startswith(root + "/"):
        raise FieldProblem(field, f"{what}; got {value!r}"[:300])
    parts = value[len(root) + 1 :].split("/")
    if len(parts) > MAX_DEPTH:
        raise FieldProblem(field, f"{what}; got {len(parts)} segments")
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or len(part) > MAX_SEGMENT
            or not _SEGMENT.fullmatch(part)
        ):
            raise FieldProblem(field, f"{what}; got {value!r}"[:300])
    return tuple(parts)


def parse_mount_path(value: object) -> tuple[str, ...]:
    """The segments of a ``mount_path`` (also for a delete's query argument)."""
    return segments_below(value, MOUNTS_ROOT, "mount_path")


def parse_mount_request(body: object) -> MountRequest:
    """``{"mount_path": ..., "source": ..., "mode": "read-only" | "read-write"}`` (mode
    optional, read-only by default; no other keys) as a :class:`MountRequest`."""
    if not isinstance(body, Mapping):
        raise FieldProblem("body", "must be a JSON object of mount_path, source and mode")
    unknown = sorted(str(k) for k in body if k not in _FIELDS)
    if unknown:
        raise FieldProblem(
            unknown[0][:60], f"is not a field of a mount; allowed: {', '.join(_FIELDS)}"
        )
    if "mount_path" not in body:
        raise FieldProblem("mount_path", f"is required: a path under {MOUNTS_ROOT}/")
    if "source" not in body:
        raise FieldProblem("source", f"is required: a directory under {PROJECT_ROOT}/")
    target = parse_mount_path(body["mount_path"])
    source = segments_below(body["source"], PROJECT_ROOT, "source")
    mode = body.get("mode", MODES[0])
    if mode not in MODES:
        raise FieldProblem("mode", f"must be one of {', '.join(MODES)}; got {mode!r}"[:200])
    return MountRequest(target, source, read_only=mode == MODES[0])


def nested(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether one segment path is the other or lies below it (``a/b`` and ``a``)."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]
