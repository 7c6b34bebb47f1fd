"""The checkpoint manifest: what a checkpoint contains, where it came from, what it costs.

A manifest is one JSON object, written last and atomically, so a checkpoint exists exactly
when its manifest does. Every manifest is a *full* description of the container's changes
(restoring one never needs another); storage is incremental because entries point at
content-addressed chunks shared by every checkpoint that has the same bytes::

    {"format": "benchhub-checkpoint", "version": 1,
     "workspace": "alice--analysis", "checkpoint": "20250101T120000123Z-a1b2c3",
     "created": "2025-01-01T12:00:00.123000+00:00", "kind": "automatic" | "named",
     "name": null | "before_upgrade", "parent": null | "<checkpoint id>",
     "reason": null | "on stop" | "periodic" | ...,               # what took it
     "image": null | {"name": "benchhub/jupyterlab:latest", "id": "sha256:…"},  # its base
     "origin": null | {"workspace": ..., "checkpoint": ...},      # set by a clone
     "source": null | "<st_dev>:<st_ino> of the upper directory",  # fast-path identity
     "chunking": {...ChunkingParams.describe()},
     "totals": {"entries", "files", "logical_bytes", "chunks", "referenced_bytes",
                "stored_bytes", "new_chunks", "new_stored_bytes"},
     "chunks": {"<sha256>": [raw_bytes, stored_bytes], ...},
     "entries": [{"path": "usr/lib/x", "type": "file", "mode": 420, "uid": 0, "gid": 0,
                  "mtime_ns": ..., "size": ..., "chunks": ["<sha256>", ...],
                  "holes": [[offset, length], ...],                 # sparse files only
                  "xattrs": {"user.k": "<base64>"}, "ino": ..., "ctime_ns": ...}, ...]}

Entry types: ``dir`` (``opaque`` true when it hides the image's directory), ``file``,
``hardlink`` (``target`` = path of an earlier ``file`` entry of the same inode), ``symlink``
(``target`` = link text, never followed), ``whiteout`` (the path was deleted), ``fifo``.
``ino``/``ctime_ns`` are present only when the file was stable while read; they let the next
checkpoint of the same upper directory reuse the chunk list without reading the file.
``holes`` are the ranges of a sparse file that hold no data (sorted, apart): its chunks are
the bytes of the other ranges, one after the other, so a 10 TB file that is all hole costs
no reading, no chunk and no disk on restore. ``size`` is the file's size, holes included.

Loading validates everything a restore relies on: paths are relative, normalised, without
``..``, unique, and each one's parent is an earlier ``dir`` entry; hard links point back at
files; chunk keys are well formed and sizes (chunks plus holes) add up; only kept xattr namespaces
appear.
Everything here is pure.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .chunking import is_chunk_key
from .errors import InvalidCheckpointName, ManifestInvalid

__all__ = [
    "ENTRY_TYPES",
    "KINDS",
    "Entry",
    "Manifest",
    "build_manifest",
    "check_id",
    "is_excluded",
    "is_kept_xattr",
    "is_safe_path",
    "make_checkpoint_id",
    "normalise_excludes",
    "normalise_name",
]

FORMAT = "benchhub-checkpoint"
VERSION = 1
ENTRY_TYPES = ("dir", "file", "hardlink", "symlink", "whiteout", "fifo")
KINDS = ("automatic", "named")
_KEPT_XATTRS = (
    "user.",
    "security.capability",
    "system.posix_acl_access",
    "system.posix_acl_default",
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_ID = 2**32 - 1


def is_safe_path(path: object) -> bool:
    """Whether ``path`` is relative, normalised and free of ``..``, ``.`` and NUL."""
    if not isinstance(path, str) or not path or "\0" in path or len(path) > 4096:
        return False
    if path.startswith("/") or posixpath.normpath(path) != path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def is_kept_xattr(name: str) -> bool:
    """Whether an extended attribute is carried in checkpoints (overlay's own are not)."""
    return name.startswith(_KEPT_XATTRS)


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a usable workspace or checkpoint id, else raise ValueError."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r} must be 1-200 characters of letters, digits and . _ @ + -, "
            "starting with a letter or digit (e.g. 'alice--analysis')"
        )
    return value


def normalise_name(name: str) -> str:
    """A checkpoint name as stored: trimmed, runs of whitespace turned into one ``_``.

    Raises :class:`InvalidCheckpointName` unless the result is 1-64 letters, digits, ``.``,
    ``_`` or ``-`` starting with a letter or digit.
    """
    normalised = "_".join(str(name).split())
    if not _NAME.fullmatch(normalised):
        raise InvalidCheckpointName(
            f"checkpoint name {name!r} must be 1-64 letters, digits, '.', '_' or '-' (spaces "
            "become '_') and start with a letter or digit, e.g. 'before upgrade'"
        )
    return normalised


