"""Overlay upper directories as the checkpoint code sees them, and the tree helpers the other
checkpoint tests import (``build_workspace_tree``, ``describe_tree``, ``new_layer``).

These tests need root (mknod, chown, trusted.* xattrs), as the checkpoint service has.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path

import pytest

from benchhub.checkpoints.errors import ManifestInvalid, RestoreTargetNotEmpty
from benchhub.checkpoints.manifest import Entry, is_excluded
from benchhub.checkpoints.overlay import OPAQUE_XATTR, restore_tree, scan_upper

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="checkpoints recreate whiteouts (mknod), ownership and trusted.overlay xattrs: "
    "run as root",
)
pytestmark = needs_root

MOUNT_POINTS = ["/data", "/data/project", "/data/mounts"]
BIG_RANDOM = 6 * 1024 * 1024
COMPRESSIBLE = 3 * 1024 * 1024


def new_layer(tmp_path: Path, name: str) -> Path:
    """An empty ``<name>/diff`` like Docker's ``overlay2/<id>/diff`` (the staging directory
    of a restore goes beside it)."""
    upper = tmp_path / name / "diff"
    upper.mkdir(parents=True)
    return upper


def _write(path: Path, data: bytes, mode=0o644, owner=(0, 0), mtime_ns=None) -> None:
    path.write_bytes(data)
    os.chown(path, *owner)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def build_workspace_tree(upper: Path, seed: int = 1) -> None:
    """What a container's upper directory holds after some work: files of every size, modes,
    owners, set-id bits, xattrs, links, deletions (whiteouts), a replaced directory (opaque),
    a fifo, and Docker's mount points and files that checkpoints must leave out."""
    rng = random.Random(seed)
    t0 = 1_700_000_000_123_456_789
    home = upper / "home" / "jovyan"
    home.mkdir(parents=True)
    os.chown(upper / "home" / "jovyan", 1000, 100)
    (home / "notes").mkdir(mode=0o750)
    os.chown(home / "notes", 1000, 100)
    _write(home / "notes" / "todo.txt", b"buy reagents\n", 0o600, (1000, 100), t0)
    _write(home / "notes" / "empty.txt", b"", 0o640, (1000, 100), t0 + 1)
    _write(home / "big.bin", rng.randbytes(BIG_RANDOM), 0o644, (1000, 100), t0 + 2)
    text = b"".join(b"line %d of a very compressible log\n" % i for i in range(100_000))
    _write(home / "run.log", text[:COMPRESSIBLE], 0o644, (1000, 100), t0 + 3)
    os.setxattr(home / "run.log", "user.origin", b"pipeline-7")
    os.symlink("notes/todo.txt", home / "todo")
    os.symlink("/nonexistent/target", home / "dangling")
    os.lchown(home / "dangling", 1000, 100)
    os.link(home / "notes" / "todo.txt", home / "todo.hardlink")
    bin_dir = upper / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True)
    _write(bin_dir / "tool", b"#!/bin/sh\necho tool\n", 0o4755, (0, 0), t0 + 4)
    os.link(bin_dir / "tool", upper / "usr" / "local" / "tool-again")
    _write(bin_dir / "odd-owner", b"x", 0o2710, (123, 456), t0 + 5)
    (upper / "etc").mkdir()
    os.mknod(upper / "etc" / "motd", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # deleted file
    (upper / "etc" / "apt").mkdir()
    os.setxattr(upper / "etc" / "apt", OPAQUE_XATTR, b"y")  # directory replaced wholesale
    _write(upper / "etc" / "apt" / "sources.list", b"deb http://deb.example.org/ x main\n")
    _write(upper / "etc" / "hosts", b"127.0.0.1 docker-wrote-this\n")  # always excluded
    os.mkfifo(upper / "tmp-pipe", 0o620)
    (upper / "data" / "project").mkdir(parents=True)  # mount points: excluded
    _write(upper / "data" / "project" / "results.csv", b"a,b\n1,2\n")
    _write(upper / "data" / "scratch.txt", b"on the volume\n")
    os.utime(home / "notes", ns=(t0 + 6, t0 + 6))
    os.chmod(upper / "home", 0o711)


def describe_tree(root: Path) -> dict[str, tuple]:
    """Everything a container would notice about a tree: per path the type, mode, owner,
    mtime, content hash or link target, overlay markers, user xattrs and which other paths
    share its inode."""
    inodes: dict[int, list[str]] = {}
    described = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            inodes.setdefault(st.st_ino, []).append(rel)
            described[rel] = _describe(full, st)
    for rel in described:
        ino = os.lstat(os.path.join(root, rel)).st_ino
        others = tuple(sorted(p for p in inodes[ino] if p != rel))
        described[rel] = (*described[rel], others if not os.path.isdir(root / rel) else ())
    return described


def _describe(full: str, st: os.stat_result) -> tuple:
    kind = stat.S_IFMT(st.st_mode)
    content = None
    if stat.S_ISREG(st.st_mode):
        content = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        content = os.readlink(full)
    elif stat.S_ISCHR(st.st_mode):
        content = st.st_rdev
    xattrs = ()
    if not stat.S_ISLNK(st.st_mode):
        names = sorted(n for n in os.listxattr(full) if n.startswith(("user.", "trusted.")))
        xattrs = tuple((n, os.getxattr(full, n)) for n in names)
    mtime = st.st_mtime_ns
    return (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, content, xattrs)


def without_excluded(described: dict[str, tuple]) -> dict[str, tuple]:
    """The description minus what checkpoints leave out (mount points, /etc/hosts)."""
    return {p: v for p, v in described.items() if not is_excluded(p, ("data", "etc/hosts"))}


def _file_bytes(upper: Path):
    def read(entry: Entry):
        yield (upper / entry.path).read_bytes()

    return read


def test_scan_classifies_overlay_markers_and_skips_mount_points(tmp_path):
    upper = new_layer(tmp_path, "src")
    build_workspace_tree(upper)

    found = {s.entry.path: s.entry for s in scan_upper(str(upper), ["data", "etc/hosts"])}

    assert found["etc/motd"].type == "whiteout"
    assert found["etc/apt"].opaque and found["etc/apt"].type == "dir"
    assert found["home/jovyan/todo.hardlink"] == Entry(
        path="home/jovyan/todo.hardlink",
        type="hardlink",
        mode=0o600,
        uid=1000,
        gid=100,
        mtime_ns=found["home/jovyan/notes/todo.txt"].mtime_ns,
        target="home/jovyan/notes/todo.txt",
    )
    assert found["home/jovyan/dangling"].target == "/nonexistent/target"
    assert found["home/jovyan/run.log"].xattrs == (("user.origin", b"pipeline-7"),)
    assert found["usr/local/bin/tool"].mode == 0o4755
    assert found["tmp-pipe"].type == "fifo"
    assert not any(p == "data" or p.startswith("data/") or p == "etc/hosts" for p in found)
    order = list(found)
    assert all(order.index(os.path.dirname(p)) < order.index(p) for p in order if "/" in p)


def test_restore_tree_reproduces_what_was_scanned(tmp_path):
    src = new_layer(tmp_path, "src")
    build_workspace_tree(src)
    dst = new_layer(tmp_path, "dst")
    entries = [s.entry for s in scan_upper(str(src), ["data", "etc/hosts"])]

    restore_tree(str(dst), entries, _file_bytes(src))

    assert describe_tree(dst) == without_excluded(describe_tree(src))
    assert os.listdir(dst.parent) == ["diff"]  # no staging directory left behind


def test_restore_never_writes_through_a_symlink_even_if_validation_were_bypassed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = new_layer(tmp_path, "dst")
    hostile = [
        Entry(path="escape", type="symlink", mode=0o777, target=str(outside)),
        Entry(path="escape/planted", type="file", mode=0o644),
    ]

    with pytest.raises(OSError):
        restore_tree(str(dst), hostile, lambda entry: [b"owned"])

    assert os.listdir(outside) == []
    assert os.listdir(dst) == [] and os.listdir(dst.parent) == ["diff"]


def test_restore_refuses_an_upper_dir_that_has_content(tmp_path):
    dst = new_layer(tmp_path, "dst")
    (dst / "started-already").write_text("x")

    with pytest.raises(RestoreTargetNotEmpty):
        restore_tree(str(dst), [Entry(path="a", type="dir", mode=0o755)], lambda e: [])

    assert os.listdir(dst) == ["started-already"]


@pytest.mark.parametrize(
    "entry",
    [
        Entry(path="../escaped", type="file", mode=0o644),
        Entry(path="escaped", type="hardlink", mode=0o644, target="../victim"),
    ],
)
def test_the_writer_alone_refuses_paths_that_leave_the_staging_directory(tmp_path, entry):
    dst = new_layer(tmp_path, "dst")
    (tmp_path / "dst" / "victim").write_text("x")

    with pytest.raises(ManifestInvalid):
        restore_tree(str(dst), [entry], lambda e: [b"owned"])

    assert sorted(os.listdir(tmp_path / "dst")) == ["diff", "victim"]
