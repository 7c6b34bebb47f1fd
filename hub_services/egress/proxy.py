"""The egress proxy: its configuration rendered from the desired state, and its container.

The egress service is the proxy's one owner: the spawner only writes the desired state
(:class:`benchhub.egress_state.EgressState`, a record per running restricted workspace);
the service renders ``squid.conf`` from the records (:func:`render_conf`), starts the squid
container when workspaces need it (:meth:`EgressProxy.ensure`) and signals it (SIGHUP =
``squid -k reconfigure``, which keeps established connections of other workspaces; SIGUSR1
rotates the access log). On a swarm (``published_port``) the proxy is also the gateway of
restricted workspaces (:mod:`.gateway`): it publishes the workspaces port on the manager and
:meth:`EgressProxy.attach` joins it to each workspace's own overlay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import docker
from docker.errors import NotFound

from benchhub.atomic import atomic_write
from benchhub.container_defaults import LOG_CONFIG
from benchhub.docker_engine import DockerEngine
from benchhub.egress_state import EgressState
from benchhub.file_tail import open_regular_file, tail_lines
from benchhub.labels import NETWORK, ROLE
from benchhub.networks import EGRESS_PROXY_PORT
from benchhub.whitelist import parse_whitelist

from .gateway import Gateway, WorkspaceRoute, gateway_lines
from .policy import WorkspaceEgress, normalise, render_squid_conf

log = logging.getLogger("hub_services.egress")

SQUID_PORT = EGRESS_PROXY_PORT
# How much of the end of the proxy's access log a refusals request reads (4 MiB: some
# 20 000 requests of all restricted workspaces together).
ACCESS_LOG_WINDOW = 4 * 1024 * 1024


def route_of(record: dict) -> WorkspaceRoute | None:
    """The gateway's route to a swarm workspace's record (None for a single-host record);
    ValueError when the record's prefix or port cannot be a route."""
    gateway = record.get("gateway")
    if not gateway:
        return None
    return WorkspaceRoute(gateway["prefix"], record["address"], int(gateway["port"]))


def render_conf(
    state: EgressState,
    records: dict[str, dict],
    forbidden_destinations,
    gateway: Gateway | None = None,
) -> str:
    """Write ``squid.conf`` for the workspaces of ``records`` (atomically: the proxy mounts
    the directory and reads the new file at its next reload; not at all when the file already
    says the same) and return its text; with ``gateway`` (a swarm), also the gateway's lines
    for the records' routes. Blocking."""
    workspaces = []
    for rec in records.values():
        entries, _ = parse_whitelist(rec["entries"])
        workspaces.append(WorkspaceEgress(rec["key"], rec["address"], tuple(normalise(entries))))
    routes = [route for route in map(route_of, records.values()) if route is not None]
    conf = render_squid_conf(
        workspaces,
        http_port=EGRESS_PROXY_PORT,
        access_log="/var/log/bench-egress/access.log",
        # no PID file: it survives a `docker restart` in the container's layer and squid
        # then refuses to start ("already running" when its new PID matches the old one);
        # reloads are a SIGHUP through Docker, which needs no PID file
        pid_filename="none",
        forbidden_destinations=tuple(forbidden_destinations),
        gateway=gateway_lines(gateway, routes) if gateway else (),
    )
    with state.locked():
        try:
            current = state.conf_path.read_text()
        except (OSError, UnicodeDecodeError):
            current = None
        if current != conf:  # rendered every pass: written only when it changed
            atomic_write(state.conf_path, conf)
    return conf


def recent_access_log(log_dir: Path, window: int = ACCESS_LOG_WINDOW) -> list[str]:
    """The lines among the access log's last ``window`` bytes, the end of the previous
    (rotated) log first when the current one is shorter ([] without a log): every user's
    requests make the log grow, and showing refusals must not cost in proportion to it. The
    files are squid's, in a directory the proxy container writes: a link there is not
    followed. Blocking."""
    lines: list[str] = []
    budget = window
    for name in ("access.log", "access.log.0"):
        try:
            fd = open_regular_file(log_dir / name)
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