def normalise_excludes(paths: Iterable[str]) -> tuple[str, ...]:
    """Container paths to leave out (``/data``) as sorted relative paths (``data``).

    Raises ValueError for a path that is not absolute or contains ``..``.
    """
    result = set()
    for path in paths:
        rel = posixpath.normpath(str(path)).lstrip("/")
        if not str(path).startswith("/") or not is_safe_path(rel):
            raise ValueError(f"exclude path {path!r} must be absolute without '..', e.g. /data")
        result.add(rel)
    return tuple(sorted(result))


def is_excluded(path: str, excludes: Iterable[str]) -> bool:
    """Whether ``path`` (relative) is an excluded path or lies below one."""
    return any(path == ex or path.startswith(ex + "/") for ex in excludes)


def make_checkpoint_id(created: datetime, suffix: str | None = None) -> str:
    """A checkpoint id that sorts by creation time: ``20250101T120000123Z-a1b2c3``."""
    stamp = created.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    millis = created.astimezone(UTC).microsecond // 1000
    return f"{stamp}{millis:03d}Z-{suffix or secrets.token_hex(3)}"


@dataclass(frozen=True)
class Entry:
    """One path of the upper directory; see the module docstring for the fields."""

    path: str
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    target: str | None = None
    chunks: tuple[str, ...] = ()
    opaque: bool = False
    xattrs: tuple[tuple[str, bytes], ...] = ()
    ino: int | None = None
    ctime_ns: int | None = None
    holes: tuple[tuple[int, int], ...] = ()

    def data_regions(self) -> list[tuple[int, int]]:
        """``(offset, length)`` of the ranges of a file that are not :attr:`holes`, in order:
        where its chunks' bytes go."""
        regions, at = [], 0
        for offset, length in self.holes:
            if offset > at:
                regions.append((at, offset - at))
            at = offset + length
        if self.size > at:
            regions.append((at, self.size - at))
        return regions

    def to_json(self) -> dict:
        """The entry as JSON data, leaving out fields at their defaults."""
        data = {
            "path": self.path,
            "type": self.type,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
            "mtime_ns": self.mtime_ns,
        }
        if self.type == "file":
            data["size"] = self.size
            data["chunks"] = list(self.chunks)
            if self.holes:
                data["holes"] = [list(hole) for hole in self.holes]
        if self.target is not None:
            data["target"] = self.target
        if self.opaque:
            data["opaque"] = True
        if self.xattrs:
            data["xattrs"] = {k: base64.b64encode(v).decode() for k, v in self.xattrs}
        if self.ino is not None and self.ctime_ns is not None:
            data["ino"], data["ctime_ns"] = self.ino, self.ctime_ns
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> Entry:
        """Parse one entry; raises :class:`ManifestInvalid` on a malformed field."""
        if not isinstance(data, Mapping):
            raise ManifestInvalid(f"entry {data!r} is not an object")
        try:
            xattrs = tuple(
                (str(k), base64.b64decode(v, validate=True))
                for k, v in sorted(dict(data.get("xattrs") or {}).items())
            )
            entry = cls(
                path=data["path"],
                type=data["type"],
                mode=data["mode"],
                uid=data["uid"],
                gid=data["gid"],
                mtime_ns=data["mtime_ns"],
                size=data.get("size", 0),
                target=data.get("target"),
                chunks=tuple(data.get("chunks", ())),
                opaque=data.get("opaque", False),
                xattrs=xattrs,
                ino=data.get("ino"),
                ctime_ns=data.get("ctime_ns"),
                holes=tuple(tuple(hole) for hole in data.get("holes", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestInvalid(f"entry {data.get('path')!r} is malformed: {e!r}") from e
        entry.check()
        return entry

    def check(self) -> None:
        """Raise :class:`ManifestInvalid` unless the entry is well formed on its own."""
        problem = self._problem()
        if problem:
            raise ManifestInvalid(f"entry {self.path!r}: {problem}")

    def _problem(self) -> str | None:
        if not is_safe_path(self.path):
            return "path must be relative and normalised, without '..'"
        if self.type not in ENTRY_TYPES:
            return f"type must be one of {', '.join(ENTRY_TYPES)}"
        ints = (self.mode, self.uid, self.gid, self.mtime_ns, self.size)
        if any(type(v) is not int for v in ints) or not 0 <= self.mode <= 0o7777:
            return "mode, uid, gid, mtime_ns and size must be integers, mode at most 0o7777"
        if not (0 <= self.uid <= _MAX_ID and 0 <= self.gid <= _MAX_ID and self.size >= 0):
            return "uid, gid and size must be non-negative 32-bit values"
        if self.type != "file" and (self.chunks or self.size or self.holes):
            return "only files have chunks, holes and a size"
        if not _holes_in_order(self.holes, self.size):
            return "holes must be [offset, length] pairs, sorted, apart, inside the file"
        if not all(is_chunk_key(k) for k in self.chunks):
            return "chunk keys must be sha256 hex digests"
        if (self.target is not None) != (self.type in ("symlink", "hardlink")):
            return "symlinks and hard links, and only they, have a target"
        if self.type == "symlink" and (
            not isinstance(self.target, str) or not self.target or "\0" in self.target
        ):
            return "a symlink target must be a non-empty string"
        if self.type == "hardlink" and not is_safe_path(self.target):
            return "a hard link target must be a relative normalised path"
        if self.opaque is not False and (self.opaque is not True or self.type != "dir"):
            return "only directories can be opaque"
        if self.xattrs and self.type not in ("file", "dir"):
            return "only files and directories carry xattrs"
        if any(not is_kept_xattr(name) for name, _ in self.xattrs):
            return "xattrs are limited to user.*, security.capability and POSIX ACLs"
        return None


@dataclass(frozen=True)
class Manifest:
    """A checkpoint: lineage, totals, the chunk table and the entries (walk order).

    ``chunks`` maps every referenced chunk key to ``(raw_bytes, stored_bytes)``.
    """

    workspace_id: str
    checkpoint_id: str
    created: str
    kind: str
    entries: tuple[Entry, ...]
    chunks: Mapping[str, tuple[int, int]]
    name: str | None = None
    parent: str | None = None
    origin: Mapping[str, str] | None = None
    source: str | None = None
    reason: str | None = None
    image: Mapping[str, str] | None = None
    chunking: Mapping = field(default_factory=dict)
    totals: Mapping[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """Lineage and totals without entries or chunks (what a listing shows)."""
        return {
            "workspace": self.workspace_id,
            "checkpoint": self.checkpoint_id,
            "created": self.created,
            "kind": self.kind,
            "name": self.name,
            "parent": self.parent,
            "origin": dict(self.origin) if self.origin else None,
            "reason": self.reason,
            "image": dict(self.image) if self.image else None,
            "totals": dict(self.totals),
        }

    def to_json(self) -> dict:
        """The manifest as JSON data (see the module docstring)."""
        data = {"format": FORMAT, "version": VERSION, **self.summary()}
        data.update(source=self.source, chunking=dict(self.chunking))
        data["chunks"] = {k: list(v) for k, v in sorted(self.chunks.items())}
        data["entries"] = [e.to_json() for e in self.entries]
        return data

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, the stored form."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse and validate a stored manifest; raises :class:`ManifestInvalid`."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestInvalid(f"manifest is not JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestInvalid("not a BenchHub checkpoint manifest")
        if data.get("version") != VERSION:
            raise ManifestInvalid(f"manifest version {data.get('version')!r} is not {VERSION}")
        try:
            manifest = cls(
                workspace_id=data["workspace"],
                checkpoint_id=data["checkpoint"],
                created=data["created"],
                kind=data["kind"],
                name=data.get("name"),
                parent=data.get("parent"),
                origin=data.get("origin"),
                source=data.get("source"),
                reason=data.get("reason"),
                image=data.get("image"),
                chunking=dict(data.get("chunking") or {}),
                totals=dict(data.get("totals") or {}),
                chunks={k: (int(v[0]), int(v[1])) for k, v in dict(data["chunks"]).items()},
                entries=tuple(Entry.from_json(e) for e in data["entries"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            if isinstance(e, ManifestInvalid):
                raise
            raise ManifestInvalid(f"manifest is malformed: {e!r}") from e
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Raise :class:`ManifestInvalid` unless lineage and entries are consistent."""
        try:
            check_id("workspace id", self.workspace_id)
            check_id("checkpoint id", self.checkpoint_id)
            if self.parent is not None:
                check_id("parent checkpoint id", self.parent)
        except ValueError as e:
            raise ManifestInvalid(str(e)) from e
        if self.kind not in KINDS or (self.kind == "named") != (self.name is not None):
            raise ManifestInvalid("kind must be 'named' with a name or 'automatic' without")
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise ManifestInvalid(f"checkpoint name {self.name!r} is not a normalised name")
        if self.reason is not None and (not isinstance(self.reason, str) or len(self.reason) > 200):
            raise ManifestInvalid("reason must be text of at most 200 characters")
        if self.image is not None and not (
            isinstance(self.image, Mapping)
            and all(isinstance(v, str) and len(v) < 500 for v in self.image.values())
        ):
            raise ManifestInvalid("image must map 'name' and 'id' to text")
        if not all(is_chunk_key(k) and min(v) >= 0 for k, v in self.chunks.items()):
            raise ManifestInvalid("the chunk table has a malformed key or size")
        _check_tree(self.entries, self.chunks)

    def chunk_paths(self) -> dict[str, str]:
        """Each referenced chunk key mapped to the first path that uses it."""
        users: dict[str, str] = {}
        for entry in self.entries:
            for key in entry.chunks:
                users.setdefault(key, entry.path)
        return users

    def with_changes(self, **changes) -> Manifest:
        """A copy with some fields replaced (validated)."""
        manifest = replace(self, **changes)
        manifest.validate()
        return manifest


def _holes_in_order(holes: object, size: int) -> bool:
    """Whether ``holes`` are ``(offset, length)`` integer pairs, each at least one byte,
    sorted, not touching or overlapping, and inside ``size``."""
    end = -1
    for hole in holes if isinstance(holes, tuple) else (None,):
        if not (isinstance(hole, tuple) and len(hole) == 2 and all(type(v) is int for v in hole)):
            return False
        offset, length = hole
        if offset <= end or length < 1 or offset + length > size:
            return False
        end = offset + length
    return True


def _check_tree(entries: Iterable[Entry], chunks: Mapping[str, tuple[int, int]]) -> None:
    """Paths unique, parents are earlier directories, hard links point at earlier files,
    every chunk is in the table and file sizes equal the sum of their chunks."""
    types: dict[str, str] = {}
    for entry in entries:
        entry.check()
        if entry.path in types:
            raise ManifestInvalid(f"path {entry.path!r} appears twice")
        parent = posixpath.dirname(entry.path)
        if parent and types.get(parent) != "dir":
            raise ManifestInvalid(f"{entry.path!r} comes before its directory {parent!r}")
        if entry.type == "hardlink" and types.get(entry.target) != "file":
            raise ManifestInvalid(f"hard link {entry.path!r} must follow its file {entry.target!r}")
        if any(k not in chunks for k in entry.chunks):
            raise ManifestInvalid(f"{entry.path!r} uses a chunk missing from the chunk table")
        holes = sum(length for _, length in entry.holes)
        if sum(chunks[k][0] for k in entry.chunks) + holes != entry.size:
            raise ManifestInvalid(
                f"{entry.path!r}: chunk sizes and holes do not add up to {entry.size}"
            )
        types[entry.path] = entry.type


def build_manifest(
    workspace_id: str,
    entries: Iterable[Entry],
    chunks: Mapping[str, tuple[int, int]],
    *,
    created: datetime,
    name: str | None = None,
    parent: str | None = None,
    source: str | None = None,
    reason: str | None = None,
    image: Mapping[str, str] | None = None,
    chunking: Mapping | None = None,
    new_chunks: int = 0,
    new_stored_bytes: int = 0,
    checkpoint_id: str | None = None,
) -> Manifest:
    """Assemble and validate a manifest from a tree walk's entries and the chunk table.

    Only chunks some entry uses are kept; ``kind`` is ``named`` exactly when ``name`` is
    given (normalised with :func:`normalise_name`). Totals count logical file bytes once per
    inode, and the raw and stored bytes of the distinct chunks referenced.
    """
    entries = tuple(entries)
    used = {k for e in entries for k in e.chunks}
    table = {k: tuple(chunks[k]) for k in sorted(used)}
    files = [e for e in entries if e.type == "file"]
    totals = {
        "entries": len(entries),
        "files": len(files),
        "logical_bytes": sum(e.size for e in files),
        "chunks": len(table),
        "referenced_bytes": sum(v[0] for v in table.values()),
        "stored_bytes": sum(v[1] for v in table.values()),
        "new_chunks": new_chunks,
        "new_stored_bytes": new_stored_bytes,
    }
    name = normalise_name(name) if name is not None else None
    manifest = Manifest(
        workspace_id=workspace_id,
        checkpoint_id=checkpoint_id or make_checkpoint_id(created),
        created=created.astimezone(UTC).isoformat(),
        kind="named" if name else "automatic",
        name=name,
        parent=parent,
        source=source,
        reason=reason,
        chunking=dict(chunking or {}),
        image=dict(image) if image else None,
        totals=totals,
        chunks=table,
        entries=entries,
    )
    manifest.validate()
    return manifest
