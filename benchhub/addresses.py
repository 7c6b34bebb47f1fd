"""Fixed IPv4 addresses for restricted workspaces on the egress network.

The egress proxy grants each source address one workspace's whitelist, so an address must
never pass to another workspace while anything may still associate it with its old holder
(a squid configuration not yet reloaded, an old container being removed, ARP caches).
:class:`AddressBook` therefore keeps a released address in quarantine for ``quarantine_s``
seconds, even from the workspace that released it.

The book is pure: time comes in as ``now`` (seconds since the epoch; a clock step backwards
only ever lengthens a quarantine), and its whole state is a JSON-able dict
(:meth:`AddressBook.to_dict`, :meth:`AddressBook.from_dict`) that the egress service stores.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math

STATE_VERSION = 1


class AddressesExhausted(RuntimeError):
    """No address of the subnet is free: all are held or in quarantine."""


def _stable_hash(key: str) -> int:
    """A hash of ``key`` that is the same in every process (unlike :func:`hash`)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a workspace key must be non-empty text, e.g. 'alice/ws1'; got {key!r}")
    return key


def _check_time(now: object) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds since the epoch; got {now!r}")
    return float(now)


class AddressBook:
    """Assigns each workspace key one address of ``subnet`` (IPv4, e.g. ``"172.30.0.0/22"``).

    The network address, the broadcast address and the first ``reserved`` host addresses
    (gateway, the proxy, ...) are never assigned. A key keeps its address until
    :meth:`release`; a released address is not assigned again (to any key) until
    ``quarantine_s`` seconds have passed. Raises ValueError for a subnet with host bits set,
    smaller than a /30, or with no address left after ``reserved``.
    """

    def __init__(self, subnet: str, reserved: int = 16, quarantine_s: float = 900) -> None:
        try:
            network = ipaddress.IPv4Network(subnet)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"subnet {subnet!r} is not an IPv4 network such as 172.30.0.0/22 ({error})"
            ) from None
        if network.prefixlen > 30:
            raise ValueError(f"subnet {subnet} is too small; use a /30 or larger, e.g. /22")
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            raise ValueError(f"reserved must be a whole number >= 0; got {reserved!r}")
        if isinstance(quarantine_s, bool) or not isinstance(quarantine_s, int | float):
            raise ValueError(f"quarantine_s must be a number of seconds; got {quarantine_s!r}")
        if not math.isfinite(quarantine_s) or quarantine_s < 0:
            raise ValueError(f"quarantine_s must be finite and >= 0, e.g. 900; got {quarantine_s}")
        self._network = network
        self._reserved = reserved
        self._quarantine_s = float(quarantine_s)
        self._first = int(network.network_address) + 1 + reserved
        self._last = int(network.broadcast_address) - 1
        if self._first > self._last:
            raise ValueError(
                f"subnet {subnet} has {network.num_addresses - 2} host addresses and "
                f"{reserved} are reserved, which leaves none; use a larger subnet"
            )
        self._held: dict[str, int] = {}  # key -> address
        self._holders: dict[int, str] = {}  # address -> key
        self._released: dict[int, float] = {}  # address -> when it was released

    @property
    def subnet(self) -> str:
        return str(self._network)

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def quarantine_s(self) -> float:
        return self._quarantine_s

    @property
    def capacity(self) -> int:
        """How many addresses the book can assign."""
        return self._last - self._first + 1

    def address_of(self, key: str) -> str | None:
        """The address ``key`` holds, or None."""
        address = self._held.get(key)
        return None if address is None else str(ipaddress.IPv4Address(address))

    def holders(self) -> dict[str, str]:
        """A copy of the held addresses: key -> address, sorted by key."""
        return {key: str(ipaddress.IPv4Address(self._held[key])) for key in sorted(self._held)}

    def _expire(self, now: float) -> None:
        """Forget releases at least ``quarantine_s`` before ``now``."""
        limit = now - self._quarantine_s
        for address, released_at in list(self._released.items()):
            if released_at <= limit:
                del self._released[address]

    def assign(self, key: str, now: float) -> str:
        """The address of ``key``: the one it holds, else the first free address counting up
        (and wrapping) from a stable hash of ``key``, so a workspace tends to get the same
        address each time. Free means not held and not released less than ``quarantine_s``
        before ``now``. Raises :class:`AddressesExhausted` when no address is free."""
        _check_key(key)
        now = _check_time(now)
        if key in self._held:
            return str(ipaddress.IPv4Address(self._held[key]))
        self._expire(now)
        size = self.capacity
        start = _stable_hash(key) % size
        for step in range(size):
            address = self._first + (start + step) % size
            if address not in self._holders and address not in self._released:
                self._held[key] = address
                self._holders[address] = key
                return str(ipaddress.IPv4Address(address))
        first_free = min(self._released.values(), default=now) + self._quarantine_s
        raise AddressesExhausted(
            f"no free address in {self.subnet} for workspace {key!r}: {len(self._held)} are "
            f"held and {len(self._released)} were released less than {self._quarantine_s:g} s "
            f"ago (the next frees at {first_free:.0f}); use a larger subnet or stop a workspace"
        )

    def release(self, key: str, now: float) -> str | None:
        """Give up the address of ``key`` at ``now`` and put it in quarantine; return it.
        Releasing a key that holds nothing does nothing and returns None."""
        _check_key(key)
        now = _check_time(now)
        address = self._held.pop(key, None)
        if address is None:
            return None
        del self._holders[address]
        self._released[address] = now
        self._expire(now)
        return str(ipaddress.IPv4Address(address))

    def adopt(self, key: str, address: str, now: float) -> None:
        """Record that ``key`` holds ``address`` (found on a running workspace, e.g. after the
        state was lost). A different address ``key`` held is released at ``now``; a quarantine
        of ``address`` ends. Raises ValueError when another key holds ``address`` or it is not
        assignable (outside the subnet or reserved)."""
        _check_key(key)
        now = _check_time(now)
        wanted = self._assignable(address)
        holder = self._holders.get(wanted)
        if holder is not None and holder != key:
            raise ValueError(f"address {address} is held by workspace {holder!r}, not {key!r}")
        if self._held.get(key) not in (None, wanted):
            self.release(key, now)
        self._released.pop(wanted, None)
        self._held[key] = wanted
        self._holders[wanted] = key

    def _assignable(self, address: object) -> int:
        """``address`` as an integer; ValueError unless the book may assign it."""
        try:
            value = int(ipaddress.IPv4Address(address))
        except (TypeError, ValueError):
            raise ValueError(f"{address!r} is not an IPv4 address such as 172.30.0.17") from None
        if not self._first <= value <= self._last:
            first = ipaddress.IPv4Address(self._first)
            last = ipaddress.IPv4Address(self._last)
            raise ValueError(
                f"address {address} is not assignable in {self.subnet}: "
                f"use {first} to {last} (the first {self._reserved} hosts are reserved)"
            )
        return value

    def to_dict(self) -> dict:
        """The whole state as JSON-able data (see :meth:`from_dict`), keys sorted."""
        return {
            "version": STATE_VERSION,
            "subnet": self.subnet,
            "reserved": self._reserved,
            "quarantine_s": self._quarantine_s,
            "held": self.holders(),
            "released": {
                str(ipaddress.IPv4Address(address)): self._released[address]
                for address in sorted(self._released)
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> AddressBook:
        """The book :meth:`to_dict` described. Raises ValueError for another version, an
        address that is not assignable, held twice, or both held and in quarantine."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"address book state must be a dict with version {STATE_VERSION}")
        try:
            book = cls(data["subnet"], data["reserved"], data["quarantine_s"])
            held, released = dict(data["held"]), dict(data["released"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"address book state is incomplete: {error!r}") from None
        for key, address in held.items():
            value = book._assignable(address)
            if value in book._holders:
                raise ValueError(
                    f"address {address} is held by both {book._holders[value]!r} and {key!r}"
                )
            book._held[_check_key(key)] = value
            book._holders[value] = key
        for address, released_at in released.items():
            value = book._assignable(address)
            if value in book._holders:
                raise ValueError(f"address {address} is both held and in quarantine")
            book._released[value] = _check_time(released_at)
        return book
