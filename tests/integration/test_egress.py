"""Restricted workspaces through the real squid egress proxy, hermetic.

Test web servers run in a container on the proxy's outside network under several DNS names
(network aliases). A restricted workspace must reach exactly its whitelist through the proxy,
and nothing else by any route. The same servers also run in a network namespace on the host,
behind a veth pair: an address reached by routing and NAT, as the Internet is from an open
workspace (a server on the open bridge itself is no stand-in: workspaces on it never reach each
other's containers).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests
from support.certificates import self_signed
from support.docker_cli import docker, exec_in
from support.hub_harness import TEST_PREFIX as PREFIX
from support.outside_host import outside_host
from support.waiting import wait

NAMES = [
    "allowed.test",
    "sub.allowed.test",
    "other.test",
    "allowed.test.evil.test",
    "paths.test",
    "wild.test",
    "a.wild.test",
]
WHITELIST = "allowed.test\n.wild.test\npaths.test/folder/"
SERVER = f"{PREFIX}-egress-web"
OUTSIDE_NS, OUTSIDE_VETH = f"{PREFIX}-outside", "bt-out"  # the veth pair: bt-out0, bt-out1
OUTSIDE_ADDRESS = "203.0.113.2"  # TEST-NET-3: never a real host; the host side is .1
SERVE = r"""
import http.server, os, ssl, sys, threading
CERTS = sys.argv[1] if len(sys.argv) > 1 else "/certs"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"host={self.headers['Host']} path={self.path}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
def serve(port, tls=False):
    s = http.server.ThreadingHTTPServer(("0.0.0.0", port), H)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(CERTS, "c.pem"), os.path.join(CERTS, "k.pem"))
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
    s.serve_forever()
for port, tls in ((443, True), (8080, False)):
    threading.Thread(target=serve, args=(port, tls), daemon=True).start()
