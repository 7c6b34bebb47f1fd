"""A stand-in for a host on the Internet: a network namespace the host routes to, with a server.

Workspaces on the shared bridges cannot reach other containers nor host ports (ICC off, the
BENCH-FWD chain, the INPUT guard), so a server container next to them is no stand-in for the
Internet. A network namespace behind a veth pair is: the host routes to it and Docker's NAT
applies, exactly as for a real outside address. Addresses are from TEST-NET-3 (203.0.113.0/24,
never a real host). Needs root (``ip netns``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .waiting import wait

__all__ = ["GATEWAY", "outside_host"]

GATEWAY = "203.0.113.1"  # the host's side of the veth pair; the namespace's default route


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def _answers(url: str) -> bool:
    probe = ["curl", "-sk", "-m", "1", "-o", "/dev/null", url]
    return subprocess.run(probe, capture_output=True).returncode == 0


@contextmanager
def outside_host(
    namespace: str,
    veth: str,
    addresses: Sequence[str],
    command: Sequence[str],
    ready_url: str,
    timeout: float = 10,
) -> Iterator[list[str]]:
    """Run ``command`` in a new network namespace ``namespace`` holding ``addresses`` (each
    a /32 of 203.0.113.0/24 other than :data:`GATEWAY`, e.g. ``["203.0.113.2"]``), reached from
    the host through the veth pair ``{veth}0`` (host side, :data:`GATEWAY`/24) and ``{veth}1``
    (inside; ``veth`` at most 14 characters). Yields ``addresses`` once ``ready_url`` answers
    (curl from the host, any status), or raises :class:`~support.waiting.WaitTimedOut` after
    ``timeout`` seconds. On exit the command is killed and the namespace deleted, which takes
    the veth pair with it. A namespace of the same name left by an earlier run is replaced."""
    host_side, inside = f"{veth}0", f"{veth}1"
    _ip("netns", "del", namespace, check=False)
    _ip("link", "del", host_side, check=False)
    _ip("netns", "add", namespace)
    server = None
    try:
        _ip("link", "add", host_side, "type", "veth", "peer", "name", inside, "netns", namespace)
        _ip("addr", "add", f"{GATEWAY}/24", "dev", host_side)
        _ip("link", "set", host_side, "up")
        for index, address in enumerate(addresses):
            prefix = 24 if index == 0 else 32  # one /24 route back to the host is enough
            _ip("-n", namespace, "addr", "add", f"{address}/{prefix}", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "route", "add", "default", "via", GATEWAY)
        server = subprocess.Popen(["ip", "netns", "exec", namespace, *command])
        wait(
            lambda: server.poll() is not None or _answers(ready_url),
            timeout,
            f"{ready_url} answers",
        )
        if server.poll() is not None:
            raise RuntimeError(f"the outside server exited ({server.returncode}): {command[:2]}")
        yield list(addresses)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        _ip("netns", "del", namespace, check=False)
