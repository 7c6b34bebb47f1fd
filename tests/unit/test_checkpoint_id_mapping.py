"""Checkpoint owners are container ids, so a checkpoint moves between engines.

On an engine that remaps user namespaces, a container's upper directory holds host ids (the
workspace user 1000:100 is 101000:100100 on the host). A manifest records the container ids
(what an engine without remapping records too), and a restore writes the host ids of the
engine it restores on. The "remapped" layers here are made by shifting a tree as Docker's
default ranges would (container 0-65535 = host 100000-165535); these tests need root.
"""

from __future__ import annotations

import os

import pytest
from test_checkpoint_trees import (
    MOUNT_POINTS,
    build_workspace_tree,
    describe_tree,
    needs_root,
    new_layer,
    without_excluded,
)

from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.overlay import scan_upper
from benchhub.checkpoints.store import CheckpointStore
from benchhub.user_namespace import (
    IDENTITY,
    OVERFLOW_ID,
    IdMap,
    IdRange,
    engine_id_map,
    layer_id_map,
    shift_tree,
)

pytestmark = needs_root
WS = "alice--analysis"
REMAPPED = IdMap((IdRange(0, 100000, 65536),), (IdRange(0, 100000, 65536),))


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)


def plain_layer(tmp_path, name):
    """A layer as an engine without remapping leaves it: host ids are container ids."""
    upper = new_layer(tmp_path, name)
    build_workspace_tree(upper)
    return upper


def remapped_layer(tmp_path, name):
    """The same layer as a remapping engine leaves it: every owner in the host range."""
    upper = plain_layer(tmp_path, name)
    shift_tree(upper, REMAPPED)
    return upper


def owners(entries):
    return {e.path: (e.uid, e.gid) for e in entries}


def test_a_remapped_layer_is_recorded_with_the_container_ids(tmp_path):
    plain = owners(s.entry for s in scan_upper(str(plain_layer(tmp_path, "a")), []))
    remapped = remapped_layer(tmp_path, "b")
    assert owners(s.entry for s in scan_upper(str(remapped), [], REMAPPED)) == plain
    assert plain["home/jovyan/notes/todo.txt"] == (1000, 100)
    assert plain["usr/local/bin/odd-owner"] == (123, 456)


def test_a_checkpoint_from_a_remapping_engine_restores_on_one_that_does_not(store, tmp_path):
    source = plain_layer(tmp_path, "src")
    as_the_container_saw_it = without_excluded(describe_tree(source))
    shift_tree(source, REMAPPED)  # chown keeps mtimes: the same tree on a remapping engine
    manifest = store.create(WS, str(source), MOUNT_POINTS, id_map=REMAPPED)
    target = new_layer(tmp_path, "dst")
    store.restore(WS, manifest.checkpoint_id, str(target), id_map=IDENTITY)
    assert describe_tree(target) == as_the_container_saw_it


def test_a_checkpoint_taken_before_remapping_restores_into_the_remapped_range(store, tmp_path):
    source = plain_layer(tmp_path, "old")
    old = store.create(WS, str(source), MOUNT_POINTS, id_map=IDENTITY)
    target = new_layer(tmp_path, "dst")
    store.restore(WS, old.checkpoint_id, str(target), id_map=REMAPPED)
    shift_tree(source, REMAPPED)
    assert describe_tree(target) == without_excluded(describe_tree(source))
    notes = target / "home" / "jovyan" / "notes" / "todo.txt"
    assert (notes.stat().st_uid, notes.stat().st_gid) == (101000, 100100)


def test_a_checkpoint_restores_on_the_engine_it_was_taken_on_unchanged(store, tmp_path):
    source = remapped_layer(tmp_path, "src")
    manifest = store.create(WS, str(source), MOUNT_POINTS, id_map=REMAPPED)
    target = new_layer(tmp_path, "dst")
    store.restore(WS, manifest.checkpoint_id, str(target), id_map=REMAPPED)
    assert describe_tree(target) == without_excluded(describe_tree(source))


def test_an_owner_the_container_cannot_see_is_recorded_as_nobody(tmp_path):
    upper = new_layer(tmp_path, "c")
    (upper / "made-by-the-host").write_text("x")  # host root: outside the container's range
    (entry,) = [s.entry for s in scan_upper(str(upper), [], REMAPPED)]
    assert (entry.uid, entry.gid) == (OVERFLOW_ID, OVERFLOW_ID)


def test_only_the_engines_own_layers_are_translated(tmp_path):
    """The default map (the store's, when none is given) asks the local engine (this test
    needs it): its layers under its data root get its map, any other directory none."""
    assert layer_id_map(tmp_path) == IDENTITY
    engine = engine_id_map()
    if not engine.is_identity:
        import docker

        root = docker.APIClient(version="auto").info()["DockerRootDir"]
        assert layer_id_map(os.path.join(root, "overlay2", "x", "diff")) == engine