serve(80)
"""


def code(container: str, url: str, *extra: str) -> str:
    """HTTP status seen by curl inside the container (000 = no connection)."""
    args = " ".join(extra)
    r = exec_in(container, f'curl -sk -m 5 -o /dev/null -w "%{{http_code}}" {args} {url}')  # noqa: E501
    return r.stdout.strip()


@pytest.fixture(scope="module")
def web(hub, tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    self_signed(certs, "allowed.test")
    outside = f"{PREFIX}-egress-out"
    if not docker("network", "ls", "-q", "--filter", f"name=^{outside}$").strip():
        docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", outside)
    aliases = [a for n in NAMES for a in ("--network-alias", n)]
    docker("rm", "-f", SERVER, check=False)
    docker(
        "run",
        "-d",
        "--name",
        SERVER,
        "-u",
        "0",
        "--network",
        outside,
        *aliases,
        "-v",
        f"{certs}:/certs:ro",
        "--entrypoint",
        "python3",
        "benchhub/jupyterlab:latest",
        "-c",
        SERVE,
    )
    yield json.loads(docker("inspect", SERVER))[0]["NetworkSettings"]["Networks"][outside]
    docker("rm", "-f", SERVER, check=False)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """The test servers at OUTSIDE_ADDRESS, in a network namespace the host routes to."""
    certs = tmp_path_factory.mktemp("outside-certs")
    self_signed(certs, "outside.test")
    serve = [sys.executable, "-c", SERVE, str(certs)]
    ready = f"http://{OUTSIDE_ADDRESS}:8080/"
    with outside_host(OUTSIDE_NS, OUTSIDE_VETH, [OUTSIDE_ADDRESS], serve, ready):
        yield OUTSIDE_ADDRESS


@pytest.fixture(scope="module")
def workspaces(hub, web):
    hub.ensure_user("rita")
    hub.start_workspace("rita", "closed", {"access_mode": "restricted", "whitelist": WHITELIST})
    hub.start_workspace("rita", "opened", {})
    yield hub.container_name("rita", "closed"), hub.container_name("rita", "opened")
    hub.stop_workspace("rita", "closed")
    hub.stop_workspace("rita", "opened")


def test_whitelist_allows_exactly_its_hosts(workspaces):
    closed, _ = workspaces
    assert code(closed, "http://allowed.test/") == "200"
    assert code(closed, "https://allowed.test/") == "200"
    assert code(closed, "http://sub.allowed.test/") == "403"  # a plain entry is that host only
    assert code(closed, "http://wild.test/") == "200"  # a leading dot: the domain ...
    assert code(closed, "https://a.wild.test/") == "200"  # ... and every subdomain
    assert code(closed, "http://other.test/") == "403"
    assert code(closed, "http://allowed.test.evil.test/") == "403"
    assert code(closed, "http://allowed.test:8080/") == "403"  # other ports


def test_path_entries_limit_plain_http_and_allow_the_host_over_https(workspaces):
    closed, _ = workspaces
    assert code(closed, "http://paths.test/folder/data.csv") == "200"
    assert code(closed, "http://paths.test/folder") == "403"  # the trailing slash matters
    assert code(closed, "http://paths.test/elsewhere") == "403"
    assert code(closed, "https://paths.test/elsewhere") == "200"  # https shows only the host


def test_nothing_gets_around_the_proxy(hub, web, outside, workspaces):
    closed, _ = workspaces
    address = web["IPAddress"]
    assert code(closed, f"http://{address}/", "--noproxy '*'") == "000"  # direct address
    assert code(closed, "http://allowed.test/", "--noproxy '*'") == "000"  # bypassing the vars
    assert code(closed, f"http://{address}/") == "403"  # an address through the proxy
    assert code(closed, f"http://{outside}/", "--noproxy '*'") == "000"  # routed: no route
    for target in (address, outside):
        raw = exec_in(
            closed, f"python3 -c \"import socket; socket.create_connection(('{target}', 80), 3)\""
        )
        assert raw.returncode != 0  # raw TCP
    assert exec_in(closed, "getent hosts allowed.test").returncode != 0  # no outside DNS
    ipv6 = exec_in(closed, "grep -v ' lo$' /proc/net/if_inet6 2>/dev/null; true").stdout
    assert ipv6.strip() == ""  # no IPv6 address but loopback: no IPv6 path
    hub_api = code(closed, "$JUPYTERHUB_API_URL/", "--noproxy '*'")
    assert hub_api == "200"  # the hub stays reachable


def test_host_services_other_than_the_hub_are_closed_to_open_and_restricted_alike(workspaces):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = (
            "gw=$(echo $JUPYTERHUB_API_URL | sed -E 's#^http://([^:/]+).*#\\1#');"
            f" curl -s -m 3 -o /dev/null --noproxy '*' http://$gw:{port}/; echo rc=$?"
        )
        here = subprocess.run(
            ["curl", "-s", "-m", "3", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]
        )
        assert here.returncode == 0  # a host service, answering on the host ...
        for workspace in workspaces:  # ... but refused at once from either workspace
            assert exec_in(workspace, script).stdout.strip() == "rc=7", workspace
    finally:
        server.shutdown()


def test_open_workspace_reaches_the_outside_directly(outside, workspaces):
    _, opened = workspaces

    def direct(url: str, name: str) -> str:
        port = 443 if url.startswith("https") else 80
        return code(opened, url, f"--resolve {name}:{port}:{outside}")

    assert direct("http://other.test/", "other.test") == "200"
    assert direct("https://sub.allowed.test/", "sub.allowed.test") == "200"
    assert code(opened, f"http://{outside}:8080/") == "200"  # any port
    assert exec_in(opened, "env | grep -ci _proxy=").stdout.strip() == "0"


def test_refusals_are_visible_to_the_owner(hub, workspaces):
    closed, _ = workspaces
    code(closed, "http://other.test/")
    token = hub.api("POST", "/users/rita/tokens", {"expires_in": 600}).json()["token"]

    def refused() -> dict:
        r = requests.get(
            f"{hub.url}/services/egress/api/refusals/rita/closed",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return {row["host"]: row for row in r.json()["refusals"]}

    hosts = wait(refused, 10, "other.test among rita's refusals", until=lambda h: "other.test" in h)
    assert hosts["other.test"]["count"] >= 1
    assert "wild.test" not in hosts and "a.wild.test" not in hosts  # allowed: never refused
    hub.ensure_user("sam")
    other = hub.api("POST", "/users/sam/tokens", {"expires_in": 600}).json()["token"]
    r = requests.get(
        f"{hub.url}/services/egress/api/refusals/rita/closed",
        headers={"Authorization": f"token {other}"},
        timeout=10,
    )
    assert r.status_code == 403


def test_proxy_restart_keeps_restrictions_and_a_dead_proxy_fails_closed(hub, workspaces):
    closed, _ = workspaces
    proxy = f"{PREFIX}-egress"
    docker("restart", "-t", "1", proxy)
    assert wait_code(closed, "http://allowed.test/", "200", timeout=60)
    assert code(closed, "http://other.test/") == "403"
    # The proxy's owner, the egress service, is paused while the proxy is down: it cannot
    # bring the proxy back before the checks below, however long they take on this machine
    # (its restart grace is 5 s, no bound on a test).
    service = hub.service_pid("egress")
    assert service, "the egress service is not running"
    os.kill(service, signal.SIGSTOP)
    try:
        docker("stop", "-t", "1", proxy)
        assert code(closed, "http://allowed.test/", "-m 2") == "000"  # fail closed: no way out
        assert hub.workspaces("rita")["closed"]["reason"].startswith("egress proxy is down")
    finally:
        os.kill(service, signal.SIGCONT)
    # the egress service notices and brings the proxy back with the same lists
    assert wait_code(closed, "http://allowed.test/", "200", timeout=60)
    assert code(closed, "http://other.test/") == "403"


def wait_code(container: str, url: str, expected: str, timeout: float = 15) -> str:
    """``expected``, once curl in ``container`` sees it for ``url`` (WaitTimedOut otherwise)."""
    return wait(
        lambda: code(container, url),
        timeout,
        f"{url} answers {expected} in {container}",
        until=lambda status: status == expected,
    )


def test_data_science_preset_comes_from_the_image_pip_configuration():
    import docker as docker_py

    from benchhub.whitelist_presets import data_science_preset, probe_image

    settings = probe_image(docker_py.from_env(), "benchhub/jupyterlab:latest")
    index_url = exec_in_image(
        "pip config list; python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.url)'"
    )
    preset = data_science_preset(settings)
    assert len(settings["pip"]) == 2 and preset[-1] == "github.com"
    assert preset[0] in index_url  # the index pip in the image really uses


def exec_in_image(script: str) -> str:
    return docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "benchhub/jupyterlab:latest",
        "-c",
        script,
    )


def test_each_workspace_gets_its_own_list_and_a_stop_takes_it_away(hub, workspaces):
    closed, _ = workspaces
    hub.start_workspace("rita", "second", {"access_mode": "restricted", "whitelist": "other.test"})
    second = hub.container_name("rita", "second")
    assert code(second, "http://other.test/") == "200"  # its own list, loaded while running
    assert code(second, "http://allowed.test/") == "403"  # not the neighbour's
    assert code(closed, "http://other.test/") == "403"
    address = exec_in(second, "hostname -i").stdout.split()[0]
    hub.stop_workspace("rita", "second")
    # the egress service owns squid.conf: it drops the rules as soon as it sees the record go
    conf_path = hub.egress_dir / "squid" / "squid.conf"
    conf = wait(
        conf_path.read_text,
        10,
        f"squid.conf without {address}",
        until=lambda text: address not in text,
    )
    assert address not in conf and "other.test" not in conf  # its rules are gone
    assert code(closed, "http://allowed.test/") == "200"  # the others' are untouched


def test_lost_egress_state_is_rebuilt_from_the_hub_and_docker(hub, workspaces):
    closed, _ = workspaces
    records = hub.egress_dir / "workspaces"
    before = json.loads((records / "rita%2Fclosed.json").read_text())
    (records / "rita%2Fclosed.json").unlink()  # as if the egress state were lost while it runs
    wait((records / "rita%2Fclosed.json").exists, 30, "the service rebuilt rita/closed's record")
    after = json.loads((records / "rita%2Fclosed.json").read_text())  # rebuilt by the service
    assert (after["address"], after["entries"]) == (before["address"], before["entries"])
    assert wait_code(closed, "http://allowed.test/", "200")
    assert code(closed, "http://other.test/") == "403"


def test_the_proxy_starts_a_new_access_log_when_asked_to_rotate(hub, workspaces):
    """Every user's requests make squid's access log grow; the egress service has squid
    rotate it past a size (one older file kept), so requests cannot fill the host's disk."""
    import asyncio

    from benchhub.docker_engine import DockerEngine
    from benchhub.egress_state import EgressState
    from hub_services.egress.proxy import EgressProxy

    closed, _ = workspaces
    logs = hub.egress_dir / "log"
    code(closed, "http://other.test/before-rotation")
    assert wait_for_text(logs / "access.log", "before-rotation")
    engine = DockerEngine(threads=1)
    proxy = EgressProxy(EgressState(hub.egress_dir), engine, f"{PREFIX}-egress", "", "", 1400)
    asyncio.run(proxy.rotate_log())
    engine.close()
    assert wait_for_text(logs / "access.log.0", "before-rotation")  # the old log kept once
    code(closed, "http://other.test/after-rotation")
    assert wait_for_text(logs / "access.log", "after-rotation")
    assert "before-rotation" not in (logs / "access.log").read_text()


def wait_for_text(path, text: str, timeout: float = 20) -> bool:
    return wait(
        lambda: path.exists() and text in path.read_text(errors="replace"),
        timeout,
        f"{text!r} in {path}",
    )
