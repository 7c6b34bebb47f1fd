"""The hub's durable outbox of workspace activity: one JSON line per action, fsynced.

The hub (spawner and request handlers) calls :meth:`ActivityJournal.record` for every action
on a workspace; the lifecycle service later reads the file with :func:`read_from` and copies
the entries into its own store (``hub_services.lifecycle.activity_log``), deduplicating by
``uid``. The file is only ever appended to, so the service keeps just a byte offset.

A line is ``{"uid", "at", "user", "workspace", "actor", "action", "description", "fields"}``
with ``uid`` a uuid4 hex and ``at`` ISO 8601 UTC. Each line is written by one ``os.write``
on an ``O_APPEND`` descriptor and fsynced before :meth:`~ActivityJournal.record` returns, so
concurrent writers never interleave and a crash leaves at most one torn last line, which
:func:`read_from` leaves alone (and a later record glued onto it is recovered).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["ACTIONS", "ActivityJournal", "read_from", "utcnow"]

log = logging.getLogger(__name__)

ACTIONS = (
    "created",
    "started",
    "stopped",
    "errored",
    "edited",
    "deleted",
    "admin-entered",
    "admin-exited",
    "reminded",
    "policy-skipped",
    # the lifecycle service starts a workspace the engine or host restart interrupted
    "restarting",
    # sharing (bench_spawner/sharing.py): who got or lost a share, share codes made and used
    "shared",
    "share-revoked",
    "share-code-created",
    "share-code-revoked",
    "share-code-used",
    # a swarm workspace's /data moved off a drained node (bench_spawner/swarm/data_move.py)
    "moved",
)
_TEXT_KEYS = ("uid", "at", "user", "workspace", "actor", "action", "description")
# json.dumps escapes every quote inside a string, so this only occurs where a line starts
_LINE_START = b'{"uid": "'
_READ_CHUNK = 4 * 1024 * 1024


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the module's one clock seam for tests."""
    return datetime.now(UTC)


class ActivityJournal:
    """Appends activity entries to the journal file at ``path`` (created with mode 0o600;
    missing directories are created, the last one with mode 0o700).

    :meth:`record` blocks for an fsync (milliseconds): call it from a worker thread when on
    the event loop if the journal's disk may be slow.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def record(
        self,
        action: str,
        user: str,
        workspace: str,
        actor: str,
        description: str,
        fields: dict | None = None,
        at: datetime | None = None,
        project: str = "",
    ) -> dict:
        """Append one entry and return it (``at`` as ISO text, as in the file). ``project``
        is the workspace's project ("" for a personal one), for the activity log's filter.

        ``at`` is an aware datetime (default: now). An unknown ``action``, a naive ``at`` or
        ``fields`` that are not a JSON-serialisable mapping raise :class:`ValueError`: those
        are programming errors. An I/O error (disk full, permissions) never raises: it is
        logged with the traceback and the entry is returned although it is NOT in the
        journal, so a full log disk never fails a spawn but that action goes unrecorded.
        """
        entry = _entry(action, user, workspace, actor, description, fields, at)
        if not isinstance(project, str):
            raise ValueError(f"project must be text, got {project!r}")
        entry["project"] = project
        line = json.dumps(entry, ensure_ascii=True).encode() + b"\n"
        try:
            self._append(line)
        except OSError:
            log.error("activity journal %s: could not record %r", self.path, entry, exc_info=True)
        return entry

    def _append(self, line: bytes) -> None:
        """One ``os.write`` of the whole line on an O_APPEND descriptor, then fsync. A file
        created now has its directory entry fsynced too, so it survives a power cut."""
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)


def _entry(action, user, workspace, actor, description, fields, at) -> dict:
    """The entry as written, or ValueError naming the bad argument."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    for name, value in (("user", user), ("workspace", workspace), ("actor", actor)):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {value!r}")
    if not isinstance(description, str):
        raise ValueError(f"description must be text, got {description!r}")
    at = utcnow() if at is None else at
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
    fields = {} if fields is None else fields
    try:
        if not isinstance(fields, dict):
            raise TypeError("not a mapping")
        fields = json.loads(json.dumps(fields))
    except (TypeError, ValueError) as err:
        raise ValueError(f"fields must be a JSON-serialisable mapping, got {fields!r}") from err
    return {
        "uid": uuid.uuid4().hex,
        "at": at.astimezone(UTC).isoformat(),
        "user": user,
        "workspace": workspace,
        "actor": actor,
        "action": action,
        "description": description,
        "fields": fields,
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_from(
    path: str | os.PathLike, offset: int, max_bytes: int = _READ_CHUNK
) -> tuple[list[dict], int]:
    """The complete entries after byte ``offset`` of the journal, and the offset to pass next.

    Only lines ending in ``\\n`` are read: a torn last line (a writer mid-write or killed)
    stays for the next call and the offset does not pass it. A complete line that is not a
    valid entry is logged and skipped (the offset passes it); if a valid entry follows a torn
    fragment on that line (a write that failed half-way, then a good one) it is kept.
    About ``max_bytes`` are read per call (more if one line is longer): call again until the
    offset stops moving. A missing file reads as empty: ``([], offset)``.
    """
    try:
        data = _read_complete_lines(Path(path), offset, max_bytes)
    except FileNotFoundError:
        return [], offset
    entries = []
    for number, line in enumerate(data.splitlines(), start=1):
        entry = _parse_line(line)
        if entry is None:
            log.error(
                "activity journal %s: skipping corrupt line %d after byte %d: %r",
                path,
                number,
                offset,
                line[:200],
            )
        else:
            entries.append(entry)
    return entries, offset + len(data)


def _read_complete_lines(path: Path, offset: int, max_bytes: int) -> bytes:
    """The bytes from ``offset`` up to and including the last newline read (b"" if none)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(max_bytes)
        while data and b"\n" not in data:  # one line longer than max_bytes: read on
            more = f.read(max_bytes)
            if not more:
                break
            data += more
    return data[: data.rfind(b"\n") + 1]


def _parse_line(line: bytes) -> dict | None:
    """The entry on ``line``; the last entry on it when a torn fragment precedes it; or None."""
    entry = _parse_entry(line)
    start = line.rfind(_LINE_START)
    if entry is None and start > 0:
        entry = _parse_entry(line[start:])
    return entry


def _parse_entry(text: bytes) -> dict | None:
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
        return None
    if not all(isinstance(entry.get(key), str) for key in _TEXT_KEYS):
        return None
    if not entry["uid"] or not entry["action"] or not _aware(entry["at"]):
        return None
    project = entry.get("project", "")
    return {
        **{key: entry[key] for key in (*_TEXT_KEYS, "fields")},
        "project": project if isinstance(project, str) else "",
    }


def _aware(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).utcoffset() is not None
    except ValueError:
        return False
