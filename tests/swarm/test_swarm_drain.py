"""A node is drained (an operator retires it) while a workspace on it is stopped: the next
start moves its /data to another node through Swarm, verified before the old copy is
released, and the workspace runs there with its files, owners and modes as they were. A copy
that does not verify keeps the old one, and the user sees why.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from workspace_steps import node_container, start, start_fails, status_of, stop, task_of

USER = "swarmdee"
FILES = (
    "echo moved > /data/note.txt; head -c 3000000 /dev/urandom > /data/blob; chmod 640 /data/blob"
)
LISTING = "cd /data && sha256sum note.txt blob && stat -c '%n %u %g %a' note.txt blob"


@pytest.fixture(scope="module")
def hub(swarm_hub):
    swarm_hub.ensure_user(USER)
    return swarm_hub


def prepare(hub, swarm, name: str) -> tuple[str, str, str]:
    """Start ``name``, write files to /data, stop it: (service, its node, the listing)."""
    start(hub, USER, name, {"resource_model": "test-small"})
    service = hub.container_name(USER, name)
    node, container = node_container(swarm, task_of(swarm, service))
    swarm.on_node(node, "exec", container, "sh", "-c", FILES)
    listing = swarm.on_node(node, "exec", container, "sh", "-c", LISTING)
    stop(hub, USER, name)
    return service, node, listing


def journal_entries(hub, workspace: str, action: str) -> list[dict]:
    """The hub's activity journal entries of ``action`` for ``USER``'s ``workspace``, oldest
    first (read from the journal file: the hub appends to it before a request returns)."""
    path = hub.workdir / "state" / "activity.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        e for e in entries if (e["user"], e["workspace"], e["action"]) == (USER, workspace, action)
    ]


def availability(swarm, node: str) -> tuple[str, str]:
    fmt = '{{.Spec.Availability}} {{index .Spec.Labels "benchhub.evacuating"}}'
    return tuple((swarm.manager_cli("node", "inspect", "-f", fmt, node).split() + [""])[:2])


def test_a_stopped_workspace_on_a_drained_node_starts_on_another_node_with_its_data(hub, swarm):
    service, node, listing = prepare(hub, swarm, "movable")
    swarm.set_availability(node, "drain")
    try:
        start(hub, USER, "movable", {})
        moved_to, container = node_container(swarm, task_of(swarm, service))
        assert moved_to != node and moved_to in swarm.workers
        assert swarm.on_node(moved_to, "exec", container, "sh", "-c", LISTING) == listing
        # the old copy is released only after the verified copy: it is empty now
        assert os.listdir(swarm.volume_dir(node, f"{service}-data")) == []
        # the node is drained again, without the label the move put on it
        assert availability(swarm, node) == ("drain", "")
        assert status_of(hub, USER, "movable")["status"] == "running"
        # the activity journal says where it went and who caused it (the start's request)
        (moved,) = journal_entries(hub, "movable", "moved")
        assert moved["actor"] == "service:tester", moved  # the REST client that started it
        assert moved["fields"]["from_node"] == swarm.node_id(node), moved
        assert moved["fields"]["to_node"] == swarm.node_id(moved_to), moved
        assert f"from drained swarm node {node} to {moved_to}" in moved["description"], moved
        (started,) = journal_entries(hub, "movable", "started")[-1:]
        assert started["fields"]["node"] == swarm.node_id(moved_to), started
        stop(hub, USER, "movable")
    finally:
        swarm.set_availability(node, "active")


def test_a_copy_that_fails_verification_keeps_the_old_copy_and_the_workspace_says_why(hub, swarm):
    service, node, listing = prepare(hub, swarm, "unmovable")
    (target,) = [w for w in swarm.workers if w != node]
    # the target node ends up with more than was sent: a file in the new volume the
    # receiver cannot remove (immutable, set from this host), standing in for a faulty disk
    swarm.on_node(target, "volume", "create", f"{service}-data")
    stale = f"{swarm.volume_dir(target, f'{service}-data')}/stale"
    with open(stale, "w") as f:
        f.write("left on the target\n")
    subprocess.run(["chattr", "+i", stale], check=True)
    swarm.set_availability(node, "drain")
    try:
        shown = start_fails(hub, USER, "unmovable", {})
        assert f"moving /data off drained node {node} failed" in shown["reason"], shown
        assert f"verification against {target} failed: the copy differs" in shown["reason"]
        assert f"the copy on {node} is kept" in shown["reason"]
        kept = os.listdir(swarm.volume_dir(node, f"{service}-data"))
        assert sorted(kept) == ["blob", "note.txt"], kept
        assert availability(swarm, node) == ("drain", "")

        # once the target is sound, the same start moves it
        subprocess.run(["chattr", "-i", stale], check=True)
        start(hub, USER, "unmovable", {})
        moved_to, container = node_container(swarm, task_of(swarm, service))
        assert moved_to == target
        assert swarm.on_node(target, "exec", container, "sh", "-c", LISTING) == listing
        stop(hub, USER, "unmovable")
    finally:
        subprocess.run(["chattr", "-i", stale], check=False)
        swarm.set_availability(node, "active")
