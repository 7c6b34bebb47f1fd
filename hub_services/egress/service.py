"""The egress reconciler: the proxy made to match the desired state, at once and on every pass.

The spawner writes a record per running restricted workspace
(:class:`benchhub.egress_state.EgressState`); this service is the proxy's one owner. It
watches the records' generation counter (every ``tick`` seconds, a file read) and on every
change, and every ``interval`` seconds anyway:

* renders ``squid.conf`` from the records and has squid reload it when it changed;
* starts the proxy container at once when workspaces need it and there is none; one that
  exists but stopped is started again only after ``restart_after`` seconds (an operator's
  ``docker restart`` is not fought over);
* tells the spawner which registrations the proxy has loaded (``loaded.json``), so that a
  restricted workspace is reported ready only with its whitelist in force.

On the full pass it also adopts running restricted workspaces without a record (state lost:
address from Docker, whitelist from the hub's stored options; one whose options cannot be
read stays without access: fail closed), drops records whose container no longer runs (the
address goes into quarantine), reloads squid once more (a SIGHUP that lands while squid is
still reconfiguring can be folded into the earlier one), and rotates a large access log.

On a swarm (``workspaces_port`` set, ``docker_host`` the manager's engine) the proxy runs on
the manager and is also the gateway of restricted workspaces (:mod:`.gateway`): each record
names the workspace's own overlay and server prefix; every pass joins the proxy to the
records' overlays (and leaves the others), and a registration counts as loaded only once the
proxy is on its overlay. A record is dropped when its Swarm service is gone; a running
restricted workspace whose record was lost is registered again from Swarm and the hub
(:mod:`.swarm_records`).
"""

from __future__ import annotations

import asyncio
import time

from docker.errors import NotFound
from traitlets import Dict, Float, Instance, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from benchhub.docker_engine import DockerEngine
from benchhub.egress_state import EgressState
from benchhub.hub_client import HubClient
from benchhub.labels import WORKSPACE, workspace_key
from benchhub.networks import WorkspaceNetwork
from benchhub.whitelist import normalised_entries

from .gateway import Gateway
from .metrics import EgressMetrics
from .policy import FORBIDDEN_DESTINATIONS, parse_access_log, summarise
from .proxy import EgressProxy, recent_access_log, render_conf, route_of
from .swarm_records import lost_record, overlay_of, workspace_key_of

__all__ = ["ACCESS_LOG_ROTATE_BYTES", "EgressService"]

# Past this size the service has squid rotate its access log (one older file is kept), so the
# requests users make cannot fill the host's disk: at most about twice this is kept.
ACCESS_LOG_ROTATE_BYTES = 64 * 1024 * 1024


