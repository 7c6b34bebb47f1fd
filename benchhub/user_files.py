"""Files the clusters service writes in a workspace's ``/data``, safely.

The service runs as root on the host and writes into the directory behind a workspace's
``/data`` (the scaler log, ``.spark/cluster.json``), where the workspace's user may have put
symbolic links. Every path component below the data directory is opened with
``O_NOFOLLOW`` relative to its parent's descriptor, so a link never leads the service out of
``/data``; what it creates belongs to the workspace user (container uid 1000, gid 100: the
host ids the engine maps them to, :mod:`benchhub.user_namespace`). Reads are
bounded (the user decides how big a file is): a whole file only up to a limit, a log only
its tail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath

from benchhub.file_tail import TAIL_BYTES, open_regular_file, tail_lines
from benchhub.user_namespace import engine_id_map
from benchhub.volumes import DATA_GID, DATA_UID

__all__ = ["append_in_data", "read_in_data", "remove_in_data", "tail_in_data", "write_in_data"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(relative: str) -> tuple[list[str], str]:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{relative!r} must be a relative path inside /data")
    return list(path.parts[:-1]), path.parts[-1]


def _own(fd: int) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, *engine_id_map().host_ids(DATA_UID, DATA_GID))


@contextlib.contextmanager
def _directory(data_dir: str, parts: list[str], create: bool) -> Iterator[int]:
    """A descriptor of ``data_dir/parts...``, each component opened without following links
    (``create``: made, owned by the workspace user, when missing)."""
    fd = os.open(data_dir, _DIR_FLAGS)
    try:
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                _own(child)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_in_data(data_dir: str, relative: str, text: str, mode: int = 0o644) -> None:
    """Replace ``data_dir/relative`` with ``text``: a new file, fsynced, renamed over it."""
    parts, name = _parts(relative)
    with _directory(data_dir, parts, create=True) as dir_fd:
        temp = f".{name}.{secrets.token_hex(4)}"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), mode)
                _own(f.fileno())
                os.fsync(f.fileno())
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)


def append_in_data(data_dir: str, relative: str, text: str) -> None:
    """Append ``text`` to ``data_dir/relative`` (created when missing). A link or anything
    but a regular file there is refused with :class:`OSError`."""
    parts, name = _parts(relative)
    with _directory(data_dir, parts, create=True) as dir_fd:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(name, flags | os.O_NONBLOCK, 0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{relative} in /data is not a regular file")
            if info.st_uid == 0:
                _own(f.fileno())
            f.write(text)


def read_in_data(data_dir: str, relative: str, max_bytes: int = 64 * 1024) -> str:
    """The text of ``data_dir/relative``; :class:`OSError` when missing, a link, not a
    regular file, or longer than ``max_bytes`` (the user decides the size: never read more)."""
    parts, name = _parts(relative)
    with _directory(data_dir, parts, create=False) as dir_fd:
        fd = open_regular_file(name, dir_fd=dir_fd)
        try:
            data = os.pread(fd, max_bytes + 1, 0)
        finally:
            os.close(fd)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"{relative} in /data is larger than {max_bytes} bytes")
    return data.decode("utf-8", errors="replace")


def tail_in_data(
    data_dir: str, relative: str, count: int, max_bytes: int = TAIL_BYTES
) -> list[str]:
    """The last ``count`` lines of ``data_dir/relative`` among its last ``max_bytes`` bytes
    (:func:`benchhub.file_tail.tail_lines`); :class:`OSError` when missing, a link or
    not a regular file."""
    parts, name = _parts(relative)
    with _directory(data_dir, parts, create=False) as dir_fd:
        fd = open_regular_file(name, dir_fd=dir_fd)
        try:
            return tail_lines(fd, count, max_bytes)
        finally:
            os.close(fd)


def remove_in_data(data_dir: str, relative: str) -> None:
    """Remove ``data_dir/relative`` if it is there."""
    parts, name = _parts(relative)
    try:
        with _directory(data_dir, parts, create=False) as dir_fd:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
