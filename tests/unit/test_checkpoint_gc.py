"""Garbage collection never takes a chunk a live checkpoint needs, also while checkpoints are
being written; a random sequence of create/clone/prune/collect steps keeps every live
checkpoint restorable."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_checkpoint_trees import (
    MOUNT_POINTS,
    build_workspace_tree,
    describe_tree,
    needs_root,
    new_layer,
)

from benchhub.checkpoints.backends import LocalDirectoryBackend, chunk_object
from benchhub.checkpoints.errors import CheckpointAborted
from benchhub.checkpoints.garbage import GC_PREFIX, WRITER_PREFIX, LeaseManager
from benchhub.checkpoints.store import CheckpointStore

pytestmark = needs_root
WS = "alice--analysis"


def make_store(root: Path, **traits) -> CheckpointStore:
    return CheckpointStore(backend=LocalDirectoryBackend(root), lock_poll_interval=0.02, **traits)


def small_store(root: Path, **traits) -> CheckpointStore:
    """A store with 1 KiB chunks so that small files share and split into many chunks."""
    return make_store(root, chunk_avg_size=1024, chunk_min_size=256, chunk_max_size=4096, **traits)


def chunk_files(store: CheckpointStore) -> set[str]:
    return {info.key for info in store.backend.list("chunks/")}


def age_chunks(store: CheckpointStore, seconds: float) -> None:
    for info in store.backend.list("chunks/"):
        path = os.path.join(store.backend.root, info.key)
        os.utime(path, (info.modified - seconds, info.modified - seconds))


@pytest.fixture
def upper(tmp_path):
    path = new_layer(tmp_path, "container")
    build_workspace_tree(path)
    return path


def test_grace_keeps_young_chunks_and_reuse_makes_old_ones_young(tmp_path, upper):
    store = make_store(tmp_path / "store", gc_grace=3600)
    store.create(WS, str(upper), exclude=MOUNT_POINTS)
    store.delete_workspace(WS)

    assert store.collect_garbage().deleted == []  # unreferenced, but written just now
    age_chunks(store, 7200)
    again = store.create("bob--ws", str(upper), exclude=MOUNT_POINTS)  # re-uses every chunk
    assert again.totals["new_chunks"] == 0
    assert store.collect_garbage().deleted == []
    store.verify("bob--ws", again.checkpoint_id)

    store.delete_workspace("bob--ws")
    age_chunks(store, 7200)
    assert len(store.collect_garbage().deleted) == len(again.chunks)
    assert chunk_files(store) == set()


def test_a_writer_waits_while_a_collector_sweeps(tmp_path, upper):
    store = make_store(tmp_path / "store")
    store.backend.put(f"{GC_PREFIX}sweeping.json", b"{}", overwrite=True)
    # Observe the lock, not the clock: the writer backs off by sleeping through its lease
    # manager; its third back-off (the sweep lock found three times) is held here while the
    # test looks. A writer that ignored the sweep lock would never get there.
    back_offs, parked, go_on = [], threading.Event(), threading.Event()
    real_sleep = store.leases.sleep

    def sleep(seconds: float) -> None:
        back_offs.append(seconds)
        if len(back_offs) == 3:
            parked.set()
            go_on.wait(10)
        real_sleep(seconds)

    store.leases.sleep = sleep
    done = []
    writer = threading.Thread(
        target=lambda: done.append(store.create(WS, str(upper), exclude=MOUNT_POINTS))
    )
    writer.start()
    assert parked.wait(10), "the writer did not wait for the sweep lock"

    assert writer.is_alive() and store.list(WS) == []
    assert list(store.backend.list(WRITER_PREFIX)) == []  # withdrawn while waiting
    store.backend.delete(f"{GC_PREFIX}sweeping.json")
    go_on.set()
    writer.join(10)
    assert [m.checkpoint_id for m in store.list(WS)] == [done[0].checkpoint_id]


def test_the_collector_backs_off_while_a_checkpoint_is_being_written(tmp_path, upper):
    store = make_store(tmp_path / "store", gc_grace=0, gc_wait=0.2)
    manifest = store.create(WS, str(upper), exclude=MOUNT_POINTS)
    store.delete_workspace(WS)
    store.backend.put(f"{WRITER_PREFIX}busy.json", b"{}", overwrite=True)

    report = store.collect_garbage()

    assert report.deleted == [] and "kept being written" in report.skipped
    assert len(chunk_files(store)) == len(manifest.chunks)
    assert list(store.backend.list(GC_PREFIX)) == []  # the sweep lock went with it


def test_a_crashed_writers_stale_lease_does_not_block_collection(tmp_path, upper):
    store = make_store(tmp_path / "store", gc_grace=0, gc_wait=0.2, lease_ttl=60)
    store.create(WS, str(upper), exclude=MOUNT_POINTS)
    store.delete_workspace(WS)
    store.backend.put(f"{WRITER_PREFIX}crashed.json", b"{}", overwrite=True)
    os.utime(os.path.join(store.backend.root, f"{WRITER_PREFIX}crashed.json"), (0, 0))

    assert store.collect_garbage().skipped is None
    assert chunk_files(store) == set()
    assert list(store.backend.list("locks/")) == []  # and its leftover lease is cleaned up


def test_chunks_reused_by_a_checkpoint_published_during_collection_survive(tmp_path, upper):
    class Backend(LocalDirectoryBackend):
        def put(self, key, data, *, overwrite=False):
            if key.startswith(GC_PREFIX) and not published:  # after the mark, before the sweep
                published.append(store.create("bob--ws", str(upper), exclude=MOUNT_POINTS))
            return super().put(key, data, overwrite=overwrite)

    published = []
    store = make_store(tmp_path / "store", gc_grace=0)
    store.backend = Backend(tmp_path / "store")
    store.create(WS, str(upper), exclude=MOUNT_POINTS)
    store.delete_workspace(WS)

    report = store.collect_garbage()

    assert report.candidates > 0 and report.deleted == []
    store.verify("bob--ws", published[0].checkpoint_id)


def test_a_writer_that_outlived_its_lease_does_not_publish(tmp_path, upper):
    store = make_store(tmp_path / "store", lease_ttl=60)
    clock = itertools.chain([0.0], itertools.repeat(1000.0))
    store._leases = LeaseManager(store.backend, 60, 60, 0.02, monotonic=lambda: next(clock))

    with pytest.raises(CheckpointAborted, match="retrying is safe"):
        store.create(WS, str(upper), exclude=MOUNT_POINTS)

    assert store.list(WS) == [] and list(store.backend.list(WRITER_PREFIX)) == []


# ---- random sequences of operations ---------------------------------------------------

_RNG = random.Random(7)
_BLOB = _RNG.randbytes(12_000)
CONTENTS = [
    b"",
    _BLOB,
    _BLOB[:5000] + b"an edit in the middle" + _BLOB[5000:],
    b"x" * 9000,
    _BLOB[6000:] + _RNG.randbytes(3000),
]
FILE_NAMES = ["a.txt", "b.bin", "sub/c.txt", "sub/deeper/d.bin"]
WORKSPACES = ["ws-a", "ws-b", "ws-c"]


class CheckpointLifecycle(RuleBasedStateMachine):
    """Model: the tree each live checkpoint must restore to."""

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="benchhub-ckpt-hypothesis-"))
        self.store = small_store(self.tmp / "store", gc_grace=0, racy_window=0.05)
        self.uppers: dict[str, Path] = {}
        self.expected: dict[tuple[str, str], dict] = {}
        self.layers = itertools.count()

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(
        workspace=st.sampled_from(WORKSPACES),
        changes=st.dictionaries(
            st.sampled_from(FILE_NAMES), st.none() | st.integers(0, len(CONTENTS) - 1), max_size=3
        ),
        use_parent=st.booleans(),
    )
    def create(self, workspace, changes, use_parent):
        upper = self.uppers.setdefault(workspace, new_layer(self.tmp, f"layer-{next(self.layers)}"))
        for name, content in changes.items():
            path = upper / name
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(CONTENTS[content])
        latest = self.store.latest(workspace) if use_parent else None
        parent = latest.checkpoint_id if latest else None
        manifest = self.store.create(workspace, str(upper), parent=parent)
        self.expected[(workspace, manifest.checkpoint_id)] = describe_tree(upper)

    @precondition(lambda self: self.expected)
    @rule(data=st.data(), target_workspace=st.sampled_from(WORKSPACES))
    def clone(self, data, target_workspace):
        workspace, checkpoint_id = data.draw(st.sampled_from(sorted(self.expected)))
        clone = self.store.clone_lineage(workspace, checkpoint_id, target_workspace)
        self.expected[(target_workspace, clone.checkpoint_id)] = self.expected[
            (workspace, checkpoint_id)
        ]

    @rule(workspace=st.sampled_from(WORKSPACES))
    def delete_workspace(self, workspace):
        self.store.delete_workspace(workspace)
        self.expected = {k: v for k, v in self.expected.items() if k[0] != workspace}

    @rule(workspace=st.sampled_from(WORKSPACES), keep=st.integers(0, 2))
    def retention(self, workspace, keep):
        for checkpoint_id in self.store.retention(workspace, keep_automatic=keep):
            del self.expected[(workspace, checkpoint_id)]

    @rule()
    def collect_garbage(self):
        self.store.collect_garbage()

    @precondition(lambda self: self.expected)
    @rule(data=st.data())
    def restore(self, data):
        workspace, checkpoint_id = data.draw(st.sampled_from(sorted(self.expected)))
        target = new_layer(self.tmp, f"layer-{next(self.layers)}")
        self.store.restore(workspace, checkpoint_id, str(target))
        assert describe_tree(target) == self.expected[(workspace, checkpoint_id)]

    @invariant()
    def every_live_checkpoint_has_all_its_chunks(self):
        stored = chunk_files(self.store)
        live = {}
        for workspace in WORKSPACES:
            for manifest in self.store.list(workspace):
                live[(workspace, manifest.checkpoint_id)] = manifest
                assert {chunk_object(k) for k in manifest.chunks} <= stored
        assert set(live) == set(self.expected)


CheckpointLifecycle.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_operation_sequences_keep_live_checkpoints_whole = CheckpointLifecycle.TestCase
