"""Restricted workspaces on the test swarm, started through a real hub (docs/swarm.md,
"Restricted access").

The hub's egress service is the swarm's gateway: its squid runs on the manager's engine
(the hub "runs on the manager": its egress state is in the directory the manager sees at
the same path), each restricted workspace runs on a worker on its own internal overlay, the
proxy joined to it. The use and the abuse side by side:

* the workspace reaches its whitelisted host through the proxy, and nothing else: not a
  name off its list, not an outside address, the nodes, the manager's API and swarm ports,
  the hub's host (but the hub API, through the proxy's relay), nor outside DNS;
* the hub reaches the workspace (the spawn completes, the server answers through the hub's
  proxy, a large response too), and the gateway's workspaces port reaches nothing but a
  running workspace's own prefix;
* two restricted workspaces cannot reach each other, directly or through the proxy;
* a stop takes the record, the route and the overlay away.

The whitelisted host is a server in a network namespace this host routes to (an outside
address); the proxy knows its names through the egress service's ``hosts`` setting.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import workspace_steps
from conftest import SWARM_PREFIX
from support.hub_harness import TOKEN, HubProcess
from support.kernels import run_cell
from support.outside_host import outside_host
from support.waiting import wait
from test_swarm_restricted import SERVE, Task, node_address, outside_name

from benchhub.egress_state import EgressState

PREFIX = f"{SWARM_PREFIX}-r"  # this module's hub: its services, proxy and overlays
WORKSPACES_PORT = 10180
OUTSIDE_NS, OUTSIDE_VETH = "benchswarm-outside", "bsw-out"
OUTSIDE_ADDRESS = "203.0.113.2"
AUTH = {"Authorization": f"token {TOKEN}"}
# what a workspace's curl sees: the status code and, for a proxy refusal, squid's error name
CURL = ["curl", "-s", "-m", "10", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"]


def hub_config(swarm) -> str:
    return f"""
import os
from bench_spawner.swarm.restricted import use_egress_gateway
from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.unsupported import drop_unsupported_services
c.JupyterHub.spawner_class = BenchSwarmSpawner
drop_unsupported_services(c, keep=["egress"])
c.BenchSwarmSpawner.client_kwargs = {{"base_url": {swarm.docker_host!r}}}
hub_port = int(os.environ["BENCHHUB_HUB_PORT"])
c.BenchSwarmSpawner.hub_connect_url = "http://{swarm.gateway}:" + str(hub_port)
use_egress_gateway(c, {swarm.docker_host!r}, {swarm.gateway!r}, hub_port, {WORKSPACES_PORT})
egress = next(s for s in c.JupyterHub.services if s["name"] == "egress")
for name in ("allowed.test", "other.test"):
    egress["command"].append(f"--hosts={{name}}={OUTSIDE_ADDRESS}")
