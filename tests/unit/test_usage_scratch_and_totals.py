"""Cluster members' ``/scratch`` in the usage ledger, and the ledger's totals as Prometheus
counters: a member's scratch is storage for as long as it runs, attributed to its workspace,
user and project; its size is the allocation the clusters service claimed (the claim record
beside the volume); the totals are there at zero before anything was recorded and never go
down. Real SQLite ledgers and real claim records (StorageAdmission) in a temporary directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from benchhub.labels import cluster_label
from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import StorageAdmission
from hub_services.lifecycle.ledger import Ledger, ObservedRun, to_us
from hub_services.lifecycle.metrics import LifecycleMetrics
from hub_services.lifecycle.recorder import scratch_allocation_gb
from hub_services.lifecycle.run_evidence import scratch_source
from hub_services.lifecycle.usage import Rates
from hub_services.lifecycle.usage_api import compute
from hub_services.lifecycle.usage_report import UsageQuery

S = 1_000_000
HOUR = 3600 * S
T0 = to_us(datetime(2025, 3, 1, 8, 0, tzinfo=UTC).timestamp())
MARCH_S = 31 * 86_400


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'lifecycle.sqlite'}")
    yield store
    store.close()


def member(container="m1", start=T0, scratch_gb=10.0, workspace="ws1") -> ObservedRun:
    return ObservedRun(
        container,
        "bench-cluster-k1-m1",
        "cluster-member",
        "alice",
        workspace,
        "",
        1.0,
        2.0,
        0,
        start,
        scratch_gb,
    )


def member_inspect(mounts: list[dict], role: str = "member") -> dict:
    return {"Config": {"Labels": {cluster_label("role"): role}}, "Mounts": mounts}


SCRATCH_MOUNT = {"Type": "bind", "Source": "/srv/scratch/k1/m1/mnt", "Destination": "/scratch"}
DATA_MOUNT = {"Type": "bind", "Source": "/srv/ws/alice/ws1/mnt", "Destination": "/data"}


def test_a_members_scratch_is_the_host_directory_bound_at_scratch():
    assert scratch_source(member_inspect([DATA_MOUNT, SCRATCH_MOUNT])) == SCRATCH_MOUNT["Source"]


def test_a_member_without_scratch_a_manager_and_a_workspace_have_none():
    assert scratch_source(member_inspect([DATA_MOUNT])) is None
    assert scratch_source(member_inspect([DATA_MOUNT, SCRATCH_MOUNT], role="manager")) is None
    assert scratch_source({"Config": {"Labels": {}}, "Mounts": [SCRATCH_MOUNT]}) is None
    volume = {**SCRATCH_MOUNT, "Type": "volume"}  # not one BenchHub allocated
    assert scratch_source(member_inspect([volume])) is None


def test_the_scratch_size_is_the_claim_the_clusters_service_recorded(tmp_path):
    root = tmp_path / "cluster-scratch"
    volume_dir = root / "k1" / "m1"
    (volume_dir / "mnt").mkdir(parents=True)
    admission = StorageAdmission(roots=[str(root)], capacity_gb=100, user_quota="")
    admission.admit(volume_dir, StorageRequest("scratch_gb", "alice", 3 * GIB))
    assert json.loads((volume_dir / "allocation.json").read_text())["bytes"] == 3 * GIB
    assert scratch_allocation_gb(str(volume_dir / "mnt")) == 3.0


def test_a_scratch_directory_without_a_claim_or_gone_counts_nothing(tmp_path):
    (tmp_path / "root" / "k1" / "m1" / "mnt").mkdir(parents=True)
    assert scratch_allocation_gb(str(tmp_path / "root" / "k1" / "m1" / "mnt")) == 0.0
    assert scratch_allocation_gb(str(tmp_path / "nowhere" / "k9" / "m1" / "mnt")) == 0.0
    assert not (tmp_path / "nowhere").exists()  # reading made nothing


def test_a_members_scratch_is_storage_for_its_workspace_while_it_runs(ledger):
    ledger.open_run(member(), "genomics", T0)
    ledger.close_run("m1", T0 + 6 * HOUR, "event")
    ledger.open_run(member("m2", scratch_gb=0.0), "genomics", T0)  # no scratch: no storage
    ledger.close_run("m2", T0 + 6 * HOUR, "event")
    [period] = ledger.storage(T0 - HOUR, T0 + 24 * HOUR)
    assert (period.user, period.workspace, period.project, period.gb) == (
        "alice", "ws1", "genomics", 10.0,
    )  # fmt: skip
    assert (period.start, period.stop) == (T0 / S, (T0 + 6 * HOUR) / S)
    since = datetime(2025, 3, 1, tzinfo=UTC)
    query = UsageQuery(since, datetime(2025, 4, 1, tzinfo=UTC), group_by="project")
    found = compute(ledger, Rates(storage_gb_month=2.0), query, now=T0 / S + 86_400)
    totals = found[("genomics",)]
    expected_months = 10.0 * 6 * 3600 / MARCH_S
    assert totals.storage_gb_months == pytest.approx(expected_months)
    assert totals.charge == pytest.approx(2 * 6 * 1.0 + 2.0 * expected_months)  # 2 runs × 6 CPU-h


def test_a_running_members_scratch_counts_until_now_and_the_user_filter_applies(ledger):
    ledger.open_run(member(), "", T0)
    [period] = ledger.storage(T0, T0 + HOUR, user="alice")
    assert period.stop is None
    assert ledger.storage(T0, T0 + HOUR, user="bob") == []


def test_a_scratch_unreadable_at_the_first_observation_is_taken_from_a_later_one(ledger):
    ledger.open_run(member(scratch_gb=0.0), "", T0)
    ledger.open_run(member(scratch_gb=10.0), "", T0 + S)
    [row] = ledger.run_rows()
    assert row["scratch_gb"] == 10.0


def test_a_ledger_made_before_scratch_was_counted_gains_the_column_and_keeps_its_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    ledger = Ledger(url)
    ledger.open_run(member(scratch_gb=0.0), "", T0)
    ledger.close()
    with sa.create_engine(url).begin() as conn:  # as the ledger was before this column
        conn.execute(sa.text("DROP INDEX ix_usage_runs_scratch"))
        conn.execute(sa.text("ALTER TABLE usage_runs DROP COLUMN scratch_gb"))
    reopened = Ledger(url)
    try:
        [row] = reopened.run_rows()
        assert row["scratch_gb"] == 0.0 and row["container_id"] == "m1"
        reopened.open_run(member("m2", scratch_gb=4.0), "", T0)
        assert [p.gb for p in reopened.storage(T0, T0 + HOUR)] == [4.0]
    finally:
        reopened.close()


def scrape(metrics: LifecycleMetrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_usage_series_is_there_at_zero_before_the_first_pass():
    found = scrape(LifecycleMetrics())
    for kind in ("workspace", "cluster-manager", "cluster-member"):
        for name in ("run_seconds", "cpu_seconds", "memory_byte_seconds", "gpu_seconds"):
            assert found[(f"benchhub_usage_{name}_total", (("kind", kind),))] == 0
    for volume in ("data", "scratch"):
        assert found[("benchhub_usage_storage_byte_seconds_total", (("volume", volume),))] == 0


def test_the_counters_are_what_the_ledger_gained_since_the_service_started_in_base_units(ledger):
    metrics = LifecycleMetrics()
    metrics.usage.record(*ledger.totals(T0))  # the service starts: an empty ledger
    ledger.open_run(member(), "", T0)
    ledger.close_run("m1", T0 + 2 * HOUR, "event")
    workspace = ObservedRun("w1", "bench-alice--ws1", "workspace", "alice", "ws1", "s", 2, 4, 1, T0)
    ledger.open_run(workspace, "", T0 + HOUR)  # seen an hour after its start, still running
    ledger.set_storage("alice", "ws1", "", 5.0, T0)
    metrics.usage.record(*ledger.totals(T0 + 3 * HOUR))
    found = scrape(metrics)

    def value(name, **labels):
        return found[(f"benchhub_usage_{name}_total", tuple(sorted(labels.items())))]

    assert value("run_seconds", kind="cluster-member") == 7200
    assert value("cpu_seconds", kind="cluster-member") == 7200
    assert value("memory_byte_seconds", kind="cluster-member") == 2 * GIB * 7200
    assert value("run_seconds", kind="workspace") == 3600  # until it was last seen
    assert value("cpu_seconds", kind="workspace") == 2 * 3600
    assert value("gpu_seconds", kind="workspace") == 3600
    assert value("storage_byte_seconds", volume="scratch") == 10 * GIB * 7200
    assert value("storage_byte_seconds", volume="data") == 5 * GIB * 3 * 3600


def test_a_restarted_service_counts_from_zero_what_the_ledger_gains_from_then_on(ledger):
    ledger.open_run(member(), "", T0)
    ledger.close_run("m1", T0 + 5 * HOUR, "event")  # recorded before the restart
    metrics = LifecycleMetrics()  # the service restarted
    metrics.usage.record(*ledger.totals(T0 + 6 * HOUR))
    key = ("benchhub_usage_run_seconds_total", (("kind", "cluster-member"),))
    assert scrape(metrics)[key] == 0  # an ordinary counter reset, not the whole history
    ledger.open_run(member("m2", start=T0 + 6 * HOUR), "", T0 + 6 * HOUR)
    ledger.close_run("m2", T0 + 7 * HOUR, "event")
    metrics.usage.record(*ledger.totals(T0 + 7 * HOUR))
    assert scrape(metrics)[key] == 3600


def test_a_counter_never_goes_down_when_the_ledger_closes_a_run_earlier_than_it_was_counted(ledger):
    metrics = LifecycleMetrics()
    metrics.usage.record(*ledger.totals(T0))
    ledger.set_storage("alice", "ws1", "", 1.0, T0)
    metrics.usage.record(*ledger.totals(T0 + 2 * HOUR))
    ledger.end_storage("alice", "ws1", T0 + HOUR)  # the journal says: deleted an hour earlier
    metrics.usage.record(*ledger.totals(T0 + 3 * HOUR))
    key = ("benchhub_usage_storage_byte_seconds_total", (("volume", "data"),))
    assert scrape(metrics)[key] == GIB * 2 * 3600
