"""No user reaches another user's containers or the host's services; the hub, the whitelist and
the user's own cluster keep working (issue 11, holes 3 and 4).

One hub ("benchiso") with its egress proxy and clusters service. alice has an open workspace
"lab" and a restricted one "closed" with a Grid Engine cluster of one member; bob has an open
"lab" and a restricted "closed". Every one of them, and the member, serves on port 4040 (as
Spark's UI and any web app a user starts would: no login). The test process listens on all of
the host's addresses (0.0.0.0), as any host service bound that way does.

Every probe is a TCP connect from inside a container (docker exec), to every address the host
has, and to the other user's workspaces; the same targets answer the test process itself, so an
unreachable target is closed by the network, not absent. A web server on the egress proxy's
outside network stands for the whitelisted Internet, as in tests/integration/test_egress.py.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading

import pytest
from support.cluster_harness import Clusters, cluster_env, remove_cluster_leftovers
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess
from support.waiting import wait

PREFIX = "benchiso"
CLUSTER_IMAGE = "benchhub/cluster:latest"
APP_PORT = 4040  # Spark's UI port: what a user's own web app listens on
WEB = f"{PREFIX}-web"
WHITELIST = "allowed.test"
# Connects to every "host:port" argument at once; prints "host:port open" or the error's name.
PROBE = r"""
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def reach(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 3).close()
        return target, "open"
    except OSError as e:
        return target, type(e).__name__
with ThreadPoolExecutor(32) as pool:
    for target, result in pool.map(reach, sys.argv[1:]):
        print(target, result)
"""
SERVE = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"host={self.headers['Host']}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
"""


