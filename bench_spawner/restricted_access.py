"""What a restricted workspace needs from the egress side, as the spawner asks for it.

The egress service owns the proxy; the spawner only writes the desired state
(:class:`benchhub.egress_state.EgressState`) and waits until the proxy has it:

* :meth:`RestrictedAccess.prepare` (before the container is created): assign the workspace
  its fixed address on the restricted network and register its whitelist; return the
  container settings (address, DNS, proxy environment) and the registration's stamp;
* :meth:`RestrictedAccess.wait_loaded` (before the workspace is reported ready): until the
  egress service has started the proxy if needed and had it load this registration — a
  workspace never starts with a whitelist the proxy does not apply yet;
* :meth:`RestrictedAccess.release` (after the container is gone): drop the record and
  quarantine the address; the service reloads the proxy.

The network and its host firewall are the spawner's (``benchhub.networks``), made before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from jupyterhub.utils import exponential_backoff

from benchhub.egress_state import EgressState
from benchhub.networks import EGRESS_PROXY_PORT, WorkspaceNetwork

__all__ = ["RestrictedAccess", "RestrictedSettings", "proxy_environment"]


@dataclass(frozen=True)
class RestrictedSettings:
    """Container settings for one restricted workspace, and its registration's stamp."""

    address: str
    dns: list[str]
    environment: dict[str, str]
    registered_at: float


def proxy_environment(proxy_address: str, no_proxy: list[str]) -> dict[str, str]:
    """HTTP(S)_PROXY / NO_PROXY in both spellings, so pip, conda, apt, curl, git and R use it."""
    url = f"http://{proxy_address}:{EGRESS_PROXY_PORT}"
    skip = ",".join(["localhost", "127.0.0.1", *no_proxy])
    env = {}
    for name, value in (("http_proxy", url), ("https_proxy", url), ("no_proxy", skip)):
        env[name] = env[name.upper()] = value
    return env


class RestrictedAccess:
    """The spawner's side of the egress proxy's desired state."""

    def __init__(self, state: EgressState):
        self.state = state

    async def prepare(
        self, key: str, container: str, net: WorkspaceNetwork, whitelist
    ) -> RestrictedSettings:
        now = time.time()
        address = await asyncio.to_thread(self.state.assign, key, net.subnet, now)
        stamp = await asyncio.to_thread(
            self.state.register, key, container, address, list(whitelist), now
        )
        return RestrictedSettings(
            address=address,
            # the embedded resolver forwards outside names to an address where no DNS server
            # listens: names resolve at the proxy, never in the workspace
            dns=[net.proxy_address],
            environment=proxy_environment(net.proxy_address, [net.gateway]),
            registered_at=stamp,
        )

    async def wait_loaded(self, key: str, registered_at: float, limit_s: float) -> None:
        """Until the proxy has loaded ``key``'s registration; ``TimeoutError`` whose message
        says what to look at when the egress service does not answer in ``limit_s`` s."""

        async def loaded() -> bool:
            return await asyncio.to_thread(self.state.is_loaded, key, registered_at)

        await exponential_backoff(
            loaded,
            f"the egress service did not load the whitelist of {key} into the proxy within "
            f"{limit_s:g} s: is the egress service running? (the hub's log says why it stopped)",
            start_wait=0.02,
            max_wait=0.25,
            timeout=limit_s,
        )

    async def release(self, key: str) -> None:
        await asyncio.to_thread(self.state.forget, key, time.time())
