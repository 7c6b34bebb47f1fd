"""Workspace networks made before workspaces were kept apart (issue 11), on a real hub.

Before, BenchHub made ``<prefix>-open`` and ``<prefix>-restricted`` with Docker's
inter-container traffic on. A hub of this version replaces such a network when nothing uses
it, and otherwise keeps it, isolated by its host firewall alone, and says in its log how to
finish (docs/configuration.md).
"""

from __future__ import annotations

import json

import pytest
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess

PREFIX = "benchupg"
SUBNET = "10.244.0.0/24"  # the harness's restricted subnet for this prefix
OLD = f"{PREFIX}-old-workspace"  # stands for a workspace started by the previous version
ICC = "com.docker.network.bridge.enable_icc"


def network(name: str) -> dict:
    return json.loads(docker("network", "inspect", name))[0]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = HubProcess(tmp_path_factory.mktemp(PREFIX), prefix=PREFIX)
    cleanup(PREFIX, h.storage_root)
    # the networks as the previous version made them
    docker("network", "create", "--label", "org.benchhub.network=open", f"{PREFIX}-open")
    docker(
        "network",
        "create",
        "--internal",
        "--subnet",
        SUBNET,
        "--gateway",
        "10.244.0.1",
        "--label",
        "org.benchhub.network=restricted",
        f"{PREFIX}-restricted",
    )
    docker(
        "run",
        "-d",
        "--name",
        OLD,
        "--network",
        f"{PREFIX}-restricted",
        "--ip",
        "10.244.0.250",
        "--entrypoint",
        "sleep",
        "benchhub/jupyterlab:latest",
        "600",
    )
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


def test_an_unused_network_of_the_previous_version_is_made_anew_with_neighbours_apart(hub):
    before = network(f"{PREFIX}-open")["Id"]
    assert ICC not in network(f"{PREFIX}-open")["Options"]
    hub.ensure_user("uma")
    hub.start_workspace("uma", "lab", {"resource_model": "test-small"})
    after = network(f"{PREFIX}-open")
    assert after["Id"] != before and after["Options"][ICC] == "false"
    hub.stop_workspace("uma", "lab")


def test_a_network_in_use_is_kept_isolated_by_the_firewall_and_the_log_says_how_to_finish(hub):
    before = network(f"{PREFIX}-restricted")["Id"]
    hub.ensure_user("uma")
    hub.start_workspace(
        "uma",
        "closed",
        {"resource_model": "test-small", "access_mode": "restricted", "whitelist": "a.test"},
    )
    closed = hub.container_name("uma", "closed")
    assert network(f"{PREFIX}-restricted")["Id"] == before  # kept: the old workspace runs on it
    assert "made before BenchHub kept workspaces apart" in hub.log_path.read_text()
    assert "docs/configuration.md" in hub.log_path.read_text()
    address = exec_in(closed, "hostname -i").stdout.split()[0]
    probe = f"curl -s -m 3 -o /dev/null http://{address}:8888/; echo rc=$?"
    assert exec_in(OLD, probe).stdout.strip() in ("rc=7", "rc=28")  # its neighbour: unreachable
    proxied = exec_in(closed, 'curl -s -m 10 -o /dev/null -w "%{http_code}" http://b.test/')
    assert proxied.stdout == "403"  # the egress proxy still answers (and refuses b.test)
    hub.stop_workspace("uma", "closed")
