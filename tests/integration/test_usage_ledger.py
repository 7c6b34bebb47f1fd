"""The usage ledger on a real hub with real workspaces: it survives the hub and the lifecycle
service being killed mid-run, counts every run once, and agrees with the engine's own times.

The truth is the engine's: ``docker events`` (every start and die of this hub's workspace
containers, with nanosecond times) replayed after the fact. The ledger is read through the
service's REST API and, to check keys and sources, from its database file.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta

import pytest
import requests
from support.docker_cli import cleanup, docker
from support.hub_harness import PASSWORD, TEST_MODELS, HubProcess
from support.waiting import wait

from hub_services.lifecycle.ledger import Ledger

PREFIX = "benchledger"
USER = "lena"
CPUS = TEST_MODELS["test-small"]["cpus"]
MEMORY_GB = TEST_MODELS["test-small"]["memory_gb"]
TOLERANCE_H = 1 / 60  # one minute


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    hub = HubProcess(workdir, prefix=PREFIX)
    cleanup(PREFIX, hub.storage_root)
    hub.start()
    yield hub
    hub.stop()
    cleanup(PREFIX, hub.storage_root)


def usage(hub: HubProcess, **params) -> dict:
    r = hub.service_api("lifecycle", "api/usage", **params)
    assert r.status_code == 200, r.text
    return r.json()


def ledger_rows(hub: HubProcess) -> list[dict]:
    ledger = Ledger(f"sqlite:///{hub.workdir / 'state' / 'lifecycle.sqlite'}")
    try:
        return [r for r in ledger.run_rows() if r["user"] == USER]
    finally:
        ledger.close()


def engine_runs(since: datetime) -> dict[str, list[tuple[float, float | None]]]:
    """Per container id, its runs ``(start, stop)`` in POSIX seconds as the engine's event
    history tells them (stop None: still running)."""
    until = datetime.now(UTC) + timedelta(seconds=1)
    out = docker(
        "events",
        "--since", since.isoformat(),
        "--until", until.isoformat(),
        "--filter", "type=container",
        "--filter", f"label=org.benchhub.user={USER}",
        "--filter", "event=start",
        "--filter", "event=die",
        "--format", "{{json .}}",
    )  # fmt: skip
    runs: dict[str, list] = {}
    for line in out.splitlines():
        event = json.loads(line)
        name = event["Actor"]["Attributes"].get("name", "")
        if not name.startswith(f"{PREFIX}-"):
            continue
        at = int(event["timeNano"]) / 1e9
        if event["Action"] == "start":
            runs.setdefault(event["id"], []).append([at, None])
        elif runs.get(event["id"]) and runs[event["id"]][-1][1] is None:
            runs[event["id"]][-1][1] = at
    return {cid: [tuple(r) for r in found] for cid, found in runs.items()}


def test_the_ledger_counts_every_run_once_across_a_killed_hub_and_service(hub):
    """Two workspaces run; the lifecycle service is SIGKILLed and then the hub; while both
    are down one workspace's container dies (as an OOM kill would); the hub comes back and
    the other workspace is stopped normally. The ledger's total is the engine's
    Σ(stop − start) × CPUs within a minute, and each run is one row."""
    began = datetime.now(UTC) - timedelta(seconds=5)
    hub.ensure_user(USER)
    small = {"resource_model": "test-small", "storage_gb": 1}
    hub.start_workspaces([(USER, "one", small), (USER, "two", small)])
    wait(
        lambda: len([r for r in ledger_rows(hub) if r["stop_us"] is None]) == 2,
        30,
        "both runs are open in the ledger",
    )

    pid = hub.service_pid("lifecycle")
    assert pid, "the lifecycle service is not running"
    os.kill(pid, signal.SIGKILL)
    hub.kill()
    docker("kill", hub.container_name(USER, "two"))  # dies while nobody watches
    hub.start()

    gone = hub.wait_for_stopped(USER, "two", timeout=60)
    assert gone["status"] == "errored"
    hub.wait_for(USER, "one", "running")
    wait(lambda: hub.service_pid("lifecycle"), 30, "the hub started the service again")
    hub.stop_workspace(USER, "one")

    def all_closed():
        rows = ledger_rows(hub)
        return len(rows) >= 2 and all(r["stop_us"] is not None for r in rows) and rows

    rows = wait(all_closed, 60, "every run of the user is closed in the ledger")
    truth = engine_runs(began)
    truth_runs = [(cid, start, stop) for cid, found in truth.items() for start, stop in found]
    assert len(truth_runs) == 2 and all(stop is not None for _, _, stop in truth_runs), truth
    keys = [(r["container_id"], r["start_us"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(truth_runs), rows
    for cid, start, stop in truth_runs:
        [row] = [r for r in rows if r["container_id"] == cid]
        assert abs(row["start_us"] / 1e6 - start) < 1, (row, start)
        assert abs(row["stop_us"] / 1e6 - stop) < 60, (row, stop)
        assert (row["cpus"], row["memory_gb"]) == (CPUS, MEMORY_GB)
    sources = {r["container_name"].rsplit("--", 1)[1]: r["stop_source"] for r in rows}
    assert sources["one"] == "event"  # stopped while the service watched
    assert sources["two"] in ("inspect", "journal")  # died unseen: reconciled on restart

    expected_h = sum(stop - start for _, start, stop in truth_runs) / 3600
    report = usage(hub, user=USER, group_by="workspace", **{"from": began.isoformat()})
    total = report["total"]
    assert abs(total["hours"] - expected_h) < TOLERANCE_H, (report, truth)
    assert abs(total["cpu_hours"] - expected_h * CPUS) < TOLERANCE_H * CPUS
    assert abs(total["memory_gb_hours"] - expected_h * MEMORY_GB) < TOLERANCE_H * MEMORY_GB
    assert {(r["user"], r["workspace"]) for r in report["rows"]} == {(USER, "one"), (USER, "two")}
    by_day = usage(hub, user=USER, group_by="day", **{"from": began.isoformat()})
    assert by_day["total"]["cpu_hours"] == pytest.approx(total["cpu_hours"], abs=1e-3)
    assert total["storage_gb_months"] > 0  # two workspaces hold 1 GB each


def test_people_see_their_own_usage_as_json_csv_and_a_page_with_a_chart(hub):
    hub.ensure_user(USER)
    hub.ensure_user("mallory")
    own = usage(hub, user=USER, group_by="user")
    assert own["unit"] == "CPU-hours"

    session, r = hub.log_in(USER, PASSWORD)
    assert r.status_code == 302
    page = session.get(f"{hub.url}/services/lifecycle/usage", timeout=30)
    assert page.status_code == 200, page.text
    assert 'id="usage-chart"' in page.text and 'class="usage-bar"' in page.text
    csv = session.get(f"{hub.url}/services/lifecycle/api/usage.csv?group_by=day", timeout=30)
    assert csv.status_code == 200
    assert csv.text.splitlines()[0].startswith("day,hours,cpu_hours")
    home = session.get(f"{hub.url}/hub/home", timeout=30)
    assert 'href="/services/usage/"' in home.text  # the hub's Services menu has "usage"
    menu = session.get(f"{hub.url}/services/usage/", timeout=30)
    assert menu.url.endswith("/services/lifecycle/usage"), menu.url  # ... and it leads here
    assert 'id="usage-chart"' in menu.text


def test_another_users_usage_is_refused_and_bad_parameters_name_the_field(hub):
    hub.ensure_user("mallory")
    session, r = hub.log_in("mallory", PASSWORD)
    assert r.status_code == 302
    page = session.get(f"{hub.url}/services/lifecycle/usage", params={"user": USER}, timeout=30)
    assert page.status_code == 403 and "user: only your own usage" in page.text
    base = f"{hub.url}/services/lifecycle/api/usage"
    refused = session.get(base, params={"user": USER}, timeout=30)
    assert refused.status_code == 403 and refused.json()["message"].startswith("user:")
    own = session.get(base, timeout=30)
    assert own.status_code == 200 and own.json()["rows"] == []  # mallory ran nothing
    bad = session.get(base, params={"group_by": "week"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["message"].startswith("group_by:")
    nobody = requests.get(base, timeout=30)
    assert nobody.status_code == 403
