"""Reading and writing overlay2 upper directories, never following a symlink.

:func:`scan_upper` walks a container's upper directory (``GraphDriver.Data.UpperDir``) with
directory file descriptors and yields one :class:`Scanned` per path, in an order where every
directory comes before what it holds and every hard link after its first name. Overlay's
markers become entry types: a character device 0:0 is a ``whiteout`` (deleted in the
container), a directory with ``trusted.overlay.opaque=y`` is ``opaque`` (replaces the image's
directory). Excluded paths (mount points) and everything below them are skipped. Devices and
sockets are left out and never opened; a FIFO is recorded, never opened. A sparse file's
holes are found with ``SEEK_DATA``/``SEEK_HOLE`` and recorded, and :func:`file_data` reads
only its data, up to the size it had when scanned: a user's 10 TB sparse file costs what its
data costs, not 10 TB of reading (and a file growing while read cannot hold the scan).

:func:`restore_tree` builds validated entries in a private staging directory beside the
upper directory (same filesystem), then, only if every entry was written, renames the staging
directory over the (empty) upper directory in one ``rename(2)``: the container sees the whole
checkpoint or nothing. Every write goes through ``openat``-style calls relative to a directory
descriptor opened with ``O_NOFOLLOW``, so a symlink in the checkpoint is created, never
traversed. A file's holes, and runs of zeros in its data, are left unwritten (holes again):
a restore never takes more disk than the data the checkpoint holds. Must run as root
(ownership, whiteouts, trusted xattrs).

Owners in entries are *container* ids. On an engine that remaps user namespaces an upper
directory holds host ids (container uid 1000 is host 101000): :func:`scan_upper` turns them
into container ids and :func:`restore_tree` back into host ids with the
:class:`benchhub.user_namespace.IdMap` it is given, so a checkpoint restores on an engine
with another mapping (or none), and checkpoints taken before the engine remapped restore.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import io
import logging
import os
import posixpath
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from benchhub.user_namespace import IDENTITY, IdMap

from .errors import CheckpointError, ManifestInvalid, RestoreTargetNotEmpty
from .manifest import Entry, is_excluded, is_kept_xattr, is_safe_path

__all__ = ["OPAQUE_XATTR", "Scanned", "file_data", "restore_tree", "scan_upper"]

log = logging.getLogger("benchhub.checkpoints")

OPAQUE_XATTR = "trusted.overlay.opaque"
# Features whose upper entries do not stand on their own; Docker's overlay2 enables neither.
_UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STAGING_PREFIX = ".benchhub-restore-"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
# More holes than this in one file is no file a person made (each needs data between): the
# checkpoint fails naming it rather than write a manifest of millions of ranges.
MAX_HOLES = 1_000_000
# Restore skips writing all-zero runs of at least this many bytes (they stay holes).
_ZERO_RUN = 64 * 1024


@dataclass(frozen=True)
class Scanned:
    """One path found in an upper directory.

    ``entry`` has no chunks yet (a file's ``size`` is from ``lstat``). ``fd`` is a readable
    descriptor for the first name of a regular file, valid until the scan advances.
    """

    entry: Entry
    fd: int | None
    stat: os.stat_result


def scan_upper(
    upper_dir: str, excludes: Iterable[str], id_map: IdMap = IDENTITY
) -> Iterator[Scanned]:
    """Walk ``upper_dir`` (see the module docstring); ``excludes`` are relative paths.
    Entries carry container ids: the host owners translated with ``id_map``."""
    excludes = tuple(excludes)
    root_fd = os.open(upper_dir, _DIR_FLAGS)
    try:
        for scanned in _scan_dir(root_fd, "", excludes, {}):
            if not id_map.is_identity:
                uid, gid = id_map.container_ids(scanned.entry.uid, scanned.entry.gid)
                scanned = replace(scanned, entry=replace(scanned.entry, uid=uid, gid=gid))
            yield scanned
    finally:
        os.close(root_fd)


def _scan_dir(dir_fd: int, rel: str, excludes: tuple[str, ...], inodes: dict) -> Iterator[Scanned]:
    with os.scandir(dir_fd) as listing:
        names = sorted(item.name for item in listing)
    for name in names:
        path = posixpath.join(rel, name) if rel else name
        if is_excluded(path, excludes):
            continue
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:  # removed by a running container while we walk
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _scan_subdir(dir_fd, name, path, excludes, inodes)
        elif stat.S_ISREG(st.st_mode):
            yield from _scan_file(dir_fd, name, path, st, inodes)
        else:
            scanned = _scan_special(dir_fd, name, path, st)
            if scanned is not None:
                yield scanned


def _base_entry(path: str, st: os.stat_result, type_: str, **fields) -> Entry:
    return Entry(
        path=path,
        type=type_,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        **fields,
    )


def _open_child(dir_fd: int, name: str, flags: int, kind: int) -> tuple[int, os.stat_result] | None:
    """Open ``name`` without following symlinks and check it is still of ``kind``; None if a
    running container removed or replaced it since it was listed (it is then skipped)."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError, OSError) as e:
        if isinstance(e, FileNotFoundError | NotADirectoryError) or e.errno == errno.ELOOP:
            return None
        raise
    st = os.fstat(fd)
    if stat.S_IFMT(st.st_mode) != kind:
        os.close(fd)
        return None
    return fd, st


def _scan_subdir(parent_fd, name, path, excludes, inodes) -> Iterator[Scanned]:
    opened = _open_child(parent_fd, name, _DIR_FLAGS, stat.S_IFDIR)
    if opened is None:
        return
    fd, st = opened
    try:
        xattrs, opaque = _read_xattrs(fd, path)
        yield Scanned(_base_entry(path, st, "dir", opaque=opaque, xattrs=xattrs), None, st)
        yield from _scan_dir(fd, path, excludes, inodes)
    finally:
        os.close(fd)


def _scan_file(dir_fd, name, path, st, inodes) -> Iterator[Scanned]:
    identity = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and identity in inodes:
        yield Scanned(_base_entry(path, st, "hardlink", target=inodes[identity]), None, st)
        return
    opened = _open_child(dir_fd, name, _READ_FLAGS, stat.S_IFREG)
    if opened is None:
        return
    fd, st = opened
    if st.st_nlink > 1:
        inodes[(st.st_dev, st.st_ino)] = path
    try:
        xattrs, _ = _read_xattrs(fd, path)
        entry = _base_entry(
            path,
            st,
            "file",
            size=st.st_size,
            xattrs=xattrs,
            ino=st.st_ino,
            ctime_ns=st.st_ctime_ns,
            holes=_holes(fd, st, path),
        )
        yield Scanned(entry, fd, st)
    finally:
        os.close(fd)


def _holes(fd: int, st: os.stat_result, path: str) -> tuple[tuple[int, int], ...]:
    """The holes of a regular file below its size ``st.st_size``, as ``(offset, length)``;
    () for a file with all its blocks (the usual case: no ``lseek`` at all)."""
    size = st.st_size
    if st.st_blocks * 512 >= size:
        return ()
    holes, offset = [], 0
    while offset < size:
        try:
            data = min(os.lseek(fd, offset, os.SEEK_DATA), size)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data after offset: the rest is a hole
                data = size
            elif e.errno == errno.EINVAL:  # the filesystem cannot say: read it all
                return ()
            else:
                raise
        if data > offset:
            holes.append((offset, data - offset))
            if len(holes) > MAX_HOLES:
                raise CheckpointError(f"/{path} has more than {MAX_HOLES} holes: not carried")
        if data >= size:
            break
        # at least one byte on: the file may change while we look, and the walk must end
        offset = max(min(os.lseek(fd, data, os.SEEK_HOLE), size), data + 1)
    return tuple(holes)


class _DataReader(io.RawIOBase):
    """The data ranges of a scanned file one after the other (its holes left out), each read
    with ``pread`` at its offset; bytes the file lost since the scan read as zeros, bytes it
    gained are not read, so exactly ``size - holes`` bytes come out."""

    def __init__(self, fd: int, regions: list[tuple[int, int]]):
        super().__init__()
        self._fd = fd
        self._regions = list(reversed(regions))  # the next one last: pop() is cheap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._regions:
            return 0
        offset, length = self._regions[-1]
        view = memoryview(buffer).cast("B")[: min(len(buffer), length)]
        got = os.preadv(self._fd, [view], offset)
        if got == 0:  # shrunk meanwhile: zeros, so the entry's sizes still add up
            view[:] = bytes(len(view))
            got = len(view)
        if got == length:
            self._regions.pop()
        else:
            self._regions[-1] = (offset + got, length - got)
        return got


def file_data(scanned: Scanned) -> io.BufferedReader:
    """A stream of the scanned regular file's data (see :class:`_DataReader`)."""
    return io.BufferedReader(_DataReader(scanned.fd, scanned.entry.data_regions()), 1 << 20)


def _scan_special(dir_fd, name, path, st) -> Scanned | None:
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except (FileNotFoundError, OSError):  # replaced since listed: skip it
            return None
        return Scanned(_base_entry(path, st, "symlink", target=target), None, st)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return Scanned(_base_entry(path, st, "whiteout"), None, st)
    if stat.S_ISFIFO(st.st_mode):
        return Scanned(_base_entry(path, st, "fifo"), None, st)
    log.warning("checkpoint leaves out /%s: devices and sockets are not carried", path)
    return None


def _read_xattrs(fd: int, path: str) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """The kept xattrs of an open file or directory, and whether it is overlay-opaque."""
    kept, opaque = [], False
    for name in sorted(os.listxattr(fd)):
        if name in _UNSUPPORTED_XATTRS:
            raise CheckpointError(
                f"/{path} carries {name}: overlay redirect_dir/metacopy are not supported; "
                "run Docker's overlay2 driver with its defaults"
            )
        if name == OPAQUE_XATTR:
            opaque = os.getxattr(fd, name) == b"y"
        elif is_kept_xattr(name):
            kept.append((name, os.getxattr(fd, name)))
    return tuple(kept), opaque


ChunkReader = Callable[[Entry], Iterable[bytes]]


def restore_tree(
    upper_dir: str, entries: Iterable[Entry], read_file: ChunkReader, id_map: IdMap = IDENTITY
) -> int:
    """Recreate validated ``entries`` as the content of the empty ``upper_dir``, their
    container owners translated to host owners with ``id_map``.

    ``read_file(entry)`` yields a file's verified bytes; if it (or anything else) raises,
    the staging directory is removed and ``upper_dir`` is left untouched. Returns the number
    of entries written. Raises :class:`RestoreTargetNotEmpty` if ``upper_dir`` has content.
    """
    _require_empty(upper_dir)
    layer_dir = os.path.dirname(upper_dir)
    for leftover in glob.glob(os.path.join(glob.escape(layer_dir), _STAGING_PREFIX + "*")):
        shutil.rmtree(leftover, ignore_errors=True)  # of a restore that crashed
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=layer_dir)
    try:
        root_fd = os.open(staging, _DIR_FLAGS)
        writer = _TreeWriter(root_fd, id_map)
        try:
            count = 0
            for entry in entries:
                writer.add(entry, read_file)
                count += 1
            writer.finish()
            target = os.stat(upper_dir, follow_symlinks=False)
            os.fchown(root_fd, target.st_uid, target.st_gid)
            os.fchmod(root_fd, stat.S_IMODE(target.st_mode))
        finally:
            writer.close()
            os.close(root_fd)
        _syncfs(staging)  # the data is durable before the container can see it
        _require_empty(upper_dir)
        os.rename(staging, upper_dir)  # atomically replaces the empty directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(os.path.dirname(upper_dir))
    return count