class EgressProxy:
    """The squid container: on the restricted network (fixed address) and an outside one;
    on a swarm on the outside one, joined to each restricted workspace's overlay
    (:meth:`attach`), with ``published_port`` (the gateway's workspaces port) published on
    its engine's host."""

    def __init__(
        self,
        state: EgressState,
        engine: DockerEngine,
        container: str,
        image: str,
        outside_network: str,
        mtu: int,
        published_port: int | None = None,
        hosts: dict[str, str] | None = None,
    ):
        self.state = state
        self.engine = engine
        self.container = container
        self.image = image
        self.outside_network = outside_network
        self.mtu = mtu
        self.published_port = published_port
        self.hosts = hosts or {}

    async def _signal(self, signal: str) -> None:
        try:
            await self.engine.call("kill", self.container, signal=signal)
        except NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: not running (it reads the files when started)
                raise

    async def reload(self) -> None:
        """Ask squid to re-read squid.conf (SIGHUP); a stopped proxy reads it when started."""
        await self._signal("HUP")

    async def rotate_log(self) -> None:
        """Ask squid to start a new access log (SIGUSR1 = ``squid -k rotate``; with
        ``logfile_rotate 1`` it keeps the previous one as ``access.log.0``)."""
        await self._signal("USR1")

    async def healthy(self) -> bool:
        info = await self.engine.inspect(self.container)
        return bool(info and info["State"]["Running"])

    async def exists(self) -> bool:
        return await self.engine.inspect(self.container) is not None

    def conf_text(self) -> str:
        try:
            return self.state.conf_path.read_text()
        except FileNotFoundError:
            return ""

    def access_log_size(self) -> int:
        try:
            return (self.state.log_dir / "access.log").lstat().st_size
        except FileNotFoundError:
            return 0

    async def ensure(self, restricted_network: str | None, address: str | None) -> None:
        """Start the proxy container if it does not run (idempotent); it reads the
        ``squid.conf`` already rendered. ``restricted_network`` None: a swarm's gateway
        (joined to workspaces' overlays by :meth:`attach`)."""
        if await self.healthy():
            return
        await self.engine.remove(self.container)
        await self._ensure_network(self.outside_network)
        published = [self.published_port] if self.published_port else []
        host_config = await self.engine.call(
            "create_host_config",
            binds={
                # the directory, not the file: an atomic replace makes a new file, which a
                # file bind mount would never show
                str(self.state.squid_dir): {"bind": "/etc/bench-egress", "mode": "ro"},
                str(self.state.log_dir): {"bind": "/var/log/bench-egress", "mode": "rw"},
            },
            network_mode=self.outside_network,
            port_bindings={port: port for port in published} or None,
            extra_hosts=dict(self.hosts) or None,
            # no forwarding: the proxy is an application gateway, never a router; no IPv6 path
            sysctls={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.disable_ipv6": "1"},
            cap_drop=["ALL"],
            cap_add=["SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE"],
            security_opt=["no-new-privileges:true"],
            restart_policy={"Name": "unless-stopped"},
            # squid's own messages (-d1) go to the engine's log file: bounded like a workspace's
            log_config=LOG_CONFIG,
        )
        await self.engine.call(
            "create_container",
            self.image,
            name=self.container,
            host_config=host_config,
            labels={ROLE: "egress-proxy"},
            ports=published or None,
        )
        if restricted_network:
            await self.engine.call(
                "connect_container_to_network",
                self.container,
                restricted_network,
                ipv4_address=address,
            )
        await self.engine.call("start", self.container)
        await self._wait_listening()

    async def _listening_address(self) -> tuple[str, int]:
        """Where this host reaches squid: its published port on its engine's host (a
        swarm's manager: the proxy's own networks are that machine's), else its forward
        port on the outside network."""
        if self.published_port:
            host = urlsplit(self.engine.base_url or "").hostname or "127.0.0.1"
            return host, self.published_port
        info = await self.engine.inspect(self.container)
        return info["NetworkSettings"]["Networks"][self.outside_network]["IPAddress"], SQUID_PORT

    async def _wait_listening(self, limit_s: float = 20) -> None:
        """Return once squid accepts connections (a fresh proxy needs a second or two)."""
        host, port = await self._listening_address()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
                writer.close()
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(0.1)
        raise RuntimeError(f"egress proxy {self.container} did not listen within {limit_s:.0f} s")

    async def attach(self, records: dict[str, dict]) -> dict[str, dict]:
        """(A swarm) Join the proxy to each record's overlay at the record's proxy address,
        leave every other network but the outside one (a stopped workspace's overlay can
        then be removed), and return the records whose overlay the proxy is on. One that
        cannot be joined (its network gone meanwhile) is left out, and logged."""
        info = await self.engine.inspect(self.container)
        if not info or not info["State"]["Running"]:
            return {}
        joined = info["NetworkSettings"]["Networks"] or {}
        wanted = {rec["gateway"]["network"]: rec for rec in records.values()}
        for name in joined:
            if name != self.outside_network and name not in wanted:
                try:
                    await self.engine.call(
                        "disconnect_container_from_network", self.container, name, force=True
                    )
                except NotFound:
                    pass
        attached = {}
        for key, rec in records.items():
            network, address = rec["gateway"]["network"], rec["gateway"]["proxy_address"]
            if network not in joined:
                try:
                    await self.engine.call(
                        "connect_container_to_network",
                        self.container,
                        network,
                        ipv4_address=address,
                    )
                except docker.errors.APIError as e:
                    log.warning("cannot join the proxy to %s (%s): %s", network, key, e)
                    continue
            elif (joined[network].get("IPAddress") or address) != address:
                log.warning("the proxy is on %s at another address than %s", network, address)
                continue
            attached[key] = rec
        return attached

    async def _ensure_network(self, name: str) -> None:
        try:
            await self.engine.call("inspect_network", name)
        except NotFound:
            await self.engine.call(
                "create_network",
                name,
                driver="bridge",
                internal=False,
                check_duplicate=True,
                options={"com.docker.network.driver.mtu": str(self.mtu)},
                labels={NETWORK: "egress-outside"},
            )
