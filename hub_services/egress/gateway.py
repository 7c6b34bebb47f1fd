"""The egress proxy as the gateway of restricted workspaces on a swarm: squid lines, pure.

On one host a restricted workspace's internal bridge has the hub's host as its gateway, so
the hub reaches the workspace and the workspace reaches the hub API without any other way
out. On a swarm a task only on an ``--internal`` overlay publishes no port and has no route
to the hub (docs/swarm.md, "Restricted access: what the probe found"). The proxy, joined to
the overlays on the manager, then also carries those two paths, as a reverse proxy:

* **to the workspaces**: one port published on the manager (``workspaces_port``). A request
  whose path starts with a workspace's prefix (``/user/<name>/<server>/``, as JupyterHub's
  proxy forwards it) goes to that workspace's address and port, and nowhere else; any other
  path is refused (403). WebSockets (kernels, terminals) are passed. squid compares the
  *decoded* path (``/user/bob/ws%2B1/`` as ``/user/bob/ws+1/``), so the prefix is decoded
  before it becomes a pattern; a path that decodes into a prefix goes to that prefix's
  workspace, which gets the path as sent.
* **to the hub**: one port on the proxy's overlay addresses (``hub_port``), which the
  workspaces use as ``JUPYTERHUB_API_URL``: every request goes to the hub API's address, and
  only from a workspace's own address.

squid listens on both ports on every address it has, its overlay addresses included: a
request to the workspaces port from a workspace's own address is refused, so a restricted
workspace cannot reach another one's server through the gateway (each has its own overlay;
the proxy is the one member they share).

Neither port is a forward proxy: a request there goes only to the peer its rule names
(``never_direct``). The lines go before the forward proxy's rules
(:func:`.policy.render_squid_conf`'s ``gateway``). Tried by hand on the test swarm with
squid 5.7; ``tests/integration/test_egress_gateway.py`` runs the rendered file in the real
proxy image.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from .policy import ordered_unique

__all__ = ["Gateway", "WorkspaceRoute", "gateway_lines"]

# squid names the ports and peers; the ACLs and peers of route N are gw<N>, gw<N>_path
WORKSPACES_PORT_NAME = "gateway_workspaces"
HUB_PORT_NAME = "gateway_hub"
HUB_PEER_NAME = "gateway_hub_api"
FROM_WORKSPACES = "gateway_from_workspaces"  # every route's own address
# squid drops a request's Authorization header on its way to an originserver peer unless
# told to pass it: API clients' tokens (to a workspace) and the workspace's own token (to the
# hub API) must arrive
PASS_CREDENTIALS = "login=PASSTHRU"
# a JupyterHub server prefix: URL path segments (unreserved, sub-delims, ':' '@', escapes)
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+/")
# squid matches a path ACL against the *decoded* path (``%20`` is a space there), and a
# squid.conf value ends at white space: the decoded prefix must be free of both
_MATCHABLE = re.compile(r'(?:/[^\s/"#?\\]+)+/')
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*")
_ERE_ESCAPES = str.maketrans({char: "\\" + char for char in "\\.[]{}()*+?^$|"})


def _port(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"{name} must be a TCP port number 1-65535, e.g. 8000; got {value!r}")
    return value


def _ipv4(name: str, value: object) -> str:
    try:
        canonical = str(ipaddress.IPv4Address(value)) if isinstance(value, str) else None
    except ValueError:
        canonical = None
    if canonical != value:
        raise ValueError(
            f"{name} must be an IPv4 address as a dotted quad, e.g. 10.251.0.4; got {value!r}"
        )
    return value


@dataclass(frozen=True)
class WorkspaceRoute:
    """One running restricted workspace as the gateway reaches it: ``prefix`` is its
    server's URL path (``/user/alice/bench/``, as JupyterHub escapes it), ``address`` its
    task's IPv4 address on its overlay, ``port`` its server's port. Checked at construction
    (ValueError naming the field)."""

    prefix: str
    address: str
    port: int = 8888

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ValueError(
                "prefix must be a server's URL path of escaped segments ending in '/', "
                f"e.g. /user/alice/bench/; got {self.prefix!r}"
            )
        if not _MATCHABLE.fullmatch(unquote(self.prefix)):
            raise ValueError(
                f"prefix {self.prefix!r} decodes to characters squid's path match cannot "
                "name exactly (white space, control characters, '\"', '#', '?', '\\')"
            )
        _ipv4("address", self.address)
        _port("port", self.port)


@dataclass(frozen=True)
class Gateway:
    """The gateway's two ports and the hub API it relays to (``hub_host``: an IPv4 address
    or a host name the proxy resolves; ``hub_api_port``: the hub's API port, e.g. 8081)."""

    workspaces_port: int
    hub_port: int
    hub_host: str
    hub_api_port: int

    def __post_init__(self) -> None:
        _port("workspaces_port", self.workspaces_port)
        _port("hub_port", self.hub_port)
        _port("hub_api_port", self.hub_api_port)
        if self.workspaces_port == self.hub_port:
            raise ValueError(f"workspaces_port and hub_port must differ, both are {self.hub_port}")
        if not isinstance(self.hub_host, str) or not _HOST_NAME.fullmatch(self.hub_host):
            raise ValueError(
                "hub_host must be an IPv4 address or a host name of letters, digits, '-' "
                f"and dots, e.g. 10.0.0.5; got {self.hub_host!r}"
            )


