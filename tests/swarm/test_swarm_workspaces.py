"""Workspaces on the test swarm: placed on a worker by resource model, limits enforced on
that node, a full swarm refused within seconds with Swarm's reason, stop and start keep /data.

Everything is real: three Docker engines (DinD nodes), a real hub with BenchSwarmSpawner
talking to the manager's engine API, the workspace image on the workers.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import workspace_steps
from support.docker_cli import docker
from support.hub_harness import TOKEN, UNRUNNABLE_MODEL
from support.waiting import wait
from workspace_steps import node_container, task_of

USER = "swarmada"
GIB = 1024**3


def start(hub, name: str, options: dict) -> dict:
    return workspace_steps.start(hub, USER, name, options)


def stop(hub, name: str) -> None:
    workspace_steps.stop(hub, USER, name)


def server_of(hub, user: str, name: str) -> dict | None:
    return workspace_steps.server_of(hub, user, name)


@pytest.fixture(scope="module")
def hub(swarm_hub):
    swarm_hub.ensure_user(USER)
    return swarm_hub


def test_a_workspace_runs_on_a_worker_with_its_cpu_and_memory_limits_enforced_there(hub, swarm):
    start(hub, "placed", {"resource_model": "test-small"})
    service = hub.container_name(USER, "placed")
    task = task_of(swarm, service)
    node, container = node_container(swarm, task)
    assert node in swarm.workers

    # the server answers through the hub's proxy (proxy -> node address -> container)
    r = requests.get(
        f"{hub.url}/user/{USER}/placed/api/status",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    limits = json.loads(swarm.on_node(node, "inspect", container))[0]["HostConfig"]
    assert limits["NanoCpus"] == 500_000_000 and limits["Memory"] == GIB // 2
    # and the node's kernel enforces them: the container's own cgroup (cgroup v1)
    cgroup = docker(
        "exec", node, "cat", f"/sys/fs/cgroup/memory/docker/{container}/memory.limit_in_bytes"
    )
    assert int(cgroup) == GIB // 2
    quota = docker("exec", node, "cat", f"/sys/fs/cgroup/cpu/docker/{container}/cpu.cfs_quota_us")
    period = docker("exec", node, "cat", f"/sys/fs/cgroup/cpu/docker/{container}/cpu.cfs_period_us")
    assert int(quota) / int(period) == 0.5
    stop(hub, "placed")


def test_stop_and_start_keep_data_on_the_node_that_holds_it(hub, swarm):
    start(hub, "keeps", {"resource_model": "test-small"})
    service = hub.container_name(USER, "keeps")
    node, container = node_container(swarm, task_of(swarm, service))
    swarm.on_node(node, "exec", container, "sh", "-c", "echo kept > /data/note.txt")
    stop(hub, "keeps")
    assert swarm.manager_cli("service", "ls", "-q", "--filter", f"name={service}").strip() == ""

    start(hub, "keeps", {"resource_model": "test-small"})
    again, container = node_container(swarm, task_of(swarm, service))
    assert again == node
    assert swarm.on_node(node, "exec", container, "cat", "/data/note.txt").strip() == "kept"
    stop(hub, "keeps")


def test_a_model_no_worker_can_hold_is_refused_at_once_and_nothing_is_created(hub, swarm):
    r = hub.api(
        "POST",
        f"/users/{USER}/servers/huge",
        {"user_options": {"resource_model": UNRUNNABLE_MODEL}},
    )
    assert r.status_code == 400, r.text
    assert "needs 4096 CPUs; the largest worker node has" in r.json()["message"]
    assert hub.container_name(USER, "huge") not in swarm.manager_cli("service", "ls")


def test_restricted_access_is_refused_on_a_swarm_naming_the_field(hub):
    r = hub.api(
        "POST",
        f"/users/{USER}/servers/closed",
        {"user_options": {"access_mode": "restricted", "whitelist": ["example.org"]}},
    )
    assert r.status_code == 400, r.text
    assert "access_mode" in r.json()["message"] and "allowed: open" in r.json()["message"]


def test_a_full_swarm_fails_the_start_within_seconds_with_swarms_reason(hub, swarm):
    # fill every worker's memory with reservations of a plain service, leaving less than
    # the 0.5 GB of test-small (whatever the machine's memory)
    memory = min(
        int(swarm.manager_cli("node", "inspect", "-f", "{{.Description.Resources.MemoryBytes}}", w))
        for w in swarm.workers
    )
    swarm.manager_cli(
        "service",
        "create",
        "--detach",
        "--name",
        "benchswarm-filler",
        "--mode",
        "global",
        "--constraint",
        "node.role==worker",
        "--reserve-memory",
        str(memory - GIB // 4),
        "--restart-condition",
        "none",
        "benchhub/jupyterlab:latest",
        "sleep",
        "infinity",
    )
    try:
        # running, not just meant to run: a task holds its reservation once it is placed
        wait(
            lambda: swarm.manager_cli(
                "service", "ps", "--format", "{{.CurrentState}}", "benchswarm-filler"
            ).splitlines(),
            60,
            "the filler runs on both workers",
            until=lambda states: sum(s.startswith("Running") for s in states) == 2,
        )
        began = time.monotonic()
        r = hub.api(
            "POST",
            f"/users/{USER}/servers/full",
            {"user_options": {"resource_model": "test-small"}},
        )
        elapsed = time.monotonic() - began
        if r.status_code == 202:  # the hub answered before the spawn ended: wait for it
            wait(
                lambda: server_of(hub, USER, "full"),
                30,
                "the start fails",
                until=lambda s: s is None,
            )
            elapsed = time.monotonic() - began
        else:
            assert r.status_code == 503, r.text
            assert "insufficient resources" in r.json()["message"], r.text
        assert elapsed < 15, elapsed  # dockerspawner's SwarmSpawner waits its start_timeout
        assert hub.container_name(USER, "full") not in swarm.manager_cli("service", "ls")
    finally:
        swarm.manager_cli("service", "rm", "benchswarm-filler", check=False)


def test_a_workspace_cannot_reach_the_managers_engine_api_that_the_hub_uses(hub, swarm):
    start(hub, "probe", {"resource_model": "test-small"})
    node, container = node_container(swarm, task_of(swarm, hub.container_name(USER, "probe")))
    manager_api = swarm.docker_host.replace("tcp://", "http://") + "/version"
    script = (
        "import urllib.request\n"
        "try:\n"
        f"    urllib.request.urlopen({manager_api!r}, timeout=3); print('reached')\n"
        "except Exception as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    out = swarm.on_node(node, "exec", container, "/opt/venv/bin/python", "-c", script)
    assert out.startswith("refused"), out
    assert swarm.manager_cli("version", "-f", "{{.Server.Version}}").strip()  # the hub's host can
    stop(hub, "probe")