c.BenchSwarmSpawner.restricted_subnet_pool = "10.214.0.0/24"
BenchSwarmSpawner.check_config(c)
"""


def _leftovers_removed(swarm) -> None:
    for name in swarm.manager_cli("service", "ls", "-q", "--filter", f"name={PREFIX}-").split():
        swarm.manager_cli("service", "rm", name, check=False)
    swarm.manager_cli("rm", "-f", f"{PREFIX}-egress", check=False)
    overlays = swarm.manager_cli(
        "network", "ls", "-q", "--filter", "label=org.benchhub.network=swarm-restricted"
    ).split()
    for name in [*overlays, f"{PREFIX}-egress-out"]:
        swarm.manager_cli("network", "rm", name, check=False)


def proxy_logs(swarm, egress_dir: Path) -> str:
    """The proxy's own messages and the end of its access log (printed at the end: what a
    failure needs)."""
    own = subprocess.run(
        ["docker", "-H", swarm.docker_host, "logs", "--tail", "30", f"{PREFIX}-egress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    own = own.stdout + own.stderr
    log = egress_dir / "log" / "access.log"
    access = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
    return f"--- {PREFIX}-egress:\n{own}\n--- access.log:\n" + "\n".join(access)


@pytest.fixture(scope="module")
def outside():
    ready = f"http://{OUTSIDE_ADDRESS}/"
    with outside_host(
        OUTSIDE_NS, OUTSIDE_VETH, [OUTSIDE_ADDRESS], [sys.executable, "-c", SERVE], ready
    ):
        yield OUTSIDE_ADDRESS


@pytest.fixture(scope="module")
def hub(swarm, tmp_path_factory):
    egress_dir = Path(swarm.shared_dir) / f"egress-{os.getpid()}"
    hub = HubProcess(
        tmp_path_factory.mktemp("restrictedhub"),
        prefix=PREFIX,
        extra_config=hub_config(swarm),
        env_overrides={"BENCHHUB_EGRESS_DIR": str(egress_dir)},
    )
    hub.start()
    try:
        yield hub
    finally:
        print(proxy_logs(swarm, egress_dir))
        hub.stop()
        _leftovers_removed(swarm)
        shutil.rmtree(egress_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def workspaces(hub, swarm, outside):
    """rita's workspace may reach allowed.test; sam's other.test. Both on workers."""
    seconds = {}
    for user, name, whitelist in (("rita", "closed", "allowed.test"), ("sam", "other", "")):
        hub.ensure_user(user)
        started = time.monotonic()
        options = {"access_mode": "restricted", "whitelist": whitelist}
        workspace_steps.start(hub, user, name, {**options, "resource_model": "test-small"})
        seconds[user] = time.monotonic() - started
    print(f"restricted starts (request -> ready): {seconds}")
    names = {"rita": "closed", "sam": "other"}
    yield {user: Task(swarm, hub.container_name(user, name)) for user, name in names.items()}


def fetch(task: Task, url: str) -> str:
    """``<status>`` of a GET of ``url`` from the workspace (its own proxy settings), with
    `` squid`` appended when the proxy itself refused it."""
    out = task.run(*CURL, url)
    code = out.stdout.rpartition("\n")[2]
    return code + (" squid" if "X-Squid-Error: ERR_ACCESS_DENIED" in out.stdout else "")


def proxy_of(task: Task) -> str:
    url = task.run("printenv", "JUPYTERHUB_API_URL").stdout.strip()
    return url.split("//", 1)[1].split(":", 1)[0]


def test_a_restricted_workspace_reaches_its_whitelist_through_the_proxy_and_nothing_else(
    swarm, hub, workspaces, outside
):
    rita = workspaces["rita"]
    assert rita.node in swarm.workers
    assert fetch(rita, "http://allowed.test/") == "200"  # its whitelist, through the proxy
    assert fetch(rita, "http://other.test/") == "403 squid"  # not on its list
    assert fetch(rita, f"http://{outside}/") == "403 squid"  # an address is never on a list
    assert fetch(rita, f"http://{swarm.gateway}:{hub.hub_port}/hub/api/") == "403 squid"
    manager = node_address(swarm, swarm.manager)
    around = [
        f"{outside}:80",
        f"{swarm.gateway}:{hub.hub_port}",  # the hub API, directly
        f"{swarm.gateway}:{hub.port}",  # the hub's public port
        f"{node_address(swarm, rita.node)}:7946",
        f"{node_address(swarm, workspaces['sam'].node)}:7946",
        f"{manager}:2375",  # the manager's engine API
        f"{manager}:2377",
        f"{manager}:{WORKSPACES_PORT}",  # the gateway's published port, from outside it
    ]
    refused = rita.connections(around)
    assert all("unreachable" in why for why in refused.values()), refused
    name = outside_name()
    if name:
        # no outside DNS (one try of a second: nothing answers at the DNS server it has)
        lookup = rita.run("env", "RES_OPTIONS=timeout:1 attempts:1", "getent", "hosts", name)
        assert lookup.returncode != 0
    # the one way to the hub: the proxy's relay to its API
    assert fetch(rita, f"http://{proxy_of(rita)}:8081/hub/api/") == "200"


def test_the_hub_reaches_a_restricted_workspace_and_nothing_else_through_the_gateway(
    swarm, hub, workspaces
):
    r = requests.get(f"{hub.url}/user/rita/closed/api/status", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    # a large answer (JupyterLab's settings, some 100 kB) passes the overlay's MTU
    r = requests.get(f"{hub.url}/user/rita/closed/lab/api/settings", headers=AUTH, timeout=30)
    assert r.status_code == 200 and len(r.content) > 20_000, (r.status_code, len(r.content))
    gateway = f"http://{node_address(swarm, swarm.manager)}:{WORKSPACES_PORT}"
    own = requests.get(f"{gateway}/user/rita/closed/api/status", headers=AUTH, timeout=10)
    assert own.status_code == 200  # the route the hub's proxy takes
    for path in ("/user/nobody/x/api/status", "/hub/api/", "/user/rita/"):
        r = requests.get(gateway + path, headers=AUTH, timeout=10)
        assert r.status_code == 403 and "ERR_ACCESS_DENIED" in r.headers.get("X-Squid-Error", "")


def test_a_notebook_cell_runs_through_the_gateway_and_reaches_only_its_whitelist(hub, workspaces):
    # the kernel's websocket goes hub proxy -> gateway -> workspace, as a browser's does
    code = (
        "import urllib.request, urllib.error\n"
        "for url in ('http://allowed.test/', 'http://other.test/'):\n"
        "    try:\n"
        "        print(url, urllib.request.urlopen(url, timeout=10).status)\n"
        "    except urllib.error.HTTPError as e:\n"
        "        print(url, e.code)\n"
    )
    result = run_cell(hub, "rita", "closed", code, timeout=60)
    assert result.status == "ok", result.error
    assert result.output.split("\n")[:2] == ["http://allowed.test/ 200", "http://other.test/ 403"]


def test_two_restricted_workspaces_cannot_reach_each_other(workspaces):
    rita, sam = workspaces["rita"], workspaces["sam"]
    own = [ipaddress.ip_network(f"{t.address}/28", strict=False) for t in (rita, sam)]
    assert own[0] != own[1]  # each on its own overlay's subnet
    target = f"{sam.address}:8888"
    assert "unreachable" in rita.connections([target])[target]  # another overlay
    assert fetch(rita, f"http://{target}/") == "403 squid"  # nor through the forward port
    # nor through the gateway's workspaces port, which the proxy serves on the overlays too
    via_gateway = f"http://{proxy_of(rita)}:{WORKSPACES_PORT}/user/sam/other/api/status"
    assert fetch(rita, via_gateway) == "403 squid"


def test_a_lost_egress_record_is_rebuilt_from_swarm_and_the_hub(swarm, hub, workspaces):
    # (the proxy's engine maps ids, not this host's: the state is written as the hub does)
    state = EgressState(hub.env_overrides["BENCHHUB_EGRESS_DIR"], swarm.docker_host)
    before = state.registered()["rita/closed"]
    state.forget("rita/closed", time.time())  # lost: no way out, no way in (fail closed)
    adopted = wait(
        lambda: state.registered().get("rita/closed"), 30, "the record is rebuilt", step=0.2
    )
    for field in ("container", "address", "entries", "gateway"):
        assert adopted[field] == before[field], field
    loaded = lambda: state.is_loaded("rita/closed", adopted["registered_at"])  # noqa: E731
    wait(loaded, 10, "the rebuilt record is loaded", step=0.2)
    assert fetch(workspaces["rita"], "http://allowed.test/") == "200"
    r = requests.get(f"{hub.url}/user/rita/closed/api/status", headers=AUTH, timeout=30)
    assert r.status_code == 200


def test_a_stopped_restricted_workspace_leaves_no_record_route_or_overlay(swarm, hub, workspaces):
    service = json.loads(
        swarm.manager_cli("service", "inspect", hub.container_name("sam", "other"))
    )
    network = service[0]["Spec"]["TaskTemplate"]["Networks"][0]["Target"]
    started = time.monotonic()
    workspace_steps.stop(hub, "sam", "other")
    print(f"restricted stop (request -> gone): {time.monotonic() - started:.1f} s")
    records = EgressState(hub.env_overrides["BENCHHUB_EGRESS_DIR"]).registered()
    assert "sam/other" not in records and "rita/closed" in records
    gateway = f"http://{node_address(swarm, swarm.manager)}:{WORKSPACES_PORT}"
    r = requests.get(f"{gateway}/user/sam/other/api/status", headers=AUTH, timeout=10)
    assert r.status_code == 403 and "ERR_ACCESS_DENIED" in r.headers.get("X-Squid-Error", "")
    gone = subprocess.run(
        ["docker", "-H", swarm.docker_host, "network", "inspect", network], capture_output=True
    )
    assert gone.returncode != 0, "the overlay is removed with the workspace"
