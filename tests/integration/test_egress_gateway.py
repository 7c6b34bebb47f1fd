"""The egress proxy as a swarm's gateway (hub_services/egress/gateway.py), in the real proxy.

The rendered squid.conf runs in the real proxy image on a bridge network of this host, with
two stand-in workspace servers and a stand-in hub API server (Python, in the workspace image).
On a swarm the proxy reaches the workspaces over their overlays; a bridge carries the same
requests here, so what is tested is squid's routing by prefix, its refusals, WebSockets and
the hub relay's source check — not the overlay, which tests/swarm/test_swarm_restricted.py
probes. The workspaces port is published on 127.0.0.1 as the manager publishes it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap

import pytest
import requests
from support.docker_cli import docker, remove_network
from support.hub_harness import TEST_PREFIX as PREFIX
from support.waiting import wait

from hub_services.egress.gateway import Gateway, WorkspaceRoute, gateway_lines
from hub_services.egress.policy import render_squid_conf

NETWORK = f"{PREFIX}-gateway"
PROXY, HUB = f"{PREFIX}-gateway-proxy", f"{PREFIX}-gateway-hub"
SERVERS = {"alice": f"{PREFIX}-gateway-alice", "bob": f"{PREFIX}-gateway-bob"}
PREFIXES = {"alice": "/user/alice/bench/", "bob": "/user/bob/ws%2B1/"}
WORKSPACES_PORT, HUB_PORT = 8000, 8081
# answers "<name> <path>" (and " auth=<value>" for an Authorization header) to a request,
# and 101 then an echo to a WebSocket upgrade
SERVE = textwrap.dedent(
    r"""
    import socketserver, sys
    NAME = sys.argv[1]
    class H(socketserver.StreamRequestHandler):
        def handle(self):
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                byte = self.rfile.read(1)
                if not byte:
                    return
                head += byte
            text = head.decode("latin-1")
            path = text.split(" ")[1]
            if "upgrade: websocket" in text.lower():
                self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n")
                self.wfile.flush()
                while True:
                    data = self.request.recv(4096)
                    if not data:
                        return
                    self.request.sendall(NAME.encode() + b" echo " + data)
            auth = [l.split(":", 1)[1].strip() for l in text.split("\r\n")
                    if l.lower().startswith("authorization:")]
            body = (f"{NAME} {path}" + "".join(f" auth={a}" for a in auth)).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % len(body) + body)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[2])), H).serve_forever()
    """
)


def _serve(name: str, container: str, port: int) -> str:
    docker(
        "run", "-d", "--name", container, "--network", NETWORK, "--entrypoint", "python3",
        "benchhub/jupyterlab:latest", "-c", SERVE, name, str(port),
    )  # fmt: skip
    return json.loads(docker("inspect", container))[0]["NetworkSettings"]["Networks"][NETWORK][
        "IPAddress"
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The proxy with the gateway of two workspaces; yields its published URL, its address
    on the network and the workspaces' addresses."""
    names = [PROXY, HUB, *SERVERS.values()]
    docker("rm", "-f", *names, check=False)
    remove_network(NETWORK)
    docker("network", "create", NETWORK)
    try:
        addresses = {name: _serve(name, c, 8888) for name, c in SERVERS.items()}
        hub_address = _serve("hub", HUB, 8081)
        routes = [WorkspaceRoute(PREFIXES[n], a) for n, a in addresses.items()]
        lines = gateway_lines(Gateway(WORKSPACES_PORT, HUB_PORT, hub_address, 8081), routes)
        conf_dir = tmp_path_factory.mktemp("gateway")
        (conf_dir / "squid.conf").write_text(
            render_squid_conf([], access_log="/var/log/bench-egress/access.log", gateway=lines)
        )
        conf_dir.chmod(0o755)
        (conf_dir / "squid.conf").chmod(0o644)
        docker(
            "run", "-d", "--name", PROXY, "--network", NETWORK,
            "-p", f"127.0.0.1::{WORKSPACES_PORT}", "-v", f"{conf_dir}:/etc/bench-egress:ro",
            "benchhub/egress:latest",
        )  # fmt: skip
        port = docker("port", PROXY, str(WORKSPACES_PORT)).split(":")[-1].strip()
        url = f"http://127.0.0.1:{port}"

        def answering():
            try:
                return requests.get(url + PREFIXES["alice"], timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait(answering, 60, "the gateway answers")
        inspected = json.loads(docker("inspect", PROXY))[0]
        proxy_address = inspected["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        yield url, proxy_address, addresses
    finally:
        docker("rm", "-f", *names, check=False)
        remove_network(NETWORK)


def _from_container(container: str, url: str, proxy: str = "") -> str:
    """``status body`` of a GET of ``url`` from inside ``container`` (through ``proxy``, a
    forward proxy's URL, if given)."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
        "    print(r.status, r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )
    out = subprocess.run(
        ["docker", "exec", "-e", f"http_proxy={proxy}", container, "python3", "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_each_workspace_prefix_reaches_its_own_workspace_and_no_other_path_reaches_anything(
    gateway,
):
    url, _, _ = gateway
    for name, prefix in PREFIXES.items():
        r = requests.get(f"{url}{prefix}lab/tree?x=1", timeout=10)
        assert (r.status_code, r.text) == (200, f"{name} {prefix}lab/tree?x=1")
    # a prefix of no running workspace, the hub's own paths, a prefix's parent, a look-alike
    for path in ("/user/mallory/bench/", "/hub/api/users", "/user/alice/", "/user/alice/benchX/"):
        r = requests.get(url + path, timeout=10)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])


def test_the_workspaces_port_is_no_forward_proxy(gateway):
    url, _, addresses = gateway
    # an absolute URL to a workspace's own address, as a forward proxy would take it
    proxies = {"http": url}
    r = requests.get(f"http://{addresses['bob']}:8888/", proxies=proxies, timeout=10)
    assert r.status_code == 403, r.text[:200]
    # ... and a CONNECT tunnel through it
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(f"CONNECT {addresses['bob']}:8888 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status = s.recv(200).split(b"\r\n")[0]
    assert b" 200" not in status and b" 4" in status, status


def test_a_websocket_passes_to_its_workspace(gateway):
    url, _, _ = gateway
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(
            (
                f"GET {PREFIXES['alice']}api/kernels/k/channels HTTP/1.1\r\nHost: hub\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(b"ping")
        assert s.recv(100) == b"alice echo ping"


def test_the_hub_port_relays_a_workspace_to_the_hub_api_and_nobody_else(gateway):
    _, proxy, addresses = gateway
    relay = f"http://{proxy}:{HUB_PORT}/hub/api/"
    for container in SERVERS.values():
        assert _from_container(container, relay) == "200 hub /hub/api/"
    # the hub's stand-in itself is on the network but is no workspace: refused
    assert _from_container(HUB, relay) == "403"
    # whatever the path or target a workspace names there, the request goes to the hub
    # (which decides on it with the workspace's token), never to another workspace
    relay_port = f"http://{proxy}:{HUB_PORT}"
    bob = f"{relay_port}{PREFIXES['bob']}"
    assert _from_container(SERVERS["alice"], bob) == f"200 hub {PREFIXES['bob']}"
    direct = f"http://{addresses['bob']}:8888/"
    answer = _from_container(SERVERS["alice"], direct, proxy=relay_port)
    assert not answer.startswith("200 bob"), answer


def test_a_workspace_cannot_reach_another_through_the_workspaces_port(gateway):
    _, proxy, _ = gateway
    # squid serves the workspaces port on the proxy's network addresses too (on a swarm: on
    # every workspace's overlay); only the hub's side may use it
    for prefix in PREFIXES.values():
        url = f"http://{proxy}:{WORKSPACES_PORT}{prefix}"
        assert _from_container(SERVERS["alice"], url) == "403"


def test_tokens_pass_both_ways(gateway):
    url, proxy, _ = gateway
    # an API client's token reaches the workspace (its server checks it) ...
    r = requests.get(
        f"{url}{PREFIXES['alice']}api", headers={"Authorization": "token t1"}, timeout=10
    )
    assert r.text == f"alice {PREFIXES['alice']}api auth=token t1"
    # ... and the workspace's own token reaches the hub API through the relay
    script = (
        "import sys, urllib.request\n"
        "q = urllib.request.Request(sys.argv[1], headers={'Authorization': 'token t2'})\n"
        "print(urllib.request.urlopen(q, timeout=10).read().decode())\n"
    )
    out = subprocess.run(
        ["docker", "exec", SERVERS["bob"], "python3", "-c", script,
         f"http://{proxy}:{HUB_PORT}/hub/api/user"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "hub /hub/api/user auth=token t2", out.stderr
