"""The end of a log file that someone else can write, read in bounded memory and time.

A log in a workspace's ``/data`` (the scaler log) belongs to the user, who can make it a
20 GB sparse file or one endless line; the egress proxy's access log grows with every request
users make. Whoever shows such a file reads only its last ``max_bytes`` with one ``pread``:
the cost is the same for a 1 KB log and a 16 TB one. Opening (without following links) is
the caller's business: these functions take an open descriptor of a regular file.
"""

from __future__ import annotations

import os
import stat

__all__ = ["TAIL_BYTES", "open_regular_file", "tail_lines"]

TAIL_BYTES = 64 * 1024  # a scaler log line is under 200 bytes: hundreds of lines


def open_regular_file(path: str | os.PathLike, dir_fd: int | None = None) -> int:
    """A read-only descriptor of ``path`` (relative to ``dir_fd`` if given), which must be a
    regular file and not a symbolic link. ``O_NONBLOCK`` keeps a FIFO put there from blocking
    the open; ``OSError`` for a link, a FIFO, a device or a directory."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{os.fspath(path)} is not a regular file")
    return fd


def tail_lines(fd: int, count: int | None = None, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The last ``count`` lines (all if None) among the last ``max_bytes`` bytes of the
    regular file open as ``fd``, without their newlines; UTF-8, undecodable bytes replaced.

    At most ``max_bytes`` are read, whatever the file's size. When the window does not start
    at the file's beginning, its first, partial line is left out (so a line longer than the
    window is never shown in pieces); a last line without a newline is kept.
    """
    size = os.fstat(fd).st_size
    start = max(0, size - max_bytes)
    data = os.pread(fd, min(size, max_bytes), start)
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    return lines if count is None else lines[-count:] if count > 0 else []
