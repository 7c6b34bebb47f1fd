"""What the clusters service remembers survives a restart, and a crash while writing leaves
the previous state readable."""

import json

import pytest

from hub_services.clusters import state
from hub_services.clusters.state import ClusterRecord, ClusterStore, MemberRecord


def record(**changes) -> ClusterRecord:
    base = dict(
        user="alice",
        workspace="lab",
        cluster_id="k3x9q2",
        settings={"type": "static", "members": 2, "resource_model": "standard-small"},
        subnet="10.231.0.64/26",
        workspace_container="abc123",
        workspace_address="10.231.0.80",
        internal=False,
        model={
            "name": "standard-small",
            "cpus": 2.0,
            "memory_gb": 8.0,
            "gpus": 0,
            "gpu_memory_gb": 0.0,
        },
        data_dir="/srv/alice/lab/mnt",
        created_at="2026-01-31T18:00:00+00:00",
    )
    return ClusterRecord(**{**base, **changes})


def test_records_round_trip_with_their_members(tmp_path):
    store = ClusterStore(tmp_path / "clusters.json")
    assert store.load() == ({}, {})
    rec = record(
        members={
            "m1": MemberRecord(
                "m1", "10.231.0.90", "2026-01-31T18:01:00+00:00", preemptible=True, joined=True
            )
        }
    )
    store.write(store.dump({"pool": "10.231.0.0/16"}, {rec.key: rec}))
    pool, records = store.load()
    assert pool == {"pool": "10.231.0.0/16"} and records == {"alice/lab": rec}
    assert records["alice/lab"].members["m1"].preemptible
    assert (tmp_path / "clusters.json").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    store = ClusterStore(tmp_path / "clusters.json")
    store.write(store.dump({}, {"alice/lab": record()}))

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(state.os, "replace", crash)
    with pytest.raises(OSError):
        store.write(store.dump({}, {}))
    assert list(store.load()[1]) == ["alice/lab"]
    assert [p.name for p in tmp_path.iterdir()] == ["clusters.json"]  # no temp file left


def test_a_newer_state_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / "clusters.json").write_text(json.dumps({"version": 99, "clusters": {}}))
    with pytest.raises(ValueError, match="run the newer service or move the file aside"):
        ClusterStore(tmp_path / "clusters.json").load()
