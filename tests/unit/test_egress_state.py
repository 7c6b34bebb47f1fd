"""The egress desired state on disk: what the service writes every pass is written only when
it changed, so a steady hub leaves its files (and their directory) alone."""

from __future__ import annotations

import os

from benchhub.egress_state import EgressState
from hub_services.egress.proxy import render_conf


def _files(root) -> dict[str, int]:
    return {p.name: os.stat(p).st_ino for p in root.rglob("*") if p.is_file()}


def test_the_same_load_marked_again_leaves_the_file_alone_and_a_new_one_replaces_it(tmp_path):
    state = EgressState(tmp_path)
    registered_at = state.register("alice/lab", "c1", "10.213.0.5", ["a.test"])
    records = state.registered()
    state.mark_loaded(state.generation(), records)
    before = _files(tmp_path)
    state.mark_loaded(state.generation(), records)
    assert _files(tmp_path) == before  # no rewrite, no temporary file
    assert state.is_loaded("alice/lab", registered_at)

    state.register("bob/lab", "c2", "10.213.0.6", ["b.test"])
    state.mark_loaded(state.generation(), state.registered())
    assert _files(tmp_path)["loaded.json"] != before["loaded.json"]  # replaced
    assert state.is_loaded("alice/lab", registered_at)


def test_squid_conf_rendered_again_unchanged_is_not_rewritten(tmp_path):
    state = EgressState(tmp_path)
    state.register("alice/lab", "c1", "10.213.0.5", ["a.test"])
    first = render_conf(state, state.registered(), [])
    inode = os.stat(state.conf_path).st_ino
    assert render_conf(state, state.registered(), []) == first
    assert os.stat(state.conf_path).st_ino == inode

    state.register("bob/lab", "c2", "10.213.0.6", ["b.test"])
    changed = render_conf(state, state.registered(), [])
    assert changed != first and "b.test" in state.conf_path.read_text()
