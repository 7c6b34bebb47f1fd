"""Checkpoints read and restore a user's upper directory as root: what the user put there
decides nothing but their own files.

A 10 TB sparse file in the home directory (``truncate -s 10T``: no disk, no quota) used to be
read byte by byte (hours of one service thread that every workspace's periodic checkpoint
waits for) and restored as 10 TB of zeros (the host's disk full). Holes are now recorded,
never read and never written. A directory that became a symbolic link between two
checkpoints is restored as the link, and nothing is written through it. Devices are left
out without being opened; FIFOs are recorded without being opened.

Sparse files cost no disk here; the bytes the process read are the kernel's count
(``rchar`` in ``/proc/self/io``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_checkpoint_trees import needs_root, new_layer

from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.errors import ManifestInvalid
from benchhub.checkpoints.manifest import Entry
from benchhub.checkpoints.overlay import restore_tree, scan_upper
from benchhub.checkpoints.store import CheckpointStore

pytestmark = needs_root
WS = "mallory.spy.0a1b2c"
TB = 10**12
MIB = 1024**2


def bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)


def allocated(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


# --- sparse files -------------------------------------------------------------------------------


def test_a_10_tb_sparse_file_costs_its_data_to_checkpoint_and_no_disk_to_restore(store, tmp_path):
    upper = new_layer(tmp_path, "container-1")
    home = upper / "home" / "jovyan"
    home.mkdir(parents=True)
    huge = home / "huge.img"
    with open(huge, "wb") as f:
        f.truncate(10 * TB)
        f.seek(5 * TB)
        f.write(b"middle of nowhere\n")
        f.seek(10 * TB - 4)
        f.write(b"end\n")
    os.chown(huge, 1000, 100)
    before = bytes_read()
    manifest = store.create(WS, str(upper))
    assert bytes_read() - before < 64 * MIB, "the holes were read"
    entry = next(e for e in manifest.entries if e.path == "home/jovyan/huge.img")
    assert entry.size == 10 * TB and entry.holes and len(entry.chunks) <= 4
    assert manifest.totals["logical_bytes"] == 10 * TB

    target = new_layer(tmp_path, "container-2")
    store.restore(WS, manifest.checkpoint_id, str(target))
    again = target / "home" / "jovyan" / "huge.img"
    assert again.stat().st_size == 10 * TB
    assert allocated(again) < 4 * MIB, "the holes were written"
    assert read_at(again, 5 * TB, 18) == b"middle of nowhere\n"
    assert read_at(again, 10 * TB - 4, 4) == b"end\n"
    assert read_at(again, 3 * TB, 16) == bytes(16)
    assert (again.stat().st_uid, again.stat().st_gid) == (1000, 100)


def test_a_file_of_written_zeros_comes_back_identical_without_the_zeros_on_disk(store, tmp_path):
    """Old checkpoints (before holes were recorded) hold sparse files as zeros: a restore
    leaves long runs of zeros unwritten, whatever the manifest says."""
    upper = new_layer(tmp_path, "container-1")
    content = b"head" + bytes(32 * MIB) + b"tail"
    (upper / "zeros.bin").write_bytes(content)
    assert allocated(upper / "zeros.bin") >= 32 * MIB
    manifest = store.create(WS, str(upper))
    assert next(e for e in manifest.entries if e.path == "zeros.bin").holes == ()
    target = new_layer(tmp_path, "container-2")
    store.restore(WS, manifest.checkpoint_id, str(target))
    assert (target / "zeros.bin").read_bytes() == content
    assert allocated(target / "zeros.bin") < 2 * MIB


def test_the_next_checkpoint_of_an_unchanged_sparse_file_reuses_it_with_its_holes(store, tmp_path):
    upper = new_layer(tmp_path, "container-1")
    with open(upper / "sparse", "wb") as f:
        f.truncate(TB)
        f.write(b"start")
    first = store.create(WS, str(upper))
    before = bytes_read()
    second = store.create(WS, str(upper), parent=first.checkpoint_id)
    assert bytes_read() - before < 16 * MIB
    entries = [next(e for e in m.entries if e.path == "sparse") for m in (first, second)]
    assert entries[0].holes == entries[1].holes == ((4096, TB - 4096),)
    assert entries[0].chunks == entries[1].chunks


@pytest.mark.parametrize(
    "holes",
    [
        ((10, 5), (12, 5)),
        ((20, 5), (10, 5)),
        ((10, 5), (15, 5)),
        ((95, 10),),
        ((10, 0),),
        ((-1, 5),),
        ((10, True),),
        ((10,),),
    ],
    ids=[
        "overlapping",
        "unsorted",
        "touching",
        "past-the-end",
        "empty",
        "negative",
        "bool",
        "not-a-pair",
    ],
)
def test_a_manifest_with_holes_out_of_order_or_outside_the_file_is_refused(holes):
    with pytest.raises(ManifestInvalid, match="holes"):
        Entry(path="f", type="file", size=100, holes=holes).check()
    with pytest.raises(ManifestInvalid, match="holes"):
        Entry(path="d", type="dir", holes=((0, 1),)).check()


# --- links, devices, FIFOs ----------------------------------------------------------------------


def test_a_directory_that_became_a_link_between_checkpoints_is_restored_as_the_link(
    store, tmp_path
):
    """First ``work/`` is a directory with a file; then the user replaces it with a link to
    a host directory. The second checkpoint (built on the first) restores the link and
    writes nothing through it, wherever it points."""
    outside = tmp_path / "host-dir"
    outside.mkdir()
    upper = new_layer(tmp_path, "container-1")
    (upper / "work").mkdir()
    (upper / "work" / "result.txt").write_text("mine\n")
    first = store.create(WS, str(upper))
    (upper / "work" / "result.txt").unlink()
    (upper / "work").rmdir()
    (upper / "work").symlink_to(outside)
    second = store.create(WS, str(upper), parent=first.checkpoint_id)
    assert [(e.path, e.type) for e in second.entries] == [("work", "symlink")]

    target = new_layer(tmp_path, "container-2")
    store.restore(WS, second.checkpoint_id, str(target))
    assert os.readlink(target / "work") == str(outside)
    assert list(outside.iterdir()) == []
    with pytest.raises(ManifestInvalid, match="before its directory"):
        # the same path as a link and then as a directory with content: refused on load
        second.with_changes(entries=(*second.entries, Entry(path="work/result.txt", type="file")))
    third = new_layer(tmp_path, "container-3")
    entries = [
        Entry(path="work", type="symlink", target=str(outside)),
        Entry(path="work/planted", type="file"),
    ]
    with pytest.raises((ManifestInvalid, OSError)):
        restore_tree(str(third), entries, lambda entry: iter(()))
    assert list(outside.iterdir()) == [] and list(third.iterdir()) == []


def test_devices_are_left_out_unopened_and_fifos_are_recorded_unopened(tmp_path):
    upper = new_layer(tmp_path, "container-1")
    os.mknod(upper / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mknod(upper / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(upper / "pipe")  # opening it for reading would block without a writer
    (upper / "shadow").symlink_to("/etc/shadow")
    found = {s.entry.path: s.entry for s in scan_upper(str(upper), ())}
    assert set(found) == {"pipe", "shadow"}
    assert found["pipe"].type == "fifo"
    assert (found["shadow"].type, found["shadow"].target) == ("symlink", "/etc/shadow")
