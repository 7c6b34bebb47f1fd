"""Docker networks for workspaces: one per access mode, shared by every user, kept apart.

``open`` is an ordinary bridge (NAT to the outside). ``restricted`` is ``--internal`` (Docker
drops its forwarded traffic and adds no NAT) with a subnet BenchHub owns, so that restricted
workspaces get fixed addresses the egress proxy can key its lists on; the gateway is the first
address and the proxy the second.

Both carry many users' workspaces, so neither lets its containers talk to each other: Docker's
inter-container traffic is off (``enable_icc=false``) and the host firewall
(:mod:`benchhub.firewall`) says so again, with the one exception of the egress
proxy's port on the restricted bridge; from either bridge the host answers only on the hub's
port. :func:`network_create_kwargs` and :func:`workspace_guard` are pure;
:func:`ensure_workspace_network` creates a missing network and replaces one made before
workspaces were isolated when nothing (but the egress proxy, which is recreated on demand)
uses it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import docker
from docker.errors import NotFound

from benchhub import firewall

from .labels import NETWORK

NETWORK_LABEL = NETWORK
EGRESS_PROXY_PORT = 3128  # squid's port on the restricted network
ICC_OPTION = "com.docker.network.bridge.enable_icc"
UPGRADE_DOC = "docs/configuration.md, 'Networks made before workspaces were isolated'"


@dataclass(frozen=True)
class WorkspaceNetwork:
    """Facts about a Docker network workspaces join."""

    name: str
    id: str
    subnet: str
    gateway: str

    @property
    def proxy_address(self) -> str:
        """The egress proxy's fixed address: the first after the gateway (reserved in the
        address book of restricted workspaces)."""
        return str(ipaddress.ip_network(self.subnet).network_address + 2)


def network_create_kwargs(name: str, access_mode: str, subnet: str | None, mtu: int) -> dict:
    """Keyword arguments for ``docker.APIClient.create_network``."""
    ipam = None
    if subnet:
        net = ipaddress.ip_network(subnet)
        pool = docker.types.IPAMPool(subnet=str(net), gateway=str(net.network_address + 1))
        ipam = docker.types.IPAMConfig(pool_configs=[pool])
    return dict(
        name=name,
        driver="bridge",
        check_duplicate=True,
        internal=access_mode == "restricted",
        ipam=ipam,
        # workspaces of different users share the bridge: no traffic between them
        options={"com.docker.network.driver.mtu": str(mtu), ICC_OPTION: "false"},
        labels={NETWORK_LABEL: access_mode},
    )


def made_before_isolation(info: dict) -> bool:
    """Whether a workspace network (``docker network inspect``) lets its containers talk to
    each other: created before BenchHub turned that off."""
    return (info.get("Options") or {}).get(ICC_OPTION) != "false"


def workspace_guard(net: WorkspaceNetwork, access_mode: str, hub_port: int) -> firewall.BridgeGuard:
    """The host firewall for a workspace network: the hub's port on the host, no neighbour,
    except the egress proxy's port on the restricted network (it is the way out)."""
    openings = ()
    if access_mode == "restricted":
        openings = (firewall.Opening(net.proxy_address, EGRESS_PROXY_PORT),)
    return firewall.BridgeGuard(
        net.id, net.name, host_ports=(hub_port,), isolated=True, openings=openings
    )


async def ensure_workspace_network(
    call: Callable[..., Awaitable],
    name: str,
    access_mode: str,
    subnet: str | None,
    mtu: int,
    movable: frozenset[str] = frozenset(),
    log: logging.Logger | None = None,
) -> WorkspaceNetwork:
    """The facts of network ``name``, created if missing.

    ``call(method, *args, **kwargs)`` runs a ``docker.APIClient`` method (the spawner's
    executor). A network made before workspaces were isolated is removed and made again when
    no container but those named in ``movable`` (the egress proxy: removed with it, the next
    restricted start recreates it) is attached; otherwise it stays, isolated by the firewall
    alone, and a warning says how to finish the upgrade.
    """
    log = log or logging.getLogger("benchhub.networks")
    try:
        info = await call("inspect_network", name)
    except NotFound:
        info = None
    if info is not None and made_before_isolation(info):
        attached = {c.get("Name", cid) for cid, c in (info.get("Containers") or {}).items()}
        if attached - movable:
            log.warning(
                "network %s was made before BenchHub kept workspaces apart on it (Docker lets "
                "its containers talk to each other); the host firewall blocks that traffic, but "
                "recreate the network: stop every workspace on it (%s) and start one again, "
                "BenchHub then makes it anew. See %s.",
                name,
                ", ".join(sorted(attached - movable)),
                UPGRADE_DOC,
            )
        else:
            for container in attached:
                await call("remove_container", container, force=True)
            await call("remove_network", info["Id"])
            await firewall.remove(info["Id"])
            log.warning(
                "network %s was made before workspaces were isolated and nothing used "
                "it: made it anew",
                name,
            )
            info = None
    if info is None:
        await call("create_network", **network_create_kwargs(name, access_mode, subnet, mtu))
        info = await call("inspect_network", name)
    ipam = info["IPAM"]["Config"][0]
    return WorkspaceNetwork(name, info["Id"], ipam["Subnet"], ipam["Gateway"])


def host_mtu() -> int:
    """MTU of the interface holding the default route (1500 when unknown)."""
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                iface, dest = line.split()[:2]
                if dest == "00000000":
                    with open(f"/sys/class/net/{iface}/mtu") as m:
                        return int(m.read())
    except OSError:
        pass
    return 1500