def gateway_lines(gateway: Gateway, routes: Iterable[WorkspaceRoute]) -> list[str]:
    """squid.conf lines that make the proxy the gateway of ``routes`` (see the module's
    docstring): the two ports, a peer per route reached only by its prefix on the workspaces
    port, the hub API's peer reached only on the hub port from a route's address, WebSocket
    upgrades on both ports, and ``http_access deny`` for anything else arriving there. They
    must precede every other ``http_access`` rule. Pure and deterministic."""
    ordered = ordered_unique(routes, WorkspaceRoute, "prefix")
    sources = " ".join(f"{route.address}/32" for route in ordered)
    lines = [
        "# the gateway of restricted workspaces on a swarm (hub_services.egress.gateway)",
        f"http_port {gateway.workspaces_port} accel name={WORKSPACES_PORT_NAME}",
        f"http_port {gateway.hub_port} accel name={HUB_PORT_NAME}",
        f"acl {WORKSPACES_PORT_NAME} myportname {WORKSPACES_PORT_NAME}",
        f"acl {HUB_PORT_NAME} myportname {HUB_PORT_NAME}",
        f"cache_peer {gateway.hub_host} parent {gateway.hub_api_port} 0 no-query "
        f"originserver {PASS_CREDENTIALS} name={HUB_PEER_NAME}",
    ]
    # the workspaces port is the hub's way in, never a workspace's way to another one
    access = [f"http_access deny {WORKSPACES_PORT_NAME} {FROM_WORKSPACES}"] if ordered else []
    if ordered:
        lines.append(f"acl {FROM_WORKSPACES} src {sources}")
    for index, route in enumerate(ordered):
        name = f"gw{index}"
        path = unquote(route.prefix).translate(_ERE_ESCAPES)
        lines += [
            f"acl {name}_path urlpath_regex ^{path}",
            f"acl {name}_src src {route.address}/32",
            f"cache_peer {route.address} parent {route.port} 0 no-query originserver "
            f"{PASS_CREDENTIALS} name={name}",
            f"cache_peer_access {name} allow {WORKSPACES_PORT_NAME} {name}_path",
            f"cache_peer_access {name} deny all",
        ]
        access += [
            f"http_access allow {WORKSPACES_PORT_NAME} {name}_path",
            f"http_access allow {HUB_PORT_NAME} {name}_src",
        ]
    lines += [
        f"cache_peer_access {HUB_PEER_NAME} allow {HUB_PORT_NAME}",
        f"cache_peer_access {HUB_PEER_NAME} deny all",
        *access,
        f"http_access deny {WORKSPACES_PORT_NAME}",
        f"http_access deny {HUB_PORT_NAME}",
        f"never_direct allow {WORKSPACES_PORT_NAME}",
        f"never_direct allow {HUB_PORT_NAME}",
        # the protocol name is matched case-sensitively: "WebSocket" would drop the Upgrade
        f"http_upgrade_request_protocols websocket allow {WORKSPACES_PORT_NAME}",
        f"http_upgrade_request_protocols websocket allow {HUB_PORT_NAME}",
    ]
    return lines
