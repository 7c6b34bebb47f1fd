"""Writing a file so that a crash at any moment leaves the old content or the new, never half.

Every record BenchHub keeps in a file (workspace outcomes, checkpoint records, cluster state,
egress records and the address book, storage claims, the admin password) goes through here:
the data is written to a temporary file with a unique name in the same directory, flushed to
the disk, given its mode, renamed over the target (``os.replace``, atomic on POSIX), and the
directory is flushed so that the rename itself survives a power cut.

These functions block; services call them in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "write_once"]


def _temp_beside(path: Path) -> Path:
    # unique: two writers of one file never share a temporary file
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _write_new(temp: Path, data: bytes, mode: int) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), mode)  # the umask does not decide a record's mode
        os.fsync(f.fileno())


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) atomically and durably (see the module
    docstring); its directory is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(path)
    try:
        _write_new(temp, data.encode() if isinstance(data, str) else data, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _sync_directory(path.parent)


def write_once(path: str | os.PathLike, data: str | bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it exists: complete or not at all, and when two
    processes race, one file wins and the other keeps it (a hard link never replaces).
    True if this call created it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(path)
    try:
        _write_new(temp, data.encode() if isinstance(data, str) else data, mode)
        try:
            os.link(temp, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    _sync_directory(path.parent)
    return created
