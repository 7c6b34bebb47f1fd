"""The usage ledger's recorder against the real Docker engine, without a hub: containers
labelled as this hub's workspaces and cluster members, started, restarted, stopped and removed
while a recorder watches or while none runs (a new recorder is the service restarted).

No hub runs here: the recorder's hub client points at a closed port, so projects read as ""
and storage is left alone (the hub-backed paths are in test_usage_ledger.py).
"""

from __future__ import annotations

import asyncio

import pytest
from support.docker_cli import docker
from support.waiting import wait

from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient
from benchhub.labels import RESOURCE_MODEL, USER, WORKSPACE, cluster_label
from hub_services.lifecycle.activity_log import ActivityLog
from hub_services.lifecycle.ledger import Ledger
from hub_services.lifecycle.recorder import UsageRecorder
from hub_services.lifecycle.run_evidence import docker_time_us

PREFIX = "benchrec"
IMAGE = "benchhub/jupyterlab:latest"


def failure_sections() -> dict[str, str]:
    return {"containers": docker("ps", "-a", "--filter", f"name=^{PREFIX}-", check=False)}


@pytest.fixture
def names():
    made: list[str] = []
    yield made
    for name in made:
        docker("rm", "-f", name, check=False)


def run_container(names: list[str], name: str, labels: dict[str, str], cpus="0.5") -> str:
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    docker(
        "run", "-d", "--name", name, "--cpus", cpus, "--memory", "256m", *label_args,
        "--entrypoint", "sleep", IMAGE, "infinity",
    )  # fmt: skip
    names.append(name)
    return docker("inspect", "-f", "{{.Id}}", name).strip()


def state(name: str) -> dict:
    import json

    return json.loads(docker("inspect", "-f", "{{json .State}}", name))


@pytest.fixture
def stores(tmp_path):
    url = f"sqlite:///{tmp_path / 'lifecycle.sqlite'}"
    ledger, log = Ledger(url), ActivityLog(url)
    yield ledger, log
    ledger.close()
    log.close()


def recorder(stores) -> UsageRecorder:
    ledger, log = stores
    return UsageRecorder(
        ledger=ledger,
        activity_log=log,
        engine=DockerEngine(threads=2, timeout=30),
        hub=HubClient("http://127.0.0.1:9/hub/api", "no-token", timeout=2),
        prefix=PREFIX,
    )


WORKSPACE_LABELS = {USER: "uma", WORKSPACE: "ws1", RESOURCE_MODEL: "test-small"}


async def test_a_workspace_restarted_while_no_recorder_ran_has_two_runs_with_the_engines_times(
    stores, names
):
    ledger, _ = stores
    cid = run_container(names, f"{PREFIX}-uma--ws1", WORKSPACE_LABELS)
    first = state(names[0])
    await recorder(stores).reconcile()
    [row] = ledger.run_rows()
    assert row["start_us"] == docker_time_us(first["StartedAt"])
    assert (row["kind"], row["resource_model"], row["cpus"]) == ("workspace", "test-small", 0.5)

    docker("restart", "-t", "0", names[0])  # nobody watching: the service is down
    second = state(names[0])
    await recorder(stores).reconcile()  # the service comes back
    rows = sorted(ledger.run_rows(), key=lambda r: r["start_us"])
    assert [r["container_id"] for r in rows] == [cid, cid]
    assert rows[0]["stop_us"] == docker_time_us(second["FinishedAt"])
    assert rows[0]["stop_source"] == "restarted"
    assert rows[1]["start_us"] == docker_time_us(second["StartedAt"])
    assert rows[1]["stop_us"] is None
    await recorder(stores).reconcile()  # and again: nothing new
    assert len(ledger.run_rows()) == 2


async def test_a_cluster_member_removed_while_no_recorder_ran_ends_when_last_seen(stores, names):
    ledger, _ = stores
    labels = {
        cluster_label("prefix"): PREFIX,
        cluster_label("id"): "k1",
        cluster_label("user"): "uma",
        cluster_label("workspace"): "ws1",
        cluster_label("role"): "member",
    }
    run_container(names, f"{PREFIX}-cluster-k1-m1", labels, cpus="1")
    await recorder(stores).reconcile()
    [row] = ledger.run_rows()
    assert (row["kind"], row["user"], row["workspace"], row["cpus"]) == (
        "cluster-member", "uma", "ws1", 1.0,
    )  # fmt: skip
    seen = row["seen_us"]
    docker("rm", "-f", names[0])
    await recorder(stores).reconcile()
    [row] = ledger.run_rows()
    assert (row["stop_us"], row["stop_source"]) == (seen, "last-seen")


async def test_a_stop_seen_as_it_happens_ends_the_run_at_the_engines_time(stores, names):
    ledger, _ = stores
    watcher = recorder(stores)
    watcher.watch()
    follower = asyncio.ensure_future(watcher.follow_events())
    try:
        await asyncio.sleep(0.5)  # the event stream is connected (events before it are missed)
        cid = run_container(names, f"{PREFIX}-uma--ws2", {**WORKSPACE_LABELS, WORKSPACE: "ws2"})
        await asyncio.to_thread(
            wait, lambda: ledger.open_runs(), 20, "the start event opened the run"
        )
        docker("stop", "-t", "0", names[0])
        finished = docker_time_us(state(names[0])["FinishedAt"])

        def closed():
            return [r for r in ledger.run_rows() if r["stop_us"] is not None]

        [row] = await asyncio.to_thread(wait, closed, 20, "the die event closed the run")
        assert row["container_id"] == cid and row["stop_source"] == "event"
        assert abs(row["stop_us"] - finished) < 1_000_000  # within a second of FinishedAt
    finally:
        follower.cancel()
