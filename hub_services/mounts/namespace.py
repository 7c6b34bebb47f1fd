"""Making and removing a bind mount inside a running container, from the host, safely.

The service asks :func:`mount_in` / :func:`unmount_in`; each runs this module as a short
child process (``python -m hub_services.mounts.namespace``) because joining a mount namespace
(``setns``) needs a single-threaded process. The child runs the host's Python: nothing of the
container is executed (``nsenter ... mount`` would run the container's ``mount`` binary as host
root, which a workspace with root inside could replace).

In the container's mount namespace, every path component is opened relative to its parent
with ``O_NOFOLLOW | O_DIRECTORY``, starting at the container's ``/``, so a symbolic link the
workspace made anywhere (``/data/project/x -> /etc``, ``/data/mounts -> /``) is refused, never
followed. The mount itself uses the kernel's file-descriptor mount API: ``open_tree`` clones
the source directory the walk opened (not a path looked up again), ``mount_setattr`` makes it
read-only (and always ``nosuid,nodev``) before it is attached, ``move_mount`` attaches it on
the target directory the walk opened. The workspace holds no ``CAP_SYS_ADMIN``, so it cannot
unmount or remount it. The mount point is made owned by the workspace user (its host ids
under the engine's user-id remapping).

Exit status of the child: 0 done (a JSON line on stdout), 2 refused because of what the
request or the workspace's files are (``{"field": ..., "message": ...}``), 1 failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import json
import os
import sys
from dataclasses import dataclass

__all__ = ["HelperFailed", "Refused", "mount_in", "unmount_in"]

# Linux syscall numbers of the mount API (the same on every architecture from 424 on)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_CLONE_NEWNS = 0x00020000
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH, _MOVE_MOUNT_T_EMPTY_PATH = 0x04, 0x40
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8
_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
HELPER_TIMEOUT = 30  # seconds a child may take (it makes a few system calls)


class Refused(Exception):
    """The request cannot be done because of what it names: ``field`` and why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class HelperFailed(RuntimeError):
    """The child failed for a reason inside the system."""


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _enter(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNS), "setns")
    finally:
        os.close(fd)
    os.chdir("/")  # the container's root (setns moved root and cwd there)


def _walk(parts: list[str], field: str, shown: str, make_owner: tuple[int, int] | None = None):
    """An ``O_PATH`` descriptor of ``/parts...`` in the current namespace, no link followed;
    with ``make_owner``, missing directories are made (mode 0755, owned by those ids)."""
    fd = os.open("/", _WALK)
    try:
        for name in parts:
            try:
                child = os.open(name, _WALK, dir_fd=fd)
            except FileNotFoundError:
                if make_owner is None:
                    raise Refused(field, f"{shown} does not exist") from None
                os.mkdir(name, 0o755, dir_fd=fd)
                os.chown(name, *make_owner, dir_fd=fd, follow_symlinks=False)
                child = os.open(name, _WALK, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(
                        field, f"{shown} is not a directory (a symbolic link is not followed)"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _syscall(number: int, *args) -> int:
    return _libc.syscall(ctypes.c_long(number), *args)


def _create(args) -> dict:
    source_parts = ["data", "project", *args.source]
    target_parts = ["data", "mounts", *args.target]
    source_shown = "/" + "/".join(source_parts)
    target_shown = "/" + "/".join(target_parts)
    _enter(args.pid)
    source = _walk(source_parts, "source", source_shown)
    target = _walk(target_parts, "mount_path", target_shown, make_owner=(args.uid, args.gid))
    listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=target)
    try:
        if os.listdir(listing):
            raise Refused("mount_path", f"{target_shown} is not empty: choose a new path")
    finally:
        os.close(listing)
    tree = _check(
        _syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(source),
            ctypes.c_char_p(b""),
            ctypes.c_uint(_OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_EMPTY_PATH),
        ),
        "open_tree",
    )
    flags = _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV | (_MOUNT_ATTR_RDONLY if args.read_only else 0)
    attr = _MountAttr(attr_set=flags)
    _check(
        _syscall(
            _SYS_MOUNT_SETATTR,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_uint(_AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )
    _check(
        _syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_int(target),
            ctypes.c_char_p(b""),
            ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH),
        ),
        "move_mount",
    )
    return {"mounted": target_shown}


def _remove(args) -> dict:
    parts = ["data", "mounts", *args.target]
    shown = "/" + "/".join(parts)
    _enter(args.pid)
    try:
        parent = _walk(parts[:-1], "mount_path", shown)
    except Refused:
        return {"unmounted": False}  # nothing there: already gone
    os.fchdir(parent)
    name = parts[-1].encode()
    unmounted = _libc.umount2(ctypes.c_char_p(name), _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0
    if not unmounted and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        code = ctypes.get_errno()
        raise OSError(code, f"umount2: {os.strerror(code)}")
    try:
        os.rmdir(parts[-1], dir_fd=parent)  # only an empty directory; one with files stays
    except OSError:
        pass
    return {"unmounted": unmounted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub_services.mounts.namespace")
    parser.add_argument("operation", choices=("create", "remove"))
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--target", nargs="+", required=True)
    parser.add_argument("--source", nargs="+", default=[])
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--uid", type=int, default=0)
    parser.add_argument("--gid", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = _create(args) if args.operation == "create" else _remove(args)
    except Refused as e:
        print(json.dumps({"field": e.field, "message": e.message}))
        return 2
    except OSError as e:
        print(json.dumps({"message": str(e)}))
        return 1
    print(json.dumps(result))
    return 0


@dataclass(frozen=True)
class _Outcome:
    status: int
    body: dict


async def _run(argv: list[str]) -> _Outcome:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub_services.mounts.namespace",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), HELPER_TIMEOUT)
    except TimeoutError:
        process.kill()
        raise HelperFailed(f"the mount helper did not finish in {HELPER_TIMEOUT} s") from None
    try:
        body = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise HelperFailed(
            f"the mount helper ended with {process.returncode}: {err.decode()[-500:]}"
        ) from None
    return _Outcome(process.returncode, body)


async def mount_in(
    pid: int, target: tuple[str, ...], source: tuple[str, ...], read_only: bool, owner
) -> None:
    """Bind ``/data/project/<source>`` to ``/data/mounts/<target>`` in the mount namespace of
    process ``pid``, read-only if asked; missing mount-point directories are made owned by
    ``owner`` (host uid, gid). :class:`Refused` when a path is missing, not a directory, a
    link, or the mount point is not empty; :class:`HelperFailed` otherwise."""
    argv = ["create", f"--pid={pid}", f"--uid={owner[0]}", f"--gid={owner[1]}"]
    argv += ["--target", *target, "--source", *source] + (["--read-only"] if read_only else [])
    outcome = await _run(argv)
    if outcome.status == 2:
        raise Refused(outcome.body.get("field", "mount_path"), outcome.body.get("message", ""))
    if outcome.status != 0:
        raise HelperFailed(outcome.body.get("message", "the mount helper failed"))


async def unmount_in(pid: int, target: tuple[str, ...]) -> bool:
    """Unmount ``/data/mounts/<target>`` in process ``pid``'s mount namespace and remove the
    mount point if it is empty. False when nothing was mounted there (success too)."""
    outcome = await _run(["remove", f"--pid={pid}", "--target", *target])
    if outcome.status != 0:
        raise HelperFailed(outcome.body.get("message", "the mount helper failed"))
    return bool(outcome.body.get("unmounted"))


if __name__ == "__main__":
    sys.exit(main())
