"""A cluster member's ``/scratch`` in the usage ledger, on a real hub with a real cluster.

What the owner notices: while their workspace's cluster runs a member with a 1 GB
``/scratch``, the Usage API charges them 1 GB of scratch storage for that time beside the
workspace's own 1 GB ``/data``, attributed to the workspace. The truth is the engine's: the
member container's ``State.StartedAt``; the ledger is read through the service's REST API.

Hub "benchscr" runs the clusters service (members' scratch under the test's directory, a
scaling pass every second) and the lifecycle service with a usage pass every 2 s.
"""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta

import pytest
from support.cluster_harness import Clusters, cluster_env, members_in, remove_cluster_leftovers
from support.docker_cli import cleanup, docker
from support.hub_harness import HubProcess
from support.waiting import wait

from hub_services.lifecycle.ledger import Ledger
from hub_services.lifecycle.run_evidence import docker_time_us

PREFIX = "benchscr"
MEMBER = "standard-small"
WINDOW_S = 10  # a stretch of the member's run: both volumes held all of it


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            **cluster_env(scratch, "10.246.0.0/20", 2, 8),
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
        },
    )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    hub.ensure_user("alice")
    hub.start_workspace("alice", "lab", {"resource_model": "test-small", "storage_gb": 1})
    yield Clusters(hub, scratch)
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def ledger_of(hub: HubProcess) -> Ledger:
    return Ledger(f"sqlite:///{hub.workdir / 'state' / 'lifecycle.sqlite'}")


def member_rows(hub: HubProcess) -> list[dict]:
    ledger = ledger_of(hub)
    try:
        return [r for r in ledger.run_rows() if r["kind"] == "cluster-member"]
    finally:
        ledger.close()


def data_held_since_us(hub: HubProcess) -> int:
    """When the ledger's open storage period of alice/lab's /data began."""
    ledger = ledger_of(hub)
    try:
        return ledger.storage_now()[("alice", "lab")][2]
    finally:
        ledger.close()


def usage_row(hub: HubProcess, since: datetime, until: datetime) -> dict:
    r = hub.service_api(
        "lifecycle",
        "api/usage",
        user="alice",
        group_by="workspace",
        **{"from": since.isoformat(), "to": until.isoformat()},
    )
    assert r.status_code == 200, r.text
    [row] = [row for row in r.json()["rows"] if row["workspace"] == "lab"]
    return row


def month_hours(when: datetime) -> float:
    return calendar.monthrange(when.year, when.month)[1] * 24


def test_a_members_scratch_is_charged_as_storage_of_its_workspace_while_it_runs(clusters):
    hub = clusters.hub
    body = {"type": "static", "members": 1, "resource_model": MEMBER, "scratch_gb": 1}
    r = clusters.api("POST", body=body)
    assert r.status_code == 202, r.text
    [member] = wait(lambda: members_in("idle")(clusters, 1), 90, "the member is idle")
    inspect = json.loads(docker("inspect", member["name"]))[0]
    assert any(m["Destination"] == "/scratch" for m in inspect["Mounts"]), inspect["Mounts"]
    started_us = docker_time_us(inspect["State"]["StartedAt"])

    [row] = wait(lambda: member_rows(hub), 30, "the ledger holds the member's run")
    assert (row["user"], row["workspace"], row["scratch_gb"]) == ("alice", "lab", 1.0)
    assert row["start_us"] == started_us

    # a window inside the member's run, in the past: /data (1 GB) and /scratch (1 GB) both
    # held all of it, so the ledger owes exactly 2 GB × WINDOW_S
    since = datetime.fromtimestamp(started_us / 1e6, UTC) + timedelta(seconds=1)
    until = since + timedelta(seconds=WINDOW_S)
    wait(lambda: datetime.now(UTC) > until, WINDOW_S + 5, "the window is over")
    found = usage_row(hub, since, until)
    gb_hours = found["storage_gb_months"] * month_hours(since)
    assert gb_hours == pytest.approx(2 * WINDOW_S / 3600, rel=0.01), found

    # between the ledger's start of /data and the member's start (the manager booted in
    # between): /data alone; the window comes from the ledger's own period and the engine's
    # start, so it holds however fast the cluster came up
    first = datetime.fromtimestamp(data_held_since_us(hub) / 1e6, UTC) + timedelta(seconds=0.5)
    last = datetime.fromtimestamp(started_us / 1e6, UTC) - timedelta(seconds=0.5)
    assert last - first >= timedelta(seconds=1), (first, last)
    before = usage_row(hub, first, last)
    before_gb_hours = before["storage_gb_months"] * month_hours(since)
    expected = (last - first).total_seconds() / 3600
    assert before_gb_hours == pytest.approx(expected, rel=0.01), before


def test_a_removed_members_scratch_stops_counting_when_its_run_ended(clusters):
    hub = clusters.hub
    r = clusters.api("DELETE")
    assert r.status_code in (202, 204), r.text
    wait(lambda: clusters.status() is None, 60, "the cluster is gone")
    rows = wait(
        lambda: [r for r in member_rows(hub) if r["stop_us"] is not None] or None,
        30,
        "the member's run is closed",
    )
    ended = datetime.fromtimestamp(max(r["stop_us"] for r in rows) / 1e6, UTC)
    since = ended + timedelta(seconds=1)
    until = since + timedelta(seconds=WINDOW_S)
    wait(lambda: datetime.now(UTC) > until, WINDOW_S + 5, "the window is over")
    found = usage_row(hub, since, until)
    assert found["storage_gb_months"] * month_hours(since) == pytest.approx(
        WINDOW_S / 3600, rel=0.01
    ), found  # /data only