def _require_empty(upper_dir: str) -> None:
    if os.listdir(upper_dir):
        raise RestoreTargetNotEmpty(
            f"{upper_dir} is not empty: restore only into a container that was created "
            "and never started"
        )


def _syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (only that one, unlike ``sync``)."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _TreeWriter:
    """Creates entries below ``root_fd``; directory metadata is applied in :meth:`finish`
    (children change a directory's mtime, and a read-only mode must come last)."""

    def __init__(self, root_fd: int, id_map: IdMap = IDENTITY):
        self.root_fd = root_fd
        self.id_map = id_map
        self.dirs: list[Entry] = []
        self._cached: tuple[str, int] | None = None

    def open_dir(self, path: str) -> int:
        """A descriptor of directory ``path`` (``""`` is the root), opened component by
        component with ``O_NOFOLLOW``; owned by the writer, valid until the next call."""
        if not path:
            return self.root_fd
        if self._cached and self._cached[0] == path:
            return self._cached[1]
        self._close_cached()
        fd = os.dup(self.root_fd)
        try:
            for part in path.split("/"):
                fd, previous = os.open(part, _DIR_FLAGS, dir_fd=fd), fd
                os.close(previous)
        except BaseException:
            os.close(fd)
            raise
        self._cached = (path, fd)
        return fd

    def close(self) -> None:
        """Close the descriptor the writer holds (not ``root_fd``)."""
        self._close_cached()

    def _close_cached(self) -> None:
        if self._cached:
            os.close(self._cached[1])
            self._cached = None

    def add(self, entry: Entry, read_file: ChunkReader) -> None:
        # Manifests are validated on load; this second check keeps the writer safe alone.
        if not is_safe_path(entry.path) or (
            entry.type == "hardlink" and not is_safe_path(entry.target)
        ):
            raise ManifestInvalid(f"refusing to write unsafe path {entry.path!r}")
        parent, name = posixpath.split(entry.path)
        if entry.type == "hardlink":
            src_parent, src_name = posixpath.split(entry.target)
            src_fd = os.dup(self.open_dir(src_parent))
            try:
                os.link(
                    src_name,
                    name,
                    src_dir_fd=src_fd,
                    dst_dir_fd=self.open_dir(parent),
                    follow_symlinks=False,
                )
            finally:
                os.close(src_fd)
            return
        dir_fd = self.open_dir(parent)
        if entry.type == "dir":
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            self.dirs.append(entry)
        elif entry.type == "file":
            _write_file(dir_fd, name, entry, read_file(entry), self.owner(entry))
        elif entry.type == "symlink":
            os.symlink(entry.target, name, dir_fd=dir_fd)
            _set_owner_and_times(dir_fd, name, entry, self.owner(entry))
        else:  # whiteout or fifo: a node we just made in our private staging directory
            kind = stat.S_IFCHR if entry.type == "whiteout" else stat.S_IFIFO
            os.mknod(name, kind | 0o600, os.makedev(0, 0), dir_fd=dir_fd)
            os.chown(name, *self.owner(entry), dir_fd=dir_fd, follow_symlinks=False)
            os.chmod(name, entry.mode, dir_fd=dir_fd)
            os.utime(
                name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False
            )

    def owner(self, entry: Entry) -> tuple[int, int]:
        """The host ``(uid, gid)`` of the entry's container owner."""
        return self.id_map.host_ids(entry.uid, entry.gid)

    def finish(self) -> None:
        """Apply directory ownership, xattrs, opaque markers, modes and mtimes, deepest
        first."""
        for entry in reversed(self.dirs):
            fd = self.open_dir(entry.path)
            _apply_metadata(fd, entry, self.owner(entry))
            if entry.opaque:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        self._close_cached()