class EgressService(LoggingConfigurable):
    """Reconciles the proxy with the records (see the module docstring). Settings are traits
    (``c.EgressService``, or the service's command line)."""

    config_dir = Unicode(
        "/var/lib/benchhub/egress",
        help="The egress state directory, shared with the spawner (its egress_config_dir).",
    ).tag(config=True)
    container = Unicode("bench-egress", help="Name of the proxy container, e.g. bench-egress.").tag(
        config=True
    )
    image = Unicode("benchhub/egress:latest", help="The squid proxy image.").tag(config=True)
    outside_network = Unicode(
        "bench-egress-out", help="The proxy's network with a route out (created if missing)."
    ).tag(config=True)
    restricted_network = Unicode(
        "bench-restricted", help="The restricted workspaces' network (the spawner makes it)."
    ).tag(config=True)
    mtu = Float(1500, help="MTU of the outside network when this service creates it.").tag(
        config=True
    )
    forbidden_destinations = List(
        Unicode(),
        list(FORBIDDEN_DESTINATIONS),
        help="""Networks the proxy never connects to, whatever a whitelist says (private and
        link-local ranges by default, so a whitelisted name cannot point into this site);
        [] allows every address, e.g. for an internal mirror.""",
    ).tag(config=True)
    interval = Float(10, help="Seconds between full passes, e.g. 10.").tag(config=True)
    tick = Float(
        0.1,
        help="""Seconds between looks at the records' generation counter, e.g. 0.1: how soon a
        new restricted workspace's whitelist is loaded after its start registered it.""",
    ).tag(config=True)
    restart_after = Float(
        5, help="Seconds a stopped proxy is left alone before this service starts it again."
    ).tag(config=True)
    start_grace = Float(
        300,
        help="""Seconds a record may exist without a running container (the spawner registers
        a workspace before its container exists; longer than any start), e.g. 300.""",
    ).tag(config=True)
    docker_host = Unicode(
        "",
        help="""The Docker engine that runs the proxy, e.g. tcp://manager:2375 (on a swarm: a
        manager's, the one the spawner uses); "" = the local engine.""",
    ).tag(config=True)
    workspaces_port = Integer(
        0,
        help="""On a swarm: the port the proxy publishes on the manager for the hub to reach
        restricted workspaces by their /user/<name>/<server>/ prefix, e.g. 10180 (the
        spawner's gateway_workspaces_port). 0 (the default) = one host, no gateway.""",
    ).tag(config=True)
    hub_port = Integer(
        8081,
        help="""On a swarm: the port on the proxy's overlay addresses that relays a
        restricted workspace to the hub API (its JUPYTERHUB_API_URL), e.g. 8081.""",
    ).tag(config=True)
    hub_host = Unicode(
        "",
        help="""On a swarm: the address the proxy reaches the hub API on, e.g. 10.0.0.5
        (the manager's own address, the hub running there).""",
    ).tag(config=True)
    hub_api_port = Integer(8081, help="On a swarm: the hub API's port on hub_host, e.g. 8081.").tag(
        config=True
    )
    hosts = Dict(
        value_trait=Unicode(),
        help="""Names the proxy resolves itself, to IPv4 addresses, e.g. {"mirror.site":
        "10.0.0.7"}: a site's internal mirror no DNS server the proxy asks knows (its
        /etc/hosts). A whitelist still has to allow the name.""",
    ).tag(config=True)
    hub = Instance(HubClient)

    @default("hub")
    def _default_hub(self):
        return HubClient()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state = EgressState(self.config_dir, self.docker_host)
        self.engine = DockerEngine(threads=4, base_url=self.docker_host or None)
        self.gateway = (
            Gateway(self.workspaces_port, self.hub_port, self.hub_host, self.hub_api_port)
            if self.workspaces_port
            else None
        )
        self.proxy = EgressProxy(
            self.state,
            self.engine,
            self.container,
            self.image,
            self.outside_network,
            int(self.mtu),
            published_port=self.workspaces_port or None,
            hosts=dict(self.hosts),
        )
        self._down_since: float | None = None
        self._loaded_conf = ""  # the squid.conf text squid was last told to load
        self._confirm_reload = False
        self.metrics = EgressMetrics(self.state.log_dir)  # /services/egress/metrics
        self.last_pass_at: float | None = None
        self.last_error = ""

    # ---- the pass -----------------------------------------------------------------------------

    async def reconcile(self, full: bool = True) -> None:
        """One pass: ``full`` adds the adoption, clean-up, confirmation and rotation."""
        if full:
            if self.gateway is None:
                await self.adopt_running()
            else:
                await self.adopt_swarm_running()
            await self._drop_stopped()
            await asyncio.to_thread(self.metrics.read_access_log)  # before it may rotate
        generation = await asyncio.to_thread(self.state.generation)
        records = await asyncio.to_thread(self.state.registered)
        if self.gateway is not None:
            records = self._routable(records)
        conf = await asyncio.to_thread(
            render_conf, self.state, records, self.forbidden_destinations, self.gateway
        )
        if records:
            await self._keep_proxy_running()
        loaded = records
        if self.gateway is not None:  # on its overlay before its route is loaded
            loaded = await self.proxy.attach(records)
        if conf != self._loaded_conf or (full and self._confirm_reload):
            await self.proxy.reload()
            self._confirm_reload = conf != self._loaded_conf
            self._loaded_conf = conf
        if await self.proxy.healthy():
            await asyncio.to_thread(self.state.mark_loaded, generation, loaded)
        if full and await asyncio.to_thread(self.proxy.access_log_size) > ACCESS_LOG_ROTATE_BYTES:
            self.log.info(
                "rotating the proxy's access log (over %d MiB)", ACCESS_LOG_ROTATE_BYTES >> 20
            )
            await self.proxy.rotate_log()

    def _routable(self, records: dict[str, dict]) -> dict[str, dict]:
        """(A swarm) The records the gateway can route to: a record without its overlay or
        with a prefix squid cannot match is left out (never loaded: its start fails)."""
        kept = {}
        for key, record in records.items():
            try:
                if route_of(record) is not None:
                    kept[key] = record
                    continue
            except (KeyError, TypeError, ValueError) as e:
                self.log.warning("no gateway route for %s: %s", key, e)
                continue
            self.log.warning("record %s names no overlay: not served on a swarm", key)
        return kept

    async def _keep_proxy_running(self) -> None:
        """Start a missing proxy at once; a stopped one after ``restart_after`` seconds."""
        if await self.proxy.healthy():
            self._down_since = None
            return
        now = time.monotonic()
        exists = await self.proxy.exists()
        self._down_since = self._down_since or now
        if exists and now - self._down_since < self.restart_after:
            return
        net = await self._network() if self.gateway is None else None
        if net is None and self.gateway is None:
            return  # no restricted network yet: the spawner makes it before it registers
        if exists:
            self.log.warning("egress proxy down for %.0f s: starting it", now - self._down_since)
        await self.proxy.ensure(net.name if net else None, net.proxy_address if net else None)
        self._loaded_conf = await asyncio.to_thread(self.proxy.conf_text)  # read at start
        self._down_since = None

    async def adopt_running(self) -> None:
        """Register running restricted workspaces that have no record (see the module)."""
        net = await self._network()
        if net is None:
            return
        registered = await asyncio.to_thread(self.state.registered)
        found = await self.engine.call(
            "containers", filters={"network": net.name, "label": WORKSPACE, "status": "running"}
        )
        missing = [c for c in found if workspace_key(c["Labels"]) not in registered]
        if not missing:
            return
        options = await self.hub.workspace_options()
        for container in missing:
            key = workspace_key(container["Labels"])
            if key not in options:
                self.log.warning("no options for running workspace %s: left without access", key)
                continue
            address = container["NetworkSettings"]["Networks"][net.name]["IPAddress"]
            name = container["Names"][0].lstrip("/")
            entries = normalised_entries(options[key].get("whitelist") or [])
            await asyncio.to_thread(
                self.state.adopt, key, name, address, entries, net.subnet, time.time()
            )
            self.log.info("adopted running workspace %s at %s", key, address)

    async def adopt_swarm_running(self) -> None:
        """(A swarm) Register running restricted workspaces whose record was lost, from
        their Swarm service, overlay and task and the hub's model of their server."""
        registered = await asyncio.to_thread(self.state.registered)
        services = await self.engine.call("services", filters={"label": WORKSPACE})
        lost = [s for s in services if workspace_key_of(s) not in (None, *registered)]
        lost = [s for s in lost if overlay_of(s)]
        if not lost:
            return
        servers = {server.key: server.model async for server in self.hub.active_servers()}
        for service in lost:
            key = workspace_key_of(service)
            try:
                network = await self.engine.call("inspect_network", overlay_of(service))
            except NotFound:
                continue
            tasks = await self.engine.call("tasks", filters={"service": service["ID"]})
            record = lost_record(service, network, tasks, servers.get(key) or {})
            if record is None:
                continue
            await asyncio.to_thread(
                self.state.register,
                key,
                record["container"],
                record["address"],
                record["entries"],
                time.time(),
                record["gateway"],
            )
            self.log.info("adopted running workspace %s at %s", key, record["address"])

    async def _drop_stopped(self) -> None:
        for key, record in (await asyncio.to_thread(self.state.registered)).items():
            starting = time.time() - record.get("registered_at", 0) < self.start_grace
            if not starting and not await self._running(record.get("container", "")):
                self.log.info("dropping %s: its container is not running", key)
                await asyncio.to_thread(self.state.forget, key, time.time())

    async def _running(self, container: str) -> bool:
        if self.gateway is not None:  # a swarm's record names the workspace's service
            try:
                await self.engine.call("inspect_service", container)
                return True
            except NotFound:
                return False
        info = await self.engine.inspect(container)
        return bool(info and info["State"]["Running"])

    async def _network(self) -> WorkspaceNetwork | None:
        try:
            net = await self.engine.call("inspect_network", self.restricted_network)
        except NotFound:
            return None
        ipam = net["IPAM"]["Config"][0]
        return WorkspaceNetwork(net["Name"], net["Id"], ipam["Subnet"], ipam["Gateway"])

    # ---- the loop -----------------------------------------------------------------------------

    async def loop(self) -> None:
        """A full pass every ``interval`` seconds; a quick one as soon as the records change."""
        seen, last_full = None, float("-inf")
        while True:
            generation = await asyncio.to_thread(self.state.generation)
            full = time.monotonic() - last_full >= self.interval
            if full or generation != seen:
                try:
                    await self.reconcile(full=full)
                    self.last_pass_at, self.last_error = time.time(), ""
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    self.log.error("egress reconcile failed", exc_info=True)
                seen = generation
                if full:
                    last_full = time.monotonic()
            await asyncio.sleep(self.tick)

    # ---- what the API shows -------------------------------------------------------------------

    def refusals(self, key: str) -> dict:
        """The workspace's refused hosts in the proxy's recent access log. Blocking."""
        record = self.state.registered().get(key)
        if record is None:
            return {"workspace": key, "address": None, "refusals": []}
        found = parse_access_log(recent_access_log(self.state.log_dir))
        return {
            "workspace": key,
            "address": record["address"],
            "refusals": summarise(found, record["address"]),
        }
