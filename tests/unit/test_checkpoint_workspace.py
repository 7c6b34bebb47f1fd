"""A workspace's checkpoint record and operations (benchhub.checkpoints.workspace), and
what checkpoints read from ``docker inspect`` (benchhub.checkpoints.containers)."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.waiting import wait
from test_checkpoint_trees import needs_root, new_layer

from benchhub.checkpoints import workspace as workspace_module
from benchhub.checkpoints.backends import LocalDirectoryBackend, chunk_object
from benchhub.checkpoints.containers import (
    excluded_paths_of,
    host_dir_of,
    upper_dir_of,
    workspace_of,
)
from benchhub.checkpoints.errors import CheckpointCorrupt, CheckpointError, CheckpointNotFound
from benchhub.checkpoints.manifest import build_manifest, check_id
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import (
    WorkspaceCheckpoints,
    damaged_message,
    find_workspaces,
    image_mismatch,
    new_workspace_id,
    pending_clone_ids,
    read_state,
    unknown_message,
    write_pending_clone,
)

INSPECT = {
    "Name": "/bench-alice--lab",
    "Config": {"Labels": {"org.benchhub.user": "alice", "org.benchhub.workspace": "lab"}},
    "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/var/lib/docker/overlay2/x/diff"}},
    "Mounts": [
        {"Type": "bind", "Source": "/srv/ws/alice/lab/mnt", "Destination": "/data"},
        {"Type": "bind", "Source": "/srv/projects/p1", "Destination": "/data/project"},
        {"Type": "volume", "Source": "/var/lib/docker/volumes/v/_data", "Destination": "/scratch/"},
    ],
}


# ---- containers.py (pure) -------------------------------------------------------------------


def test_inspect_gives_upper_dir_host_dir_owner_and_every_mount_point_excluded():
    assert upper_dir_of(INSPECT) == "/var/lib/docker/overlay2/x/diff"
    assert host_dir_of(INSPECT) == Path("/srv/ws/alice/lab")
    assert workspace_of(INSPECT) == ("alice", "lab")
    assert excluded_paths_of(INSPECT, ["/data", "/tmp/cache/"]) == [
        "/data",
        "/data/project",
        "/scratch",
        "/tmp/cache",
    ]


def test_another_storage_driver_is_named_with_the_fix():
    other = {**INSPECT, "GraphDriver": {"Name": "vfs", "Data": {}}}
    with pytest.raises(CheckpointError, match="vfs storage driver.*overlay2"):
        upper_dir_of(other)


def test_a_container_without_a_data_bind_mount_has_no_workspace_dir():
    assert host_dir_of({"Mounts": []}) is None
    assert workspace_of({"Labels": {}}) is None


# ---- ids and records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user, name",
    [("alice", "lab"), ("Zoë+x@site.org", "rna_seq-2"), ("_svc", "a" * 63), ("u" * 300, "w")],
)
def test_workspace_ids_are_store_safe_readable_and_unique(user, name):
    first, second = new_workspace_id(user, name), new_workspace_id(user, name)
    assert check_id("workspace id", first) == first and first != second
    if user == "alice":
        assert first.startswith("alice.lab.")


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)


@pytest.fixture
def host_dir(tmp_path):
    path = tmp_path / "root" / "alice" / "lab"
    path.mkdir(parents=True)
    return path


def test_ensure_creates_the_record_once_and_renaming_the_directory_keeps_it(store, host_dir):
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=3)
    first = ops.ensure("alice", "lab")
    assert ops.ensure("alice", "lab") == first
    renamed = host_dir.parent / "lab2"
    os.replace(host_dir, renamed)  # what the spawner's rename does
    assert read_state(renamed).workspace_id == first.workspace_id
    assert find_workspaces(host_dir.parent.parent) == {("alice", "lab2"): renamed}


def test_an_unreadable_record_is_an_error_not_a_fresh_start(store, host_dir):
    (host_dir / "checkpoints.json").write_text("{half")
    with pytest.raises(CheckpointError, match="unreadable"):
        WorkspaceCheckpoints(store, host_dir, 3).ensure("alice", "lab")


def test_a_new_workspace_adopts_its_pending_clone_only_for_its_own_name(store, tmp_path):
    root = tmp_path / "root"
    origin = {"workspace_id": "alice.lab.aaaaaa", "checkpoint": "c1"}
    write_pending_clone(root, "alice", "copy", "alice.copy.bbbbbb", origin)
    assert pending_clone_ids(root) == {"alice.copy.bbbbbb"}
    other = root / "alice" / "other"
    other.mkdir(parents=True)
    assert WorkspaceCheckpoints(store, other, 3).ensure("alice", "other", root).origin is None
    copy = root / "alice" / "copy"
    copy.mkdir()
    state = WorkspaceCheckpoints(store, copy, 3).ensure("alice", "copy", root)
    assert (state.workspace_id, state.origin) == ("alice.copy.bbbbbb", origin)
    assert pending_clone_ids(root) == set()


def test_an_expired_pending_clone_is_not_adopted(store, tmp_path, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setattr(workspace_module, "PENDING_CLONE_TTL", -1)
    write_pending_clone(root, "alice", "copy", "alice.copy.bbbbbb", {})
    (root / "alice" / "copy").mkdir(parents=True)
    state = WorkspaceCheckpoints(store, root / "alice" / "copy", 3).ensure("alice", "copy", root)
    assert state.workspace_id != "alice.copy.bbbbbb"


# ---- taking and restoring (real files; root for ownership and whiteouts) ------------------------


def _upper(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    upper = new_layer(tmp_path, name)
    for path, data in files.items():
        (upper / path).parent.mkdir(parents=True, exist_ok=True)
        (upper / path).write_bytes(data)
    return upper


@needs_root
def test_each_checkpoint_is_the_next_ones_parent_and_retention_keeps_the_newest(
    store, host_dir, tmp_path
):
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=2)
    ops.ensure("alice", "lab")
    upper = _upper(tmp_path, "c1", {"home/a.txt": b"one"})
    taken = [ops.take(str(upper), ["/data"], "periodic") for _ in range(3)]
    assert [m.parent for m in taken] == [None, taken[0].checkpoint_id, taken[1].checkpoint_id]
    assert read_state(host_dir).last["checkpoint"] == taken[2].checkpoint_id
    listed = store.list(read_state(host_dir).workspace_id)
    assert [m.checkpoint_id for m in listed] == [m.checkpoint_id for m in taken[1:]]


@needs_root
def test_choose_finds_latest_by_id_or_name_or_none(store, host_dir, tmp_path):
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=5)
    ops.ensure("alice", "lab")
    upper = str(_upper(tmp_path, "c1", {"a": b"1"}))
    named = ops.take(upper, [], "periodic", name="before upgrade")
    latest = ops.take(upper, [], "on stop")
    assert ops.choose("").checkpoint_id == latest.checkpoint_id
    assert ops.choose("before_upgrade").checkpoint_id == named.checkpoint_id
    assert ops.choose(named.checkpoint_id).checkpoint_id == named.checkpoint_id
    assert ops.choose("none") is None
    with pytest.raises(CheckpointNotFound):
        ops.choose("nope")
    message = unknown_message("lab", "nope", store.list(named.workspace_id))
    assert "'nope'" in message and "before_upgrade" in message and "'none'" in message


@needs_root
def test_a_damaged_latest_points_at_the_previous_good_checkpoint(store, host_dir, tmp_path):
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=5)
    ops.ensure("alice", "lab")
    good = ops.take(str(_upper(tmp_path, "c1", {"a.txt": b"old"})), [], "on stop")
    bad = ops.take(str(_upper(tmp_path, "c2", {"a.txt": b"new"})), [], "on stop")
    (only_new,) = set(bad.chunks) - set(good.chunks)
    store.backend.put(chunk_object(only_new), b"garbage", overwrite=True)

    target = new_layer(tmp_path, "fresh")
    with pytest.raises(CheckpointCorrupt) as err:
        ops.restore(ops.choose(""), str(target))
    assert os.listdir(target) == []  # never a half-restored filesystem
    found = ops.previous_good(err.value.checkpoint_id)
    assert found.checkpoint_id == good.checkpoint_id
    message = damaged_message(err.value, found)
    assert bad.checkpoint_id in message and f"'{good.checkpoint_id}'" in message
    assert "restore_checkpoint" in message and "/a.txt" in message
    ops.restore(found, str(target))
    assert (target / "a.txt").read_bytes() == b"old"
    assert read_state(host_dir).last["checkpoint"] == good.checkpoint_id


@needs_root
def test_the_lock_makes_a_second_checkpoint_wait_for_the_first(store, host_dir, tmp_path):
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=5)
    ops.ensure("alice", "lab")
    upper = str(_upper(tmp_path, "c1", {"a": b"1"}))
    order = []
    with workspace_module._locked(host_dir):
        worker = threading.Thread(target=lambda: order.append(ops.take(upper, [], "on stop")))
        worker.start()
        # observe the lock, not the clock: the kernel lists the worker as waiting for it
        wait(
            lambda: waiting_for_flock(host_dir / workspace_module.LOCK_NAME),
            10,
            "the second checkpoint waits for the lock",
            step=0.01,
        )
        order.append("periodic finished")
    worker.join(10)
    assert order[0] == "periodic finished" and order[1].reason == "on stop"
    assert json.loads((host_dir / "checkpoints.json").read_text())["last"]["reason"] == "on stop"


def waiting_for_flock(path: Path) -> bool:
    """Whether some process or thread waits for an flock on ``path`` (a "->" line of
    /proc/locks: "1: -> FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF")."""
    st = os.stat(path)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] != ["->", "FLOCK"]:
            continue
        major, minor, inode = fields[6].split(":")
        if (int(major, 16), int(minor, 16), int(inode)) == (
            os.major(st.st_dev),
            os.minor(st.st_dev),
            st.st_ino,
        ):
            return True
    return False


def test_a_checkpoint_is_restored_only_onto_the_image_it_was_taken_on():
    taken = build_manifest(
        "alice.lab.aaaaaa",
        [],
        {},
        created=datetime.now(UTC),
        image={"name": "benchhub/jupyterlab:latest", "id": "sha256:1"},
    )
    assert image_mismatch(taken, "benchhub/jupyterlab:latest") is None
    refusal = image_mismatch(taken, "benchhub/rstudio:latest")
    assert refusal.startswith("image: ") and "restore_checkpoint to 'none'" in refusal
    older = build_manifest("alice.lab.aaaaaa", [], {}, created=datetime.now(UTC))
    assert image_mismatch(older, "benchhub/rstudio:latest") is None  # not recorded: allowed