def _write_file(
    dir_fd: int, name: str, entry: Entry, data: Iterable[bytes], owner: tuple[int, int]
) -> None:
    """Write the file's chunks into its data ranges (its holes stay holes), leaving runs of
    zeros unwritten too, then set its size: the disk it takes is at most its non-zero data."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    try:
        regions = deque(entry.data_regions())
        for block in data:
            at = 0
            while at < len(block):
                if not regions:
                    raise ManifestInvalid(f"/{entry.path}: more data than its size")
                offset, length = regions[0]
                piece = min(length, len(block) - at)
                _write_nonzero(fd, block, at, piece, offset)
                regions[0] = (offset + piece, length - piece)
                if regions[0][1] == 0:
                    regions.popleft()
                at += piece
        os.ftruncate(fd, entry.size)
        _apply_metadata(fd, entry, owner)
    finally:
        os.close(fd)


def _write_nonzero(fd: int, block: bytes, start: int, length: int, offset: int) -> None:
    """``pwrite`` ``block[start:start + length]`` at ``offset``, skipping all-zero runs of
    :data:`_ZERO_RUN` bytes (the file's final size is set afterwards)."""
    view = memoryview(block)
    end = start + length
    while start < end:
        step = min(_ZERO_RUN, end - start)
        if block.count(0, start, start + step) != step:
            part = view[start : start + step]
            while part:
                written = os.pwrite(fd, part, offset)
                part, offset = part[written:], offset + written
        else:
            offset += step
        start += step


def _apply_metadata(fd: int, entry: Entry, owner: tuple[int, int]) -> None:
    os.fchown(fd, *owner)
    os.fchmod(fd, entry.mode)  # after chown, which clears set-id bits
    for name, value in entry.xattrs:
        os.setxattr(fd, name, value)
    os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))


def _set_owner_and_times(dir_fd: int, name: str, entry: Entry, owner: tuple[int, int]) -> None:
    os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
    os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