def probe(container: str, targets: list[str], user: str | None = None) -> dict[str, str]:
    """``{target: "open" or the error}`` of TCP connects from inside ``container``."""
    argv = ["docker", "exec"] + (["-u", user] if user else [])
    result = subprocess.run(
        [*argv, container, "python3", "-c", PROBE, *targets],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def reachable_from_here(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 3).close()
        return True
    except OSError:
        return False


def host_addresses() -> list[str]:
    """Every IPv4 address of the host but loopback: bridge gateways, the outside interface."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True)
    found = [line.split()[3].split("/")[0] for line in out.stdout.splitlines()]
    return [address for address in found if not address.startswith("127.")]


def addresses(container: str) -> list[str]:
    networks = json.loads(docker("inspect", container))[0]["NetworkSettings"]["Networks"]
    return [net["IPAddress"] for net in networks.values()]


def serve_app(container: str, user: str = "1000") -> None:
    """A web server on APP_PORT in ``container`` as ``user``, answering the test process."""
    docker(
        "exec",
        "-d",
        "-u",
        user,
        container,
        "python3",
        "-m",
        "http.server",
        str(APP_PORT),
        "--bind",
        "0.0.0.0",
        "--directory",
        "/tmp",
    )
    address = addresses(container)[0]
    wait(lambda: reachable_from_here(address, APP_PORT), 20, f"{container} serves")


class Site:
    """The hub, the containers under test and the host listener."""

    def __init__(self, clusters: Clusters, listener_port: int, member: str):
        self.clusters = clusters
        self.hub = clusters.hub
        self.listener_port = listener_port
        self.member = member
        name = self.hub.container_name
        self.vantage = {
            "alice's open workspace": (name("alice", "lab"), "1000"),
            "alice's restricted workspace with a cluster": (name("alice", "closed"), "1000"),
            "alice's cluster member, as the job user": (member, "1000"),
            "alice's cluster member, as its root": (member, "0"),
        }
        self.bob = {"open": name("bob", "lab"), "restricted": name("bob", "closed")}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides=cluster_env(scratch, "10.237.0.0/20"),
    )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    docker("rm", "-f", WEB, check=False)
    listener = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        outside = f"{PREFIX}-egress-out"
        docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", outside)
        docker(
            "run",
            "-d",
            "--name",
            WEB,
            "-u",
            "0",
            "--network",
            outside,
            "--network-alias",
            "allowed.test",
            "--network-alias",
            "other.test",
            "--entrypoint",
            "python3",
            "benchhub/jupyterlab:latest",
            "-c",
            SERVE,
        )
        hub.start()
        restricted = {"access_mode": "restricted", "whitelist": WHITELIST}
        for user in ("alice", "bob"):
            hub.ensure_user(user)
        hub.start_workspaces(
            [
                (user, name, {"resource_model": "test-small", **access})
                for user in ("alice", "bob")
                for name, access in (("lab", {}), ("closed", restricted))
            ]
        )
        clusters = Clusters(hub, scratch)
        r = clusters.api(
            "POST",
            "alice/closed",
            {"type": "static", "members": 1, "resource_model": "standard-small"},
        )
        assert r.status_code == 202, r.text

        def member_idle():
            members = clusters.api("GET", "alice/closed").json()["members"]
            return [m["name"] for m in members if m["state"] == "idle"]

        member = wait(member_idle, 90, "alice's cluster member is idle")[0]
        for user in ("alice", "bob"):
            for workspace in ("lab", "closed"):
                serve_app(hub.container_name(user, workspace))
        serve_app(member)
        yield Site(clusters, listener.server_address[1], member)
    finally:
        listener.shutdown()
        hub.stop()
        docker("rm", "-f", WEB, check=False)
        cleanup(PREFIX, hub.storage_root)
        remove_cluster_leftovers(PREFIX, scratch)


VANTAGE = [
    "alice's open workspace",
    "alice's restricted workspace with a cluster",
    "alice's cluster member, as the job user",
    "alice's cluster member, as its root",
]


@pytest.mark.parametrize("vantage", VANTAGE)
def test_no_host_service_but_the_hub_answers_a_workspace_or_cluster_member(site, vantage):
    container, user = site.vantage[vantage]
    port = site.listener_port
    assert reachable_from_here("127.0.0.1", port)  # the host service is up ...
    targets = [f"{address}:{port}" for address in host_addresses()]
    seen = probe(container, targets, user)
    assert {t: r for t, r in seen.items() if r == "open"} == {}  # ... and closed to containers


@pytest.mark.parametrize("vantage", VANTAGE)
def test_no_workspace_or_member_reaches_another_users_workspace(site, vantage):
    container, user = site.vantage[vantage]
    targets = [f"{address}:{APP_PORT}" for bob in site.bob.values() for address in addresses(bob)]
    assert all(reachable_from_here(t.split(":")[0], APP_PORT) for t in targets)  # they serve
    seen = probe(container, targets, user)
    assert {t: r for t, r in seen.items() if r == "open"} == {}


def test_restricted_workspaces_do_not_reach_each_other(site):
    """The restricted bridge carries every user's restricted workspace and the proxy."""
    alice = site.hub.container_name("alice", "closed")
    bob = site.bob["restricted"]
    for source, target in ((alice, bob), (bob, alice)):
        restricted_address = addresses(target)[0]  # its address on the restricted bridge
        seen = probe(source, [f"{restricted_address}:{APP_PORT}"], "1000")
        assert set(seen.values()) != {"open"}, (source, target)


def test_open_workspaces_do_not_reach_each_other(site):
    alice = site.hub.container_name("alice", "lab")
    bob = site.bob["open"]
    for source, target in ((alice, bob), (bob, alice)):
        seen = probe(source, [f"{addresses(target)[0]}:{APP_PORT}"], "1000")
        assert set(seen.values()) != {"open"}, (source, target)


def test_every_workspace_still_reaches_the_hub_api(site):
    for user in ("alice", "bob"):
        for workspace in ("lab", "closed"):
            container = site.hub.container_name(user, workspace)
            answer = exec_in(
                container,
                'curl -s -m 5 -o /dev/null -w "%{http_code}" --noproxy "*" "$JUPYTERHUB_API_URL/"',
            )
            assert answer.stdout == "200", (container, answer.stdout, answer.stderr)


def test_a_restricted_workspace_with_a_cluster_still_gets_its_whitelist_and_nothing_else(site):
    closed = site.hub.container_name("alice", "closed")

    def status(url: str) -> str:
        r = exec_in(closed, f'curl -s -m 10 -o /dev/null -w "%{{http_code}}" {url}')
        return r.stdout

    assert status("http://allowed.test/") == "200"  # through the proxy: on the whitelist
    assert status("http://other.test/") == "403"  # the proxy refuses what is not on it
    web = json.loads(docker("inspect", WEB))[0]["NetworkSettings"]["Networks"]
    direct = probe(closed, [f"{net['IPAddress']}:80" for net in web.values()], "1000")
    assert "open" not in direct.values()  # and nothing goes around the proxy


def test_a_restricted_workspace_reaches_its_own_cluster_and_submits_jobs(site):
    closed = site.hub.container_name("alice", "closed")
    member = addresses(site.member)[0]
    assert probe(closed, [f"{member}:{APP_PORT}"], "1000") == {f"{member}:{APP_PORT}": "open"}
    submit = exec_in(closed, "cd /data && qsub -sync y -b y true", user="1000")
    assert submit.returncode == 0 and "exited with exit code 0" in submit.stdout, submit.stderr


def test_no_workspace_has_an_ipv6_path_around_the_ipv4_firewall(site):
    for vantage, (container, _) in site.vantage.items():
        ipv6 = exec_in(container, "grep -v ' lo$' /proc/net/if_inet6; true").stdout
        assert ipv6.strip() == "", vantage
