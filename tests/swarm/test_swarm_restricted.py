"""Restricted access on a swarm: the probe of the network it would stand on (docs/swarm.md,
"Restricted access: what the probe found").

Restricted access on a swarm is built on these facts (docs/swarm.md, "Restricted access";
``test_swarm_restricted_workspaces.py`` runs it through a hub). These tests keep them, on the
real test swarm, so that a change of Docker shows here:

* an ``--internal --attachable`` overlay carries traffic between nodes without IPVS (task
  addresses, ``endpoint_mode: dnsrr``), with the sender's own address (no NAT): squid's
  source-address lists would keep working; but every member reaches every other one (an
  overlay has no ``enable_icc=false``), so workspaces sharing one are not kept apart;
* a task only on it has no way out at all: not to an outside address, not to its node's or
  another node's addresses, the manager's engine API, the hub's host, the node's bridges;
  names outside resolve only while the task's DNS server is left at Docker's default;
* and no way in: its host-mode published port is silently not made, so the hub could not
  reach its server either, which is what the single-host design gets from the internal
  bridge's gateway being the hub's host. The egress proxy on the manager carries that path.

Everything is real: the three DinD engines, services made through the manager's engine API,
a server in a network namespace this host routes to standing in for the Internet, and one on
this host's own addresses.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.outside_host import outside_host
from support.waiting import wait

IMAGE = "benchhub/jupyterlab:latest"  # on the workers (swarm-testbed.sh loads it)
NETWORK = "benchswarm-probe-restricted"
SUBNET, TASK_RANGE = "10.251.0.0/24", "10.251.0.128/25"
NOWHERE = "10.251.0.2"  # on the overlay, never given to a task, nothing listens: the DNS trap
OUTSIDE_NS, OUTSIDE_VETH = "benchswarm-outside", "bsw-out"  # the veth pair: bsw-out0/1
OUTSIDE_ADDRESS = "203.0.113.2"  # TEST-NET-3: never a real host
SERVE = "import http.server as h; h.ThreadingHTTPServer(('0.0.0.0', 80), h.SimpleHTTPRequestHandler).serve_forever()"  # noqa: E501
UDP_TO_OUTSIDE_DNS = (
    "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))"
)
SERVICES = {  # name: (node, args of `docker service create` before the image, command)
    "benchswarm-probe-server": (
        "benchswarm-worker-2",
        ["--network", NETWORK, "--endpoint-mode", "dnsrr"],
        ["python3", "-m", "http.server", "8888"],
    ),
    "benchswarm-probe-restricted": (
        "benchswarm-worker-1",
        ["--network", NETWORK, "--endpoint-mode", "dnsrr", "--dns", NOWHERE]
        + ["--publish", "mode=host,target=8888"],
        ["python3", "-m", "http.server", "8888"],
    ),
    "benchswarm-probe-open": ("benchswarm-worker-1", [], ["sleep", "infinity"]),
}


CONNECT = """
import json, socket, sys
found = {}
for target in json.loads(sys.argv[1]):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 3).close()
        found[target] = "connected"
    except OSError as e:
        found[target] = type(e).__name__ + ": " + str(e)
