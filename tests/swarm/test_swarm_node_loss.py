"""A worker dies under a running workspace: the user sees it ``errored`` with "node lost",
nothing starts empty elsewhere, and once the node is back the workspace starts there with
its /data as it was.

The node's death is real: SIGKILL to the node container (its engine and the workspace die
at once, nothing reports the task ended); Swarm's manager notices the node down by its
missed heartbeats. The node comes back as the same swarm node with its volumes.
"""

from __future__ import annotations

import pytest
from support.waiting import wait
from workspace_steps import (
    node_container,
    server_of,
    start,
    start_fails,
    status_of,
    stop,
    task_of,
)

USER = "swarmcyd"


@pytest.fixture(scope="module")
def hub(swarm_hub):
    swarm_hub.ensure_user(USER)
    return swarm_hub


def test_a_workspace_whose_node_dies_shows_node_lost_and_comes_back_with_its_data(hub, swarm):
    start(hub, USER, "fragile", {"resource_model": "test-small"})
    service = hub.container_name(USER, "fragile")
    node, container = node_container(swarm, task_of(swarm, service))
    swarm.on_node(node, "exec", container, "sh", "-c", "echo before the crash > /data/note.txt")
    others = [w for w in swarm.workers if w != node]
    died = []
    try:
        died = swarm.kill_node(node)
        # the API says so as soon as the manager sees the node down ...
        lost = wait(
            lambda: status_of(hub, USER, "fragile"),
            90,
            "the workspace shows errored",
            step=1,
            until=lambda w: w["status"] == "errored",
        )
        assert lost["reason"].startswith(f"node lost: swarm node {node} is down"), lost
        # ... the hub's poll ends the server, and the reason stays
        wait(
            lambda: server_of(hub, USER, "fragile"),
            30,
            "the hub ends the server",
            until=lambda s: s is None,
        )
        assert status_of(hub, USER, "fragile")["reason"] == lost["reason"]

        # a start while the node is away is refused, and nothing runs it on another node
        refused = start_fails(hub, USER, "fragile", {}, within=30)
        assert refused["reason"].startswith(f"node lost: swarm node {node} is down"), refused
        for other in others:
            names = swarm.on_node(other, "ps", "-a", "--format", "{{.Names}}")
            assert service not in names, names
        assert service not in swarm.manager_cli("service", "ls", "--format", "{{.Name}}")
    finally:
        swarm.revive_node(node)
        swarm.forget_cgroups(died)

    start(hub, USER, "fragile", {})
    again, container = node_container(swarm, task_of(swarm, service))
    assert again == node
    note = swarm.on_node(node, "exec", container, "cat", "/data/note.txt").strip()
    assert note == "before the crash"
    assert status_of(hub, USER, "fragile")["status"] == "running"
    stop(hub, USER, "fragile")
