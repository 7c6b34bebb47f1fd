"""Subnets handed out of a pool so that one comes back as late as possible.

Used where every Docker network BenchHub makes gets a subnet of its own: a cluster's network
(hub_services/clusters: Grid Engine's qmaster caches address -> name answers for about ten
minutes, so a reused address locks a new member out) and a restricted workspace's overlay on a
swarm (bench_spawner/swarm: one ``--internal`` overlay per workspace keeps them apart). A pool
walks its subnets round-robin (a subnet comes back only after every other one was used) and
keeps a released subnet in quarantine for ``quarantine_s`` seconds even then.

Pure: time comes in as ``now`` (seconds since the epoch) and the whole state is JSON-able.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["SubnetPool", "SubnetsExhausted"]

STATE_VERSION = 1


class SubnetsExhausted(RuntimeError):
    """Every subnet of the pool is in use, in quarantine or taken by another Docker network."""


class SubnetPool:
    """Hands out ``/prefix_length`` subnets of ``pool`` (e.g. ``10.231.0.0/16`` in ``/26``s:
    1024 networks of 62 addresses each). ``kind`` names what holds one in messages (a
    subclass sets it, e.g. "cluster").

    A key (e.g. a cluster id) keeps its subnet until :meth:`release`. :meth:`allocate` takes the
    next subnet after the last one handed out that is not held, not released less than
    ``quarantine_s`` before ``now`` and not overlapping a network in ``avoid`` (other Docker
    networks on the host). Construction raises ValueError naming the bad argument.
    """

    def __init__(self, pool: str, prefix_length: int = 26, quarantine_s: float = 900):
        try:
            network = ipaddress.IPv4Network(pool)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"subnet pool {pool!r} is not an IPv4 network such as 10.231.0.0/16 ({error})"
            ) from None
        if not network.prefixlen <= prefix_length <= 29:
            raise ValueError(
                f"prefix_length must be from {network.prefixlen} (the pool's own) to 29, e.g. 26;"
                f" got {prefix_length}"
            )
        if quarantine_s < 0:
            raise ValueError(f"quarantine_s must be 0 or more seconds (900), got {quarantine_s}")
        self._network = network
        self._prefix_length = prefix_length
        self._quarantine_s = float(quarantine_s)
        self._count = 2 ** (prefix_length - network.prefixlen)
        self._held: dict[str, int] = {}  # key -> subnet index
        self._released: dict[int, float] = {}  # subnet index -> when released
        self._cursor = 0

    kind = "network"

    @property
    def pool(self) -> str:
        return str(self._network)

    @property
    def prefix_length(self) -> int:
        return self._prefix_length

    def _subnet(self, index: int) -> ipaddress.IPv4Network:
        size = 2 ** (32 - self._prefix_length)
        return ipaddress.IPv4Network(
            (int(self._network.network_address) + index * size, self._prefix_length)
        )

    def _index(self, subnet: str) -> int:
        net = ipaddress.IPv4Network(subnet)
        if net.prefixlen != self._prefix_length or not net.subnet_of(self._network):
            raise ValueError(f"{subnet} is not a /{self._prefix_length} of the pool {self.pool}")
        size = 2 ** (32 - self._prefix_length)
        return (int(net.network_address) - int(self._network.network_address)) // size

    def subnet_of(self, key: str) -> str | None:
        index = self._held.get(key)
        return None if index is None else str(self._subnet(index))

    def allocate(self, key: str, now: float, avoid: Iterable[str] = ()) -> str:
        """The subnet of ``key``: the one it holds, else the next free one (see the class
        docstring). Raises :class:`SubnetsExhausted` when none is free."""
        if key in self._held:
            return str(self._subnet(self._held[key]))
        others = [ipaddress.IPv4Network(n, strict=False) for n in avoid]
        taken = set(self._held.values())
        limit = now - self._quarantine_s
        for step in range(self._count):
            index = (self._cursor + step) % self._count
            if index in taken or self._released.get(index, limit) > limit:
                continue
            candidate = self._subnet(index)
            if any(candidate.overlaps(other) for other in others):
                continue
            self._held[key] = index
            self._released.pop(index, None)
            self._cursor = (index + 1) % self._count
            return str(candidate)
        raise SubnetsExhausted(
            f"no free /{self._prefix_length} in {self.pool} for a {self.kind}: "
            f"{len(self._held)} are in use and {len(self._released)} were released less than "
            f"{self._quarantine_s:g} s ago or overlap other Docker networks; configure a larger "
            "subnet pool"
        )

    def release(self, key: str, now: float) -> str | None:
        """Give up the subnet of ``key`` at ``now`` (it goes into quarantine); return it."""
        index = self._held.pop(key, None)
        if index is None:
            return None
        self._released[index] = now
        return str(self._subnet(index))

    def adopt(self, key: str, subnet: str) -> None:
        """Record that ``key`` holds ``subnet`` (found on a running holder). Raises ValueError
        when another key holds it or it is not a subnet of the pool."""
        index = self._index(subnet)
        holder = next((k for k, i in self._held.items() if i == index), None)
        if holder not in (None, key):
            raise ValueError(f"subnet {subnet} is held by {self.kind} {holder!r}, not {key!r}")
        self._held[key] = index
        self._released.pop(index, None)

    def to_dict(self) -> dict:
        """The whole state as JSON-able data (see :meth:`from_dict`)."""
        return {
            "version": STATE_VERSION,
            "pool": self.pool,
            "prefix_length": self._prefix_length,
            "quarantine_s": self._quarantine_s,
            "cursor": self._cursor,
            "held": {key: str(self._subnet(i)) for key, i in sorted(self._held.items())},
            "released": {str(self._subnet(i)): at for i, at in sorted(self._released.items())},
        }

    @classmethod
    def from_dict(cls, data: dict, pool: str, prefix_length: int, quarantine_s: float):
        """A pool configured with ``pool``/``prefix_length``/``quarantine_s`` that remembers
        what ``data`` records. Subnets recorded for another configuration are kept only as
        holdings (running holders keep their networks); their quarantine is dropped."""
        fresh = cls(pool, prefix_length, quarantine_s)
        same = data.get("pool") == fresh.pool and data.get("prefix_length") == prefix_length
        if same:
            fresh._cursor = int(data.get("cursor", 0)) % fresh._count
            for subnet, at in (data.get("released") or {}).items():
                fresh._released[fresh._index(subnet)] = float(at)
        for key, subnet in (data.get("held") or {}).items():
            try:
                fresh.adopt(key, subnet)
            except ValueError:
                continue  # outside the new pool: its holder keeps it untracked
        return fresh
