"""The egress proxy's desired state on disk, and the proxy container itself.

Shared by the spawner (register a restricted workspace before its server starts, forget it on
stop) and the egress service (reconcile after a restart, health). Layout of ``config_dir``::

    workspaces/<user>%2F<workspace>.json  one per running restricted workspace: address + list
                                         (the key URL-quoted: unambiguous for any names)
    squid/squid.conf                     rendered from all of them (atomic replace; the proxy
                                         mounts the directory, so it sees each new file)
    addresses.json                       the address book (see addresses.py)
    log/access.log                       squid's access log (read for refusals)

Every change re-renders ``squid.conf`` under an exclusive lock and signals squid (SIGHUP =
``squid -k reconfigure``), which keeps established connections of other workspaces.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import docker
from docker.errors import NotFound

from bench_spawner.container import LOG_CONFIG
from bench_spawner.whitelist import parse_whitelist

from .addresses import AddressBook
from .policy import FORBIDDEN_DESTINATIONS, WorkspaceEgress, normalise, render_squid_conf

SQUID_PORT = 3128
PROXY_UID = 13  # Debian's "proxy" user, which squid runs as inside the image


class EgressState:
    """Files under ``config_dir``; all methods are blocking (call them via a thread)."""

    def __init__(
        self, config_dir: str | os.PathLike, forbidden_destinations=FORBIDDEN_DESTINATIONS
    ):
        self.dir = Path(config_dir)
        self.forbidden_destinations = tuple(forbidden_destinations)
        self.workspaces_dir = self.dir / "workspaces"
        self.squid_dir = self.dir / "squid"
        self.conf_path = self.squid_dir / "squid.conf"
        self.log_dir = self.dir / "log"

    @contextmanager
    def locked(self):
        self.workspaces_dir.mkdir(parents=True, exist_ok=True)
        self.squid_dir.mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.log_dir, PROXY_UID, PROXY_UID)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _book(self, subnet: str | None) -> AddressBook | None:
        """The stored book (a new one for another subnet); None if none and no subnet given."""
        path = self.dir / "addresses.json"
        if path.exists():
            book = AddressBook.from_dict(json.loads(path.read_text()))
            if subnet is None or book.subnet == subnet:
                return book
        return AddressBook(subnet) if subnet else None

    def assign(self, key: str, subnet: str, now: float) -> str:
        """The workspace's address on the restricted network (stable, never recently reused)."""
        with self.locked():
            book = self._book(subnet)
            address = book.assign(key, now)
            self._write(self.dir / "addresses.json", json.dumps(book.to_dict()))
            return address

    def register(self, key: str, container: str, address: str, whitelist: list[str]) -> None:
        """Record a workspace's list and re-render squid.conf."""
        entries, _ = parse_whitelist(whitelist)
        record = {
            "key": key,
            "container": container,
            "address": address,
            "entries": [str(e) for e in entries],
            "registered_at": time.time(),
        }
        with self.locked():
            self._write(self._record_path(key), json.dumps(record))
            self._render()

    def adopt(
        self, key: str, container: str, address: str, whitelist: list[str], subnet: str, now: float
    ) -> None:
        """Take in a running workspace whose record was lost (its address is kept)."""
        with self.locked():
            book = self._book(subnet)
            book.adopt(key, address, now)
            self._write(self.dir / "addresses.json", json.dumps(book.to_dict()))
        self.register(key, container, address, whitelist)

    def forget(self, key: str, now: float) -> bool:
        """Drop a stopped workspace's list and quarantine its address; False if it had none."""
        with self.locked():
            paths = [p for p in self.workspaces_dir.glob("*.json") if _key_of(p) == key]
            if not paths:
                return False
            for path in paths:  # also a record named the old way ("user--workspace.json")
                path.unlink()
            book = self._book(None)
            if book is not None:
                book.release(key, now)
                self._write(self.dir / "addresses.json", json.dumps(book.to_dict()))
            self._render()
            return True

    def _record_path(self, key: str) -> Path:
        """The record file of ``key`` ("user/workspace"). Quoting "/" (and "%") makes it
        unambiguous: with "--" as the separator, user "bob--proj"'s workspace "2" and user
        "bob"'s "proj--2" shared a file."""
        return self.workspaces_dir / f"{quote(key, safe='')}.json"

    def registered(self) -> dict[str, dict]:
        return {
            rec["key"]: rec
            for rec in (json.loads(p.read_text()) for p in self.workspaces_dir.glob("*.json"))
        }

    def render(self) -> None:
        with self.locked():
            self._render()

    def _render(self) -> None:
        workspaces = []
        for rec in self.registered().values():
            entries, _ = parse_whitelist(rec["entries"])
            workspaces.append(
                WorkspaceEgress(rec["key"], rec["address"], tuple(normalise(entries)))
            )
        conf = render_squid_conf(
            workspaces,
            http_port=SQUID_PORT,
            access_log="/var/log/bench-egress/access.log",
            # no PID file: it survives a `docker restart` in the container's layer and squid
            # then refuses to start ("already running" when its new PID matches the old one);
            # reloads are a SIGHUP through Docker, which needs no PID file
            pid_filename="none",
            forbidden_destinations=self.forbidden_destinations,
        )
        self._write(self.conf_path, conf)

    def access_log_lines(self) -> list[str]:
        try:
            return (self.log_dir / "access.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []


def _key_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("key")
    except (OSError, ValueError):
        return None


class EgressProxy:
    """The squid container: on the restricted network (fixed address) and an outside one."""

    def __init__(
        self, state: EgressState, container: str, image: str, outside_network: str, mtu: int
    ):
        self.state = state
        self.container = container
        self.image = image
        self.outside_network = outside_network
        self.mtu = mtu
        self._client: docker.APIClient | None = None  # made in a thread: it asks the engine

    async def _docker(self, method: str, *args, **kwargs):
        def call():
            if self._client is None:
                self._client = docker.APIClient(version="auto", timeout=60)
            return getattr(self._client, method)(*args, **kwargs)

        return await asyncio.to_thread(call)

    async def reload(self) -> None:
        """Ask squid to re-read squid.conf (SIGHUP); a stopped proxy reads it when started."""
        try:
            await self._docker("kill", self.container, signal="HUP")
        except NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: not running; it reads the file when started
                raise

    async def rotate_log(self) -> None:
        """Ask squid to start a new access log (SIGUSR1 = ``squid -k rotate``; with
        ``logfile_rotate 1`` it keeps the previous one as ``access.log.0``)."""
        try:
            await self._docker("kill", self.container, signal="USR1")
        except NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # not running: nothing is being written
                raise

    async def healthy(self) -> bool:
        try:
            info = await self._docker("inspect_container", self.container)
        except NotFound:
            return False
        return bool(info["State"]["Running"])

    async def ensure(self, restricted_network: str, address: str) -> None:
        """Start the proxy container if it does not run (idempotent)."""
        if await self.healthy():
            return
        await asyncio.to_thread(self.state.render)
        try:
            await self._docker("remove_container", self.container, force=True)
        except NotFound:
            pass
        await self._ensure_network(self.outside_network, internal=False)
        host_config = await self._docker(
            "create_host_config",
            binds={
                # the directory, not the file: an atomic replace makes a new file, which a
                # file bind mount would never show
                str(self.state.squid_dir): {"bind": "/etc/bench-egress", "mode": "ro"},
                str(self.state.log_dir): {"bind": "/var/log/bench-egress", "mode": "rw"},
            },
            network_mode=self.outside_network,
            # no forwarding: the proxy is an application gateway, never a router; no IPv6 path
            sysctls={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.disable_ipv6": "1"},
            cap_drop=["ALL"],
            cap_add=["SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE"],
            security_opt=["no-new-privileges:true"],
            restart_policy={"Name": "unless-stopped"},
            # squid's own messages (-d1) go to the engine's log file: bounded like a workspace's
            log_config=LOG_CONFIG,
        )
        await self._docker(
            "create_container",
            self.image,
            name=self.container,
            host_config=host_config,
            labels={"org.benchhub.role": "egress-proxy"},
        )
        await self._docker(
            "connect_container_to_network",
            self.container,
            restricted_network,
            ipv4_address=address,
        )
        await self._docker("start", self.container)
        await self._wait_listening()

    async def _wait_listening(self, limit_s: float = 20) -> None:
        """Return once squid accepts connections (a fresh proxy needs a second or two)."""
        info = await self._docker("inspect_container", self.container)
        outside = info["NetworkSettings"]["Networks"][self.outside_network]["IPAddress"]
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(outside, SQUID_PORT), 1)
                writer.close()
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(0.1)
        raise RuntimeError(f"egress proxy {self.container} did not listen within {limit_s:.0f} s")

    async def _ensure_network(self, name: str, internal: bool) -> None:
        try:
            await self._docker("inspect_network", name)
        except NotFound:
            await self._docker(
                "create_network", name, driver="bridge", internal=internal, check_duplicate=True,
                options={"com.docker.network.driver.mtu": str(self.mtu)},
                labels={"org.benchhub.network": "egress-outside"},
            )  # fmt: skip
