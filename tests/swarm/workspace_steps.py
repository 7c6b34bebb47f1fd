"""Steps the swarm tests take on workspaces through the hub's REST API, and what they read
back from the swarm's manager (the tests' shared vocabulary, not fixtures)."""

from __future__ import annotations

import json

from support.waiting import wait


def server_of(hub, user: str, name: str) -> dict | None:
    """JupyterHub's model of ``user``'s server ``name`` (None when it has none)."""
    r = hub.api("GET", f"/users/{user}")
    assert r.ok, r.text
    return r.json()["servers"].get(name)


def start(hub, user: str, name: str, options: dict) -> dict:
    """Start ``user``'s workspace ``name`` and wait until the hub says it is ready."""
    r = hub.api("POST", f"/users/{user}/servers/{name}", {"user_options": options})
    assert r.status_code in (201, 202), r.text
    return wait(
        lambda: server_of(hub, user, name),
        120,
        f"{name} is ready",
        step=0.2,
        until=lambda s: s and s["ready"],
    )


def stop(hub, user: str, name: str) -> None:
    r = hub.api("DELETE", f"/users/{user}/servers/{name}")
    assert r.status_code in (202, 204), r.text
    wait(lambda: server_of(hub, user, name), 60, f"{name} stops", until=lambda s: s is None)


def start_fails(hub, user: str, name: str, options: dict, within: float = 120) -> dict:
    """Ask to start ``user``'s workspace ``name`` and wait until the hub gave up on it: its
    entry in the workspaces API, which shows it ``errored`` (the caller checks the reason)."""
    r = hub.api("POST", f"/users/{user}/servers/{name}", {"user_options": options})
    wait(
        lambda: server_of(hub, user, name),
        within,
        f"the start of {name} fails",
        until=lambda s: s is None,
    )
    shown = status_of(hub, user, name)
    assert shown["status"] == "errored", (r.status_code, r.text, shown)
    return shown


def status_of(hub, user: str, name: str) -> dict:
    """The workspace's entry in ``GET /hub/api/bench/workspaces/<user>``."""
    r = hub.api("GET", f"/bench/workspaces/{user}")
    assert r.status_code == 200, r.text
    found = [w for w in r.json()["workspaces"] if w["name"] == name]
    assert found, r.text
    return found[0]


def task_of(swarm, service: str) -> dict:
    """The newest task of a service, as the manager reports it."""
    ids = swarm.manager_cli("service", "ps", "-q", "--no-trunc", service).split()
    return max(json.loads(swarm.manager_cli("inspect", *ids)), key=lambda t: t["Version"]["Index"])


def node_container(swarm, task: dict) -> tuple[str, str]:
    """(node container name, workspace container id) of a running task."""
    node = swarm.node_hostname(task["NodeID"])
    return node, task["Status"]["ContainerStatus"]["ContainerID"]