print(json.dumps(found))
"""


class Task:
    """A running probe task: where it runs and how to run a command in it."""

    def __init__(self, swarm, service: str):
        ids = swarm.manager_cli("service", "ps", "-q", "--no-trunc", service).split()
        task = json.loads(swarm.manager_cli("inspect", *ids))[0]
        self.swarm, self.node = swarm, swarm.node_hostname(task["NodeID"])
        self.container = task["Status"]["ContainerStatus"]["ContainerID"]
        attachments = task.get("NetworksAttachments") or []
        self.address = attachments[0]["Addresses"][0].split("/")[0] if attachments else ""

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", self.node, "docker", "exec", self.container, *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def connections(self, targets: list[str]) -> dict[str, str]:
        """``{"host:port": "connected" or why not}``: a TCP connection to each, from the task."""
        out = self.run("python3", "-c", CONNECT, json.dumps(targets))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def inspect(self) -> dict:
        return json.loads(self.swarm.on_node(self.node, "inspect", self.container))[0]

    def logs(self) -> str:
        out = subprocess.run(
            ["docker", "exec", self.node, "docker", "logs", self.container],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout + out.stderr


def _running(swarm, service: str) -> bool:
    states = swarm.manager_cli(
        "service", "ps", "--format", "{{.CurrentState}}", service, check=False
    )
    return states.startswith("Running")


def _network_removed(swarm) -> bool:
    swarm.manager_cli("network", "rm", NETWORK, check=False)
    return json.loads(swarm.manager_cli("network", "inspect", NETWORK, check=False) or "[]") == []


@pytest.fixture(scope="module")
def probe(swarm):
    swarm.manager_cli(
        "network", "create", "--driver", "overlay", "--internal", "--attachable",
        "--subnet", SUBNET, "--ip-range", TASK_RANGE, NETWORK,
    )  # fmt: skip
    try:
        for name, (node, args, command) in SERVICES.items():
            swarm.manager_cli(
                "service", "create", "--detach", "--quiet", "--name", name,
                "--restart-condition", "none", "--constraint", f"node.hostname=={node}",
                *args, "--entrypoint", command[0], IMAGE, *command[1:],
            )  # fmt: skip
        for name in SERVICES:
            wait(lambda n=name: _running(swarm, n), 60, f"{name} runs")
        yield {name.removeprefix("benchswarm-probe-"): Task(swarm, name) for name in SERVICES}
    finally:
        swarm.manager_cli("service", "rm", *SERVICES, check=False)
        # the overlay can go once the nodes let go of the removed tasks' endpoints
        wait(lambda: _network_removed(swarm), 30, f"{NETWORK} removed")


@pytest.fixture(scope="module")
def outside():
    """A server at OUTSIDE_ADDRESS, in a network namespace this host routes to (the nodes'
    default route is this host): an outside address reached by routing and NAT."""
    ready = f"http://{OUTSIDE_ADDRESS}/"
    with outside_host(
        OUTSIDE_NS, OUTSIDE_VETH, [OUTSIDE_ADDRESS], [sys.executable, "-c", SERVE], ready
    ):
        yield OUTSIDE_ADDRESS


@pytest.fixture
def host_server():
    """A server on every address of this host (the hub's host), on a free port."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def node_address(swarm, hostname: str) -> str:
    return swarm.manager_cli("node", "inspect", "-f", "{{.Status.Addr}}", hostname).strip()


def test_a_task_on_the_internal_overlay_reaches_another_node_by_address_with_its_own_address(
    probe,
):
    restricted, server = probe["restricted"], probe["server"]
    assert restricted.node != server.node
    target = f"{server.address}:8888"
    # across nodes, no IPVS. (Also a finding: an overlay has no "enable_icc=false", so
    # workspaces sharing one would reach each other, which the single-host bridge forbids.)
    assert restricted.connections([target]) == {target: "connected"}
    # the server saw the restricted task's own overlay address: no NAT on the way, so a
    # proxy's per-address lists would tell workspaces apart
    fetched = restricted.run("curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{target}/x")
    assert fetched.returncode == 0
    wait(server.logs, 10, "the server logged the request", until=lambda log: "/x HTTP" in log)
    assert f"{restricted.address} - - " in server.logs()


def test_a_task_only_on_the_internal_overlay_has_no_way_out(swarm, probe, outside, host_server):
    restricted, opened = probe["restricted"], probe["open"]
    manager = node_address(swarm, swarm.manager)
    reachable = [
        f"{outside}:80",  # an outside address, routed through this host
        f"{swarm.gateway}:{host_server}",  # the hub's host, a port open on all its addresses
        f"{node_address(swarm, restricted.node)}:7946",  # its own node (swarm gossip port)
        f"{node_address(swarm, probe['server'].node)}:7946",  # another node
        f"{manager}:2377",  # the manager's swarm port
        "172.17.0.1:7946",  # the node's docker0
        "172.18.0.1:7946",  # the node's docker_gwbridge
    ]
    # each of them answers a task on the node's ordinary bridge ...
    assert set(opened.connections(reachable).values()) == {"connected"}
    # ... and none the task on the internal overlay: no route off the overlay at all (not
    # even to the manager's engine API), and no host behind the overlay's "gateway" address
    refused = restricted.connections([*reachable, f"{manager}:2375"])
    assert all("Network is unreachable" in why for why in refused.values()), refused
    assert restricted.connections(["10.251.0.1:80"])["10.251.0.1:80"] != "connected"
    udp = restricted.run("python3", "-c", UDP_TO_OUTSIDE_DNS)
    assert udp.returncode != 0 and "unreachable" in udp.stderr
    # IPv6: unlike the single-host restricted bridge, the task has a link-local address on
    # the overlay (fe80::, reaching only the overlay's own members), and no route beyond it
    ipv6 = restricted.run("cat", "/proc/net/if_inet6").stdout.splitlines()
    assert all(line.startswith(("fe80", "0000000000000000000000000000000")) for line in ipv6)
    routes = restricted.run("cat", "/proc/net/ipv6_route").stdout.splitlines()
    assert not [r for r in routes if r.startswith("0" * 32 + " 00") and not r.endswith(" lo")]


def outside_name() -> str | None:
    """A name only an outside DNS server knows and this host resolves: a host name of this
    machine's package mirror, from its apt sources (read here, so that no such name is written
    into the project), or None."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        lines = path.read_text().splitlines() if path.is_file() else []
        for line in lines:
            if line.lstrip().startswith("#"):
                continue
            for name in re.findall(r"\bhttps?://([A-Za-z0-9.-]+\.[A-Za-z]+)", line):
                if subprocess.run(["getent", "hosts", name], capture_output=True).returncode == 0:
                    return name
    return None


def test_outside_names_resolve_on_the_overlay_unless_the_task_dns_points_nowhere(probe):
    name = outside_name()
    if not name:
        pytest.skip("this host resolves none of its package mirrors' names itself")
    # Docker's embedded resolver forwards outside names from an internal overlay too: with
    # the default DNS a task can send data out in query names
    assert probe["server"].run("getent", "hosts", name).returncode == 0
    # with its DNS server an overlay address where nothing listens (as the single-host
    # spawner sets the proxy's), the name does not resolve; service names still do
    # (one try of a second: a lookup nobody answers fails only after 10 s otherwise)
    once = ("env", "RES_OPTIONS=timeout:1 attempts:1")
    assert probe["restricted"].run(*once, "getent", "hosts", name).returncode != 0
    assert probe["restricted"].run("getent", "hosts", "benchswarm-probe-server").returncode == 0


def test_the_hub_could_not_reach_a_task_only_on_the_internal_overlay(swarm, probe):
    restricted = probe["restricted"]
    spec = json.loads(swarm.manager_cli("service", "inspect", "benchswarm-probe-restricted"))[0]
    asked = spec["Spec"]["EndpointSpec"]["Ports"]
    assert asked == [{"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}]
    # ... but the node published nothing: no bridge endpoint to map a port to, and no error
    assert not restricted.inspect()["NetworkSettings"]["Ports"]
    assert "docker_gwbridge" not in restricted.inspect()["NetworkSettings"]["Networks"]
