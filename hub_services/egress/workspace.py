"""What a restricted workspace needs from the egress side, as the spawner uses it.

``prepare`` (before the container is created): assign the workspace its fixed address on the
restricted network, make sure the proxy runs, register the workspace's whitelist with it and
reload squid; return the container settings (address, DNS, proxy environment). The network
and its host firewall are the spawner's (``bench_spawner.networks``), made before this.
``release`` (after the container is gone): drop the list, quarantine the address, reload.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass

from .proxy import SQUID_PORT, EgressProxy, EgressState


@dataclass(frozen=True)
class WorkspaceNetwork:
    """Facts about a Docker network workspaces join."""

    name: str
    id: str
    subnet: str
    gateway: str

    @property
    def proxy_address(self) -> str:
        """The proxy's fixed address: the first after the gateway (reserved in the book)."""
        return str(ipaddress.ip_network(self.subnet).network_address + 2)


@dataclass(frozen=True)
class RestrictedSettings:
    """Container settings for one restricted workspace."""

    address: str
    dns: list[str]
    environment: dict[str, str]


def proxy_environment(proxy_address: str, no_proxy: list[str]) -> dict[str, str]:
    """HTTP(S)_PROXY / NO_PROXY in both spellings, so pip, conda, apt, curl, git and R use it."""
    url = f"http://{proxy_address}:{SQUID_PORT}"
    skip = ",".join(["localhost", "127.0.0.1", *no_proxy])
    env = {}
    for name, value in (("http_proxy", url), ("https_proxy", url), ("no_proxy", skip)):
        env[name] = env[name.upper()] = value
    return env


class RestrictedAccess:
    """Coordinates the address book, the proxy's lists and the proxy container."""

    def __init__(self, state: EgressState, proxy: EgressProxy):
        self.state = state
        self.proxy = proxy

    async def prepare(
        self, key: str, container: str, net: WorkspaceNetwork, whitelist
    ) -> RestrictedSettings:
        address = await asyncio.to_thread(self.state.assign, key, net.subnet, time.time())
        await asyncio.to_thread(self.state.register, key, container, address, list(whitelist))
        await self.proxy.ensure(net.name, net.proxy_address)
        await self.proxy.reload()
        return RestrictedSettings(
            address=address,
            # the embedded resolver forwards outside names to an address where no DNS server
            # listens: names resolve at the proxy, never in the workspace
            dns=[net.proxy_address],
            environment=proxy_environment(net.proxy_address, [net.gateway]),
        )

    async def release(self, key: str) -> None:
        if await asyncio.to_thread(self.state.forget, key, time.time()):
            await self.proxy.reload()
