"""The egress hub service: keeps the proxy honest and shows users what it refused.

Started by the hub (``c.JupyterHub.services``), authenticated with HubOAuth, holding only
``list:users``, ``read:users`` and ``read:servers``. Every ``interval`` seconds it reconciles:
a running restricted workspace without a record is adopted (its address from Docker, its
whitelist from the hub's stored options), a registered
workspace whose container no longer runs is dropped (its address quarantined), the proxy is
started if workspaces need it, and squid reloads when its configuration changed. Endpoints
(under the service prefix):

- ``GET  api/health`` — proxy running or down, and how many workspaces it serves;
- ``GET  api/refusals/<user>/<workspace>`` — refused hosts with counts and times (the owner or
  an admin);
- ``GET  /`` — a page listing the user's restricted workspaces and their refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import html
import json
import logging
import os
import signal
import time

import docker
from docker.errors import NotFound
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web
from tornado.httpclient import AsyncHTTPClient

from hub_services.file_tail import open_regular_file, tail_lines

from .policy import FORBIDDEN_DESTINATIONS, parse_access_log, summarise
from .proxy import EgressProxy, EgressState
from .workspace import WorkspaceNetwork

log = logging.getLogger("benchhub.egress")

# How much of the end of the proxy's access log a refusals request reads (4 MiB: some
# 20 000 requests of all restricted workspaces together).
ACCESS_LOG_WINDOW = 4 * 1024 * 1024
# Past this size the service has squid rotate its access log (one older file is kept), so
# requests users make cannot fill the host's disk: at most about twice this is kept.
ACCESS_LOG_ROTATE_BYTES = 64 * 1024 * 1024


class EgressService:
    """Reconciles registrations with running containers and the proxy container."""

    def __init__(
        self,
        state: EgressState,
        proxy: EgressProxy,
        restricted_network: str,
        restart_after: float = 5,
    ):
        self.state = state
        self.proxy = proxy
        self.restricted_network = restricted_network
        self.restart_after = restart_after
        self.hub = HubWorkspaces(
            os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
        )
        self.start_grace = 300.0  # longer than any workspace start (Spawner.start_timeout)
        self._down_since: float | None = None
        self._loaded_conf = ""  # the squid.conf text this service last reloaded squid with
        self._confirm_reload = False
        self.client = docker.APIClient(version="auto", timeout=30)

    async def _running(self, container: str) -> bool:
        try:
            info = await asyncio.to_thread(self.client.inspect_container, container)
        except NotFound:
            return False
        return bool(info["State"]["Running"])

    async def adopt_running(self) -> None:
        """Register running restricted workspaces that have no record (e.g. state lost), with
        the whitelist from the hub's stored options. A workspace whose options cannot be read
        stays without outside access (fail closed) until the next pass."""
        net = await self._network()
        if net is None:
            return
        registered = await asyncio.to_thread(self.state.registered)
        found = await asyncio.to_thread(
            self.client.containers,
            filters={"network": net.name, "label": "org.benchhub.workspace", "status": "running"},
        )
        missing = [c for c in found if _key(c) not in registered]
        if not missing:
            return
        options = await self.hub.workspace_options()
        for c in missing:
            opts = options.get(_key(c))
            if opts is None:
                log.warning("no options for running workspace %s: left without access", _key(c))
                continue
            address = c["NetworkSettings"]["Networks"][net.name]["IPAddress"]
            name = c["Names"][0].lstrip("/")
            whitelist = opts.get("whitelist") or []
            await asyncio.to_thread(
                self.state.adopt, _key(c), name, address, whitelist, net.subnet, time.time()
            )
            log.info("adopted running workspace %s at %s", _key(c), address)

    async def reconcile(self) -> None:
        await self.adopt_running()
        for key, record in (await asyncio.to_thread(self.state.registered)).items():
            # a record is written before its container exists: leave starting ones alone
            starting = time.time() - record.get("registered_at", 0) < self.start_grace
            if not starting and not await self._running(record.get("container", "")):
                log.info("dropping %s: its container is not running", key)
                await asyncio.to_thread(self.state.forget, key, time.time())
        if await asyncio.to_thread(self.state.registered) and await self._proxy_down_long():
            net = await self._network()
            if net is not None:
                log.warning("egress proxy down for %.0f s: starting it", self.restart_after)
                await self.proxy.ensure(net.name, net.proxy_address)
                self._down_since = None
        await asyncio.to_thread(self.state.render)
        if await asyncio.to_thread(self._access_log_size) > ACCESS_LOG_ROTATE_BYTES:
            log.info("rotating the proxy's access log (over %d MiB)", ACCESS_LOG_ROTATE_BYTES >> 20)
            await self.proxy.rotate_log()
        # Reload when the file differs from what this service last had squid load (the spawner
        # changes it too), and once more on the next pass: a SIGHUP that lands while squid is
        # still reconfiguring from an earlier one can be folded into it, leaving an older file
        # loaded until the next reload.
        conf = await asyncio.to_thread(self._conf_text)
        if conf != self._loaded_conf or self._confirm_reload:
            await self.proxy.reload()
            self._confirm_reload = conf != self._loaded_conf
            self._loaded_conf = conf

    async def _proxy_down_long(self) -> bool:
        """Down for ``restart_after`` seconds (an operator's restart is not fought over)."""
        if await self.proxy.healthy():
            self._down_since = None
            return False
        now = time.monotonic()
        self._down_since = self._down_since or now
        return now - self._down_since >= self.restart_after

    def _conf_text(self) -> str:
        try:
            return self.state.conf_path.read_text()
        except FileNotFoundError:
            return ""

    async def _network(self) -> WorkspaceNetwork | None:
        try:
            net = await asyncio.to_thread(self.client.inspect_network, self.restricted_network)
        except NotFound:
            return None
        ipam = net["IPAM"]["Config"][0]
        return WorkspaceNetwork(net["Name"], net["Id"], ipam["Subnet"], ipam["Gateway"])

    async def loop(self, interval: float) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("egress reconcile failed", exc_info=True)
            await asyncio.sleep(interval)

    def refusals(self, key: str) -> dict:
        """The workspace's refused hosts in the proxy's recent access log (its last
        :data:`ACCESS_LOG_WINDOW` bytes: every user's requests make the log grow, and a
        request must not cost in proportion to it). Blocking: call it in a thread."""
        record = self.state.registered().get(key)
        if record is None:
            return {"workspace": key, "address": None, "refusals": []}
        found = parse_access_log(self._recent_access_log())
        return {
            "workspace": key,
            "address": record["address"],
            "refusals": summarise(found, record["address"]),
        }

    def _access_log_size(self) -> int:
        try:
            return (self.state.log_dir / "access.log").lstat().st_size
        except FileNotFoundError:
            return 0

    def _recent_access_log(self) -> list[str]:
        """The lines among the access log's last :data:`ACCESS_LOG_WINDOW` bytes, the end of
        the previous (rotated) log first when the current one is shorter ([] without a log).
        The files are squid's, in a directory the proxy container writes: a link there is not
        followed."""
        lines: list[str] = []
        budget = ACCESS_LOG_WINDOW
        for name in ("access.log", "access.log.0"):
            try:
                fd = open_regular_file(self.state.log_dir / name)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                lines = tail_lines(fd, max_bytes=budget) + lines
            finally:
                os.close(fd)
            budget -= min(size, budget)
            if budget <= 0:
                break
        return lines


def _key(container: dict) -> str:
    labels = container["Labels"]
    return f"{labels['org.benchhub.user']}/{labels['org.benchhub.workspace']}"


class HubWorkspaces:
    """The hub's stored options of every active workspace, read with the service's token."""

    def __init__(self, api_url: str, token: str):
        self.api_url = api_url.rstrip("/")
        self.token = token

    async def workspace_options(self) -> dict[str, dict]:
        client = AsyncHTTPClient()
        options, offset = {}, 0
        while True:
            url = f"{self.api_url}/users?state=active&offset={offset}&limit=200"
            resp = await client.fetch(
                url, headers={"Authorization": f"token {self.token}"}, request_timeout=30
            )
            users = json.loads(resp.body)
            for user in users:
                for name, server in user.get("servers", {}).items():
                    options[f"{user['name']}/{name}"] = server.get("user_options") or {}
            if len(users) < 200:
                return options
            offset += 200


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> EgressService:
        return self.settings["egress"]

    def allowed(self, user_name: str) -> bool:
        user = self.current_user
        return user["name"] == user_name or user.get("admin", False)


class HealthHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write({
            "proxy": "running" if await self.service.proxy.healthy() else "down",
            "workspaces": len(await asyncio.to_thread(self.service.state.registered)),
        })  # fmt: skip


class RefusalsHandler(BaseHandler):
    @web.authenticated
    async def get(self, user_name: str, workspace: str):
        if not self.allowed(user_name):
            raise web.HTTPError(403, f"only {user_name} or an admin may see these refusals")
        self.write(await asyncio.to_thread(self.service.refusals, f"{user_name}/{workspace}"))


class PageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        name = self.current_user["name"]
        registered = await asyncio.to_thread(self.service.state.registered)
        rows = []
        for key in sorted(k for k in registered if k.startswith(f"{name}/")):
            data = await asyncio.to_thread(self.service.refusals, key)
            cells = (
                "".join(
                    f"<tr><td>{html.escape(r['host'])}</td><td>{r['count']}</td>"
                    f"<td>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r['last']))}</td></tr>"
                    for r in data["refusals"]
                )
                or "<tr><td colspan=3>nothing refused</td></tr>"
            )
            rows.append(
                f"<h2>{html.escape(key)}</h2><table class='table'><tr><th>Refused host</th>"
                f"<th>Requests</th><th>Last (UTC)</th></tr>{cells}</table>"
            )
        healthy = await self.service.proxy.healthy()
        self.write(
            "<!doctype html><title>Egress</title><h1>Restricted workspaces</h1>"
            f"<p>Egress proxy: {'running' if healthy else 'DOWN: no outside access'}</p>"
            + ("".join(rows) or "<p>No running restricted workspace.</p>")
            + "<p>Ask an admin to add a refused host to the workspace's whitelist; it applies at"
            " the next start.</p>"
        )


def make_app(service: EgressService, prefix: str) -> web.Application:
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            (url_path_join(prefix, r"api/refusals/([^/]+)/([^/]+)"), RefusalsHandler),
            (prefix, PageHandler),
        ],
        egress=service,
        cookie_secret=os.urandom(32),
    )


