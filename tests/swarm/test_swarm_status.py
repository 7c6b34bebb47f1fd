"""The hub's workspaces API on a swarm: each workspace with its real status (running,
stopped, errored with Swarm's reason), as on a single host (bench_spawner/hub_api.py).

Before BenchSwarmSpawner had ``workspace_status``, ``GET /hub/api/bench/workspaces/<user>``
answered 500 (AttributeError) for any user with a swarm workspace.
"""

from __future__ import annotations

import pytest
from support.waiting import wait
from workspace_steps import server_of, start, status_of, stop

USER = "swarmbea"


@pytest.fixture(scope="module")
def hub(swarm_hub):
    swarm_hub.ensure_user(USER)
    return swarm_hub


def test_the_workspaces_api_shows_a_swarm_workspace_running_and_then_stopped(hub):
    start(hub, USER, "listed", {"resource_model": "test-small"})
    running = status_of(hub, USER, "listed")
    assert running["status"] == "running" and running["reason"] == "", running
    assert running["since"] and running["url"] == f"/user/{USER}/listed/"
    assert running["user_options"]["resource_model"] == "test-small"

    stop(hub, USER, "listed")
    stopped = status_of(hub, USER, "listed")
    assert stopped["status"] == "stopped" and stopped["url"] is None, stopped
    assert stopped["since"] >= running["since"]


def test_a_start_swarm_rejects_shows_errored_with_swarms_reason_in_the_workspaces_api(hub):
    r = hub.api("POST", f"/users/{USER}/servers/noimage", {"user_options": {"image": "missing"}})
    assert r.status_code in (202, 500), r.text
    wait(lambda: server_of(hub, USER, "noimage"), 60, "the start fails", until=lambda s: s is None)
    errored = status_of(hub, USER, "noimage")
    assert errored["status"] == "errored", errored
    assert "Swarm rejected the workspace" in errored["reason"], errored
    assert "benchhub/not-built:0" in errored["reason"], errored
