"""Deleting a swarm workspace forever removes its /data on its node: a new workspace of the same
name (same service, same volume name) starts empty, never on the deleted one's files. When the
node is away at the delete, the removal waits for it, and a start of the same name is refused
until then, saying why.

Before BenchSwarmSpawner had ``delete_forever`` the volume stayed on its node and the new
workspace of the same name, landing there, found the old files.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from support.waiting import wait
from workspace_steps import node_container, start, start_fails, status_of, stop, task_of

USER = "swarmeli"
SECRET = "echo from the deleted workspace > /data/secret.txt"


@pytest.fixture(scope="module")
def hub(swarm_hub):
    swarm_hub.ensure_user(USER)
    return swarm_hub


def write_secret_and_stop(hub, swarm, name: str) -> tuple[str, str]:
    """Start ``name``, write a file to its /data, stop it: (its service, its node)."""
    start(hub, USER, name, {"resource_model": "test-small"})
    service = hub.container_name(USER, name)
    node, container = node_container(swarm, task_of(swarm, service))
    swarm.on_node(node, "exec", container, "sh", "-c", SECRET)
    stop(hub, USER, name)
    return service, node


def delete(hub, name: str) -> None:
    """Delete the (stopped) server for good, as the home page's delete button does."""
    r = hub.api("DELETE", f"/users/{USER}/servers/{name}", {"remove": True})
    assert r.status_code == 204, r.text
    assert name not in hub.api("GET", f"/users/{USER}").json()["servers"]


def volumes_on(swarm, node: str, service: str) -> list[str]:
    out = swarm.on_node(node, "volume", "ls", "-q", "--filter", f"name={service}-data")
    return out.split()


def has_service(swarm, name: str) -> bool:
    return name in swarm.manager_cli("service", "ls", "--format", "{{.Name}}").split()


def data_listing(hub, swarm, service: str) -> list[str]:
    node, container = node_container(swarm, task_of(swarm, service))
    return swarm.on_node(node, "exec", container, "ls", "-A", "/data").split()


def test_a_new_workspace_of_a_deleted_ones_name_starts_without_its_files(hub, swarm):
    service, node = write_secret_and_stop(hub, swarm, "reused")
    assert volumes_on(swarm, node, service) == [f"{service}-data"]

    delete(hub, "reused")
    # the volume is gone on its node, and nothing of the removal is left on the swarm
    assert volumes_on(swarm, node, service) == []
    assert not has_service(swarm, f"{service}-delete")

    start(hub, USER, "reused", {"resource_model": "test-small"})
    assert "secret.txt" not in data_listing(hub, swarm, service)
    stop(hub, USER, "reused")
    delete(hub, "reused")


def test_a_workspace_deleted_while_its_node_is_down_keeps_its_name_until_the_data_is_gone(
    hub, swarm
):
    service, node = write_secret_and_stop(hub, swarm, "orphan")
    died = []
    try:
        died = swarm.kill_node(node)
        wait(lambda: swarm.node_state(node), 90, f"{node} is down", until="down".__eq__)

        delete(hub, "orphan")  # the hub deletes the server; the removal waits for the node
        deleter = json.loads(swarm.manager_cli("service", "inspect", f"{service}-delete"))[0]
        placement = deleter["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
        assert placement == [f"node.id=={swarm.node_id(node)}"], placement

        # a new workspace of that name does not start (elsewhere, empty, or on the old files)
        refused = start_fails(hub, USER, "orphan", {"resource_model": "test-small"})
        assert refused["reason"].startswith(
            f"a deleted workspace of this name left its /data on swarm node {node}, which is down"
        ), refused
        assert not has_service(swarm, service)
    finally:
        swarm.revive_node(node)
        swarm.forget_cgroups(died)

    # the node is back: the removal runs there, and the same name starts without the files
    start(hub, USER, "orphan", {"resource_model": "test-small"})
    assert "secret.txt" not in data_listing(hub, swarm, service)
    assert not has_service(swarm, f"{service}-delete")
    assert status_of(hub, USER, "orphan")["status"] == "running"
    stop(hub, USER, "orphan")
    delete(hub, "orphan")
    for worker in swarm.workers:
        assert volumes_on(swarm, worker, service) == [], worker


def deleter_states(swarm, service: str) -> list[str]:
    """The states of every task of the workspace's deleter (one per attempt)."""
    out = swarm.manager_cli(
        "service", "ps", "--format", "{{.CurrentState}}", f"{service}-delete", check=False
    )
    return [line.split()[0].lower() for line in out.splitlines() if line.strip()]


def test_a_removal_that_failed_when_its_node_came_back_is_retried_without_a_new_start(hub, swarm):
    """Before the deleter had a restart policy, its failed task stayed failed: the volume
    (the deleted workspace's files) stayed on the node until someone started the name."""
    service, node = write_secret_and_stop(hub, swarm, "retried")
    secret = f"{swarm.volume_dir(node, f'{service}-data')}/secret.txt"
    swarm.set_availability(node, "pause")  # away: takes no task, the removal waits
    try:
        delete(hub, "retried")
        assert deleter_states(swarm, service) == ["pending"]
        # the node comes back with a problem: its engine cannot remove the volume (a file
        # it may not unlink, set from this host), so the deleter's task fails there
        subprocess.run(["chattr", "+i", secret], check=True)
        swarm.set_availability(node, "active")
        wait(
            lambda: deleter_states(swarm, service),
            60,
            "the deleter fails on its node",
            step=0.2,
            until=lambda states: "failed" in states,
        )
        assert volumes_on(swarm, node, service) == [f"{service}-data"]
    finally:
        subprocess.run(["chattr", "-i", secret], check=False)
        swarm.set_availability(node, "active")
    # the problem is gone: Swarm runs the removal again by itself, no start of the name
    wait(lambda: volumes_on(swarm, node, service), 60, "the volume is removed", until=[].__eq__)
    wait(
        lambda: deleter_states(swarm, service),
        30,
        "the deleter's retry completes",
        until=lambda states: states[:1] == ["complete"],  # newest first
    )

    # the next start of the name finds it done, removes the deleter, and starts empty
    start(hub, USER, "retried", {"resource_model": "test-small"})
    assert "secret.txt" not in data_listing(hub, swarm, service)
    assert not has_service(swarm, f"{service}-delete")
    stop(hub, USER, "retried")
    delete(hub, "retried")