def die_with_parent() -> None:
    """Exit when the hub that started this service dies (even by SIGKILL): the next hub starts
    its own, and two services must not reconcile the same proxy. Linux prctl(PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the hub", exc_info=True)
    if os.getppid() == 1:  # the hub died before the request took effect
        raise SystemExit("the hub that started the egress service is gone")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-dir", required=True)
    p.add_argument("--container", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--outside-network", required=True)
    p.add_argument("--restricted-network", required=True)
    p.add_argument("--mtu", type=int, default=1500)
    p.add_argument("--interval", type=float, default=10)
    p.add_argument("--restart-after", type=float, default=5)
    p.add_argument("--forbidden", default=json.dumps(list(FORBIDDEN_DESTINATIONS)))
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s egress] %(message)s"
    )
    die_with_parent()
    state = EgressState(args.config_dir, json.loads(args.forbidden))
    proxy = EgressProxy(state, args.container, args.image, args.outside_network, args.mtu)
    service = EgressService(state, proxy, args.restricted_network, args.restart_after)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/egress/")
    app = make_app(service, prefix)
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    app.listen(port, "127.0.0.1")
    loop = ioloop.IOLoop.current()
    loop.spawn_callback(service.loop, args.interval)
    log.info("egress service on port %s, prefix %s", port, prefix)
    loop.start()
