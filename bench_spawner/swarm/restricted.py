"""Restricted access on a swarm: each restricted workspace on its own internal overlay, with
the egress proxy on the manager as its one way out and the hub's one way in (docs/swarm.md).

* **Its own overlay** (:func:`overlay_create_kwargs`): ``--internal --attachable``, a small
  subnet from a pool (``/28`` by default; an overlay has no ``enable_icc=false``, so
  workspaces sharing one would reach each other). ``.1`` is the overlay's gateway (nothing
  answers there), ``.2`` the proxy, tasks get the upper half. The workspace service is only
  on it, ``endpoint_mode: dnsrr`` (no IPVS needed), its DNS server the proxy's address
  (nothing answers DNS there: outside names never resolve in the workspace), no published
  port (Swarm would not make it anyway).
* **Registered once placed**: the task's overlay address is known only once it runs; the
  spawner then writes the egress record (address, whitelist, overlay, server prefix) and
  waits until the egress service has joined the proxy to the overlay and loaded the route
  (fail closed: until then squid refuses the address, and the hub cannot reach the server).
  The hub reaches the server at ``http://<gateway_host>:<gateway_workspaces_port>`` with its
  ``/user/<name>/<server>/`` prefix; the server reaches the hub API at
  ``http://<proxy>:<gateway_hub_port>`` (:func:`gateway_environment`).
* **Forgotten before the service is removed**, the overlay removed after it (once the proxy
  left it), its subnet back to the pool.

The pure parts are the functions; :class:`SwarmRestrictedAccess` is the spawner's mixin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from urllib.parse import urlsplit, urlunsplit

import docker
from docker.errors import APIError, NotFound
from traitlets import Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.egress_state import EgressState
from benchhub.labels import NETWORK, RESTRICTED_OVERLAY, USER, WORKSPACE
from benchhub.networks import host_mtu
from benchhub.subnets import SubnetPool

from ..restricted_access import RestrictedAccess, proxy_environment

__all__ = [
    "OVERLAY_ROLE",
    "SwarmRestrictedAccess",
    "gateway_environment",
    "overlay_create_kwargs",
    "proxy_address",
    "task_address",
    "use_egress_gateway",
]

OVERLAY_ROLE = RESTRICTED_OVERLAY  # the NETWORK label of a restricted workspace's overlay
VXLAN_OVERHEAD = 50  # bytes of VXLAN encapsulation an overlay's MTU must leave room for
HUB_URL_VARIABLES = ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL")


def proxy_address(subnet: str) -> str:
    """The proxy's fixed address on a workspace's overlay: the second of the subnet."""
    return str(ipaddress.IPv4Network(subnet).network_address + 2)


def overlay_create_kwargs(name: str, subnet: str, mtu: int, labels: dict[str, str]) -> dict:
    """Keyword arguments of docker-py's ``APIClient.create_network`` for a restricted
    workspace's overlay: internal, attachable (the proxy container joins it), tasks in the
    upper half of ``subnet`` (the proxy's address below it is never given to a task)."""
    net = ipaddress.IPv4Network(subnet)
    tasks = list(net.subnets(prefixlen_diff=1))[1]
    pool = docker.types.IPAMPool(
        subnet=str(net), iprange=str(tasks), gateway=str(net.network_address + 1)
    )
    return {
        "name": name,
        "driver": "overlay",
        "internal": True,
        "attachable": True,
        "check_duplicate": True,
        "ipam": docker.types.IPAMConfig(pool_configs=[pool]),
        "options": {"com.docker.network.driver.mtu": str(mtu)} if mtu else None,
        "labels": {**labels, NETWORK: OVERLAY_ROLE},
    }


def gateway_environment(environment: dict[str, str], proxy: str, hub_port: int) -> dict:
    """The workspace's environment with the hub reached through the proxy's hub port (the
    hub API's URLs point at ``proxy:hub_port``) and the proxy's forward port as the HTTP(S)
    proxy for everything else; the hub relay itself is not proxied."""
    changed = dict(environment)
    for name in HUB_URL_VARIABLES:
        if name in changed:
            parts = urlsplit(changed[name])
            changed[name] = urlunsplit(("http", f"{proxy}:{hub_port}", *parts[2:]))
    changed.update(proxy_environment(proxy, [proxy]))
    return changed


def task_address(task: dict, network: str) -> str | None:
    """A task's IPv4 address on overlay ``network`` (by name), None before it has one."""
    for attachment in task.get("NetworksAttachments") or []:
        spec = (attachment.get("Network") or {}).get("Spec") or {}
        if spec.get("Name") == network and attachment.get("Addresses"):
            return str(attachment["Addresses"][0]).split("/")[0]
    return None


def use_egress_gateway(
    config,
    docker_host: str,
    hub_host: str,
    hub_api_port: int,
    workspaces_port: int = 10180,
    hub_port: int = 8081,
) -> None:
    """Make the hub configuration ``config``'s egress service the swarm's gateway (the
    proxy on the manager's engine ``docker_host``, relaying the hub API at
    ``hub_host:hub_api_port``) and let BenchSwarmSpawner start restricted workspaces through
    it: one call, so that both sides get the same ports and engine. The hub runs on a
    manager, so ``docker_host`` is that machine's own engine,
    ``unix:///var/run/docker.sock`` (no TLS to configure for the service); the test swarm,
    whose manager is a container, gives its TCP address. Call it after
    ``drop_unsupported_services(c, keep=["egress"])``."""
    service = next((s for s in config.JupyterHub.services if s.get("name") == "egress"), None)
    if service is None:
        raise ValueError(
            "c.JupyterHub.services has no 'egress' service: keep it "
            "(drop_unsupported_services(c, keep=['egress'])) before use_egress_gateway(c, ...)"
        )
    service["command"] = [
        *service["command"],
        f"--docker-host={docker_host}",
        f"--workspaces-port={workspaces_port}",
        f"--hub-port={hub_port}",
        f"--hub-host={hub_host}",
        f"--hub-api-port={hub_api_port}",
    ]
    config.BenchSwarmSpawner.gateway_workspaces_port = workspaces_port
    config.BenchSwarmSpawner.gateway_hub_port = hub_port
    config.BenchSwarmSpawner.egress_engine_url = docker_host


class SwarmRestrictedAccess(LoggingConfigurable):
    """The spawner's side of restricted access on a swarm (mixin of BenchSwarmSpawner)."""

    gateway_workspaces_port = Integer(
        0,
        help="""The port the egress proxy publishes on the manager for the hub to reach
        restricted workspaces, e.g. 10180 (the egress service's --workspaces-port; set both
        with use_egress_gateway). 0 (the default) = restricted access is refused.""",
    ).tag(config=True)
    gateway_hub_port = Integer(
        8081,
        help="""The port on the proxy's overlay addresses that relays the hub API, e.g. 8081
        (the egress service's --hub-port): restricted workspaces' JUPYTERHUB_API_URL.""",
    ).tag(config=True)
    gateway_host = Unicode(
        help="""The address the hub reaches the proxy's published port on, e.g.
        manager.example; by default the host of client_kwargs' base_url (the manager).""",
    ).tag(config=True)
    restricted_subnet_pool = Unicode(
        "10.214.0.0/16",
        help="""The pool restricted workspaces' overlays take their subnets from, e.g.
        10.214.0.0/16 (must not overlap the site's networks).""",
    ).tag(config=True)
    restricted_subnet_prefix = Integer(
        28,
        help="""Size of each restricted workspace's overlay subnet as a prefix length, e.g.
        28 (16 addresses: the proxy, the task and each node's endpoint on the overlay).""",
    ).tag(config=True)
    overlay_mtu = Integer(
        help="""MTU of the restricted overlays, e.g. 1450; by default this machine's
        default-route MTU less VXLAN's 50 bytes (the hub runs on a manager).""",
    ).tag(config=True)
    overlay_remove_timeout = Float(
        30,
        help="""Seconds a stop waits for a restricted workspace's overlay to be removable
        (the proxy leaves it, the node lets go of the task's endpoint), e.g. 30; past it
        the overlay is left and removed at the workspace's next start.""",
    ).tag(config=True)
    egress_config_dir = Unicode(
        help="""The egress state directory shared with the egress service; by default
        c.BenchSpawner.egress_config_dir.""",
    ).tag(config=True)
    egress_load_timeout = Float(
        help="""Seconds a restricted start waits for the proxy to load the workspace's
        route and whitelist, e.g. 30; by default c.BenchSpawner.egress_load_timeout.""",
    ).tag(config=True)

    egress_engine_url = Unicode(
        help="""The engine that runs the egress proxy, as the egress service's --docker-host,
        e.g. unix:///var/run/docker.sock (the manager's own engine: the hub runs there); the
        proxy's log directory is given to squid's user as that engine maps ids. By default
        client_kwargs' base_url; use_egress_gateway sets it.""",
    ).tag(config=True)

    restricted_network = Unicode("", help="The workspace's own overlay (spawner state).")

    @default("gateway_host")
    def _default_gateway_host(self):
        url = self.client_kwargs.get("base_url") or os.environ.get("DOCKER_HOST", "")
        return urlsplit(url).hostname or ""

    @default("egress_engine_url")
    def _default_egress_engine_url(self):
        return self.client_kwargs.get("base_url") or os.environ.get("DOCKER_HOST", "")

    @default("overlay_mtu")
    def _default_overlay_mtu(self):
        return host_mtu() - VXLAN_OVERHEAD

    @default("egress_config_dir")
    def _default_egress_config_dir(self):
        return self.config.get("BenchSpawner", {}).get(
            "egress_config_dir", "/var/lib/benchhub/egress"
        )

    @default("egress_load_timeout")
    def _default_egress_load_timeout(self):
        return float(self.config.get("BenchSpawner", {}).get("egress_load_timeout", 30))

    @validate("restricted_subnet_prefix")
    def _valid_prefix(self, proposal):
        value = proposal.value
        try:
            SubnetPool(self.restricted_subnet_pool, value)
        except ValueError as e:
            raise TraitError(f"restricted_subnet_prefix: {e}") from None
        if value > 28:
            raise TraitError(
                f"restricted_subnet_prefix must be 28 or less (16 addresses); got {value}"
            )
        return value

    @property
    def restricted_enabled(self) -> bool:
        return bool(self.gateway_workspaces_port)

    @property
    def egress_state(self) -> EgressState:
        return EgressState(self.egress_config_dir, self.egress_engine_url)

    @property
    def egress_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    # ---- the overlay ------------------------------------------------------------------------

    async def make_overlay(self) -> str:
        """The workspace's own overlay, made unless it is there (a stop that could not
        remove it); returns the proxy's address on it."""
        name = f"{self.object_name}-restricted"
        try:
            found = await self.docker("inspect_network", name)
            subnet = found["IPAM"]["Config"][0]["Subnet"]
        except NotFound:
            subnet = await self._allocate_subnet()
            labels = {USER: self.user.name, WORKSPACE: self.name}
            await self.docker(
                "create_network", **overlay_create_kwargs(name, subnet, self.overlay_mtu, labels)
            )
        self.restricted_network = name
        return proxy_address(subnet)

    async def _allocate_subnet(self) -> str:
        taken = []
        for net in await self.docker("networks"):
            for config in (net.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    taken.append(config["Subnet"])
        return await asyncio.to_thread(
            self.egress_state.allocate_subnet,
            self.egress_key,
            self.restricted_subnet_pool,
            self.restricted_subnet_prefix,
            time.time(),
            taken,
        )

    async def remove_overlay(self) -> None:
        """Remove the workspace's overlay (after its service), waiting for the proxy and the
        nodes to let go of it for up to ``overlay_remove_timeout`` s; one already gone is
        success. Past the time it is left (logged) and the next start reuses it."""
        name = self.restricted_network
        if not name:
            return
        deadline = time.monotonic() + self.overlay_remove_timeout
        while True:
            try:
                await self.docker("remove_network", name)
                break
            except NotFound:
                break
            except APIError as e:
                if time.monotonic() > deadline:
                    self.log.warning("left overlay %s for the next start: %s", name, e)
                    return
                await asyncio.sleep(0.2)
        await asyncio.to_thread(
            self.egress_state.release_subnet,
            self.egress_key,
            self.restricted_subnet_pool,
            self.restricted_subnet_prefix,
            time.time(),
        )
        self.restricted_network = ""

    # ---- the egress record ------------------------------------------------------------------

    async def register_restricted(self, address: str, proxy: str, whitelist) -> None:
        """Register the running task's ``address`` with its ``whitelist`` and route, and
        wait until the proxy is on its overlay with both loaded (TimeoutError saying what to
        look at otherwise)."""
        gateway = {
            "network": self.restricted_network,
            "proxy_address": proxy,
            "prefix": self.server.base_url,
            "port": self.port,
        }
        state = self.egress_state
        stamp = await asyncio.to_thread(
            state.register,
            self.egress_key,
            self.object_name,
            address,
            list(whitelist),
            time.time(),
            gateway,
        )
        await RestrictedAccess(state).wait_loaded(self.egress_key, stamp, self.egress_load_timeout)

    async def forget_restricted(self) -> None:
        """Drop the workspace's egress record (before its service is removed: a stopped
        workspace's address never keeps its list or its route)."""
        if self.restricted_network:
            await RestrictedAccess(self.egress_state).release(self.egress_key)
