"""CheckpointStore on a local directory: what a user gets back after stop/restore, what a
second checkpoint costs, and how damage and hostile manifests are refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_checkpoint_trees import (
    BIG_RANDOM,
    MOUNT_POINTS,
    build_workspace_tree,
    describe_tree,
    needs_root,
    new_layer,
    without_excluded,
)

from benchhub.checkpoints import store as store_module
from benchhub.checkpoints.backends import LocalDirectoryBackend, chunk_object, manifest_object
from benchhub.checkpoints.errors import (
    CheckpointCorrupt,
    CheckpointNameTaken,
    CheckpointNotFound,
    InvalidCheckpointName,
    ManifestInvalid,
)
from benchhub.checkpoints.store import CheckpointStore

pytestmark = needs_root
WS = "alice--analysis"


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)


@pytest.fixture
def upper(tmp_path):
    path = new_layer(tmp_path, "container-1")
    build_workspace_tree(path)
    return path


def stored_bytes(store: CheckpointStore) -> int:
    return sum(info.size for info in store.backend.list("chunks/"))


def restored(store, tmp_path, checkpoint_id, workspace=WS, name="restored"):
    target = new_layer(tmp_path, name)
    store.restore(workspace, checkpoint_id, str(target))
    return target


def test_restore_gives_back_the_workspace_without_its_mounts(store, upper, tmp_path):
    manifest = store.create(WS, str(upper), exclude=MOUNT_POINTS)

    target = restored(store, tmp_path, manifest.checkpoint_id)

    assert describe_tree(target) == without_excluded(describe_tree(upper))
    assert not (target / "data").exists() and not (target / "etc" / "hosts").exists()
    assert manifest.kind == "automatic" and manifest.totals["new_chunks"] == len(manifest.chunks)
    assert manifest.totals["new_stored_bytes"] == stored_bytes(store)
    assert manifest.totals["stored_bytes"] < manifest.totals["logical_bytes"]  # log compresses


def test_second_checkpoint_stores_only_the_changed_chunks(store, upper, tmp_path, monkeypatch):
    first = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    before = stored_bytes(store)
    big = upper / "home" / "jovyan" / "big.bin"
    data = big.read_bytes()
    big.write_bytes(data[: BIG_RANDOM // 2] + b"inserted by the user" + data[BIG_RANDOM // 2 :])
    (upper / "home" / "jovyan" / "new.txt").write_text("hello\n")
    reads = []
    original = store_module._read_file
    monkeypatch.setattr(
        store_module, "_read_file", lambda s, *a: reads.append(s.entry.path) or original(s, *a)
    )

    second = store.create(WS, str(upper), exclude=MOUNT_POINTS, parent=first.checkpoint_id)

    added = stored_bytes(store) - before
    assert added == second.totals["new_stored_bytes"]
    assert second.totals["new_chunks"] <= 3 and added < BIG_RANDOM / 2
    assert sorted(reads) == ["home/jovyan/big.bin", "home/jovyan/new.txt"]  # the rest: fast path
    assert second.parent == first.checkpoint_id
    target = restored(store, tmp_path, second.checkpoint_id)
    assert describe_tree(target) == without_excluded(describe_tree(upper))


def test_a_file_rewritten_with_same_size_and_mtime_is_read_again(store, upper, tmp_path):
    first = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    todo = upper / "home" / "jovyan" / "notes" / "todo.txt"
    st = todo.stat()
    todo.write_bytes(b"sell reagents\n"[: st.st_size].ljust(st.st_size, b"!"))
    os.utime(todo, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` or tar would do

    second = store.create(WS, str(upper), exclude=MOUNT_POINTS, parent=first.checkpoint_id)

    target = restored(store, tmp_path, second.checkpoint_id)
    assert (target / "home" / "jovyan" / "notes" / "todo.txt").read_bytes() == todo.read_bytes()


def test_files_changed_just_before_the_checkpoint_are_not_trusted_next_time(tmp_path, upper):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=3600)

    manifest = store.create(WS, str(upper), exclude=MOUNT_POINTS)

    assert all(e.ino is None for e in manifest.entries)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_chunk_is_named_by_verify_and_restore_writes_nothing(
    store, upper, tmp_path, damage
):
    manifest = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    entry = next(e for e in manifest.entries if e.path == "home/jovyan/run.log")
    path = Path(store.backend.root) / chunk_object(entry.chunks[-1])
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-8] + b"bitrot!!")

    with pytest.raises(CheckpointCorrupt) as verified:
        store.verify(WS, manifest.checkpoint_id)
    target = new_layer(tmp_path, "fresh")
    with pytest.raises(CheckpointCorrupt) as restoring:
        store.restore(WS, manifest.checkpoint_id, str(target))

    for error in (verified.value, restoring.value):
        assert error.checkpoint_id == manifest.checkpoint_id
        assert error.path == "home/jovyan/run.log"
        assert manifest.checkpoint_id in str(error) and "/home/jovyan/run.log" in str(error)
    assert os.listdir(target) == [] and os.listdir(target.parent) == ["diff"]


@pytest.mark.parametrize(
    "hostile",
    [
        {"path": "../escaped", "type": "file"},
        {"path": "/etc/escaped", "type": "file"},
        {"path": "a/../../escaped", "type": "file"},
        {"path": "escaped", "type": "hardlink", "target": "../../etc/passwd"},
        {"path": "link/escaped", "type": "file"},
        {"path": "etc/x", "type": "dir", "xattrs": {"trusted.overlay.redirect": "Lw=="}},
    ],
)
def test_a_manifest_with_unsafe_paths_is_rejected_before_anything_is_written(
    store, upper, tmp_path, hostile
):
    manifest = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    data = manifest.to_json()
    entry = {"mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0, **hostile}
    if entry["type"] == "file":
        entry.update(size=0, chunks=[])
    link = {
        "path": "link",
        "type": "symlink",
        "mode": 0o777,
        "uid": 0,
        "gid": 0,
        "mtime_ns": 0,
        "target": str(tmp_path),
    }
    data["entries"] += [link, entry]
    key = manifest_object(WS, manifest.checkpoint_id)
    store.backend.put(key, json.dumps(data).encode(), overwrite=True)
    target = new_layer(tmp_path, "fresh")

    with pytest.raises(ManifestInvalid):
        store.restore(WS, manifest.checkpoint_id, str(target))

    assert os.listdir(target) == [] and not (tmp_path / "escaped").exists()


def test_names_are_normalised_unique_and_make_checkpoints_named(store, upper):
    first = store.create(WS, str(upper), exclude=MOUNT_POINTS, name="before upgrade")
    second = store.create(WS, str(upper), exclude=MOUNT_POINTS)

    assert (first.name, first.kind) == ("before_upgrade", "named")
    with pytest.raises(CheckpointNameTaken) as taken:
        store.rename(WS, second.checkpoint_id, "  before   upgrade ")
    assert taken.value.holder == first.checkpoint_id
    with pytest.raises(CheckpointNameTaken):
        store.create(WS, str(upper), exclude=MOUNT_POINTS, name="before_upgrade")
    with pytest.raises(InvalidCheckpointName, match="letters, digits"):
        store.rename(WS, second.checkpoint_id, "../etc")
    assert store.rename(WS, first.checkpoint_id, "before upgrade").name == "before_upgrade"
    renamed = store.rename(WS, second.checkpoint_id, "after upgrade")
    assert (renamed.name, renamed.kind) == ("after_upgrade", "named")
    assert [m.name for m in store.list(WS)] == ["before_upgrade", "after_upgrade"]
    with pytest.raises(CheckpointNotFound):
        store.rename(WS, "20000101T000000000Z-000000", "x")


def test_retention_keeps_the_newest_automatic_and_every_named(store, tmp_path):
    upper = new_layer(tmp_path, "small")
    ids = []
    for i in range(5):
        (upper / f"step-{i}.txt").write_text(f"step {i}\n")
        name = "milestone" if i == 1 else None
        ids.append(store.create(WS, str(upper), name=name).checkpoint_id)

    deleted = store.retention(WS, keep_automatic=2)

    assert deleted == [ids[0], ids[2]]
    assert [m.checkpoint_id for m in store.list(WS)] == [ids[1], ids[3], ids[4]]
    assert store.latest(WS).checkpoint_id == ids[4]
    store.collect_garbage()
    for checkpoint_id in (ids[1], ids[3], ids[4]):
        store.verify(WS, checkpoint_id)


def test_clone_starts_a_new_workspace_on_the_same_chunks(store, upper, tmp_path):
    store.gc_grace = 0
    source = store.create(WS, str(upper), exclude=MOUNT_POINTS, name="published")
    before = stored_bytes(store)

    clone = store.clone_lineage(WS, source.checkpoint_id, "bob--copy")
    store.delete_workspace(WS)
    store.collect_garbage()

    assert stored_bytes(store) == before  # nothing copied, nothing collected
    assert clone.origin == {"workspace": WS, "checkpoint": source.checkpoint_id}
    assert clone.parent is None and set(clone.chunks) == set(source.chunks)
    target = restored(store, tmp_path, clone.checkpoint_id, workspace="bob--copy")
    assert describe_tree(target) == without_excluded(describe_tree(upper))


def test_deleting_a_workspace_frees_its_chunks_at_the_next_collection(store, upper):
    store.gc_grace = 0
    store.create(WS, str(upper), exclude=MOUNT_POINTS)

    assert store.delete_workspace(WS) == 1
    report = store.collect_garbage()

    assert store.list(WS) == [] and stored_bytes(store) == 0
    assert report.bytes_freed > 0 and not report.skipped
    assert store.delete_workspace(WS) == 0  # already gone is success
