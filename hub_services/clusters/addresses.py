"""Subnets for cluster networks, handed out so that an address comes back as late as possible.

Grid Engine's qmaster caches address -> host name answers (also failed lookups) for about ten
minutes. A member that received an address recently held by another container would be
refused for that long, so nothing about a cluster's addresses may be reused soon:

* every cluster gets its own subnet from :class:`SubnetPool`, which walks the pool round-robin
  (a subnet comes back only after every other one was used) and keeps a released subnet in
  quarantine for ``quarantine_s`` seconds even then;
* inside a cluster's subnet, members' addresses come from an
  :class:`benchhub.addresses.AddressBook` with the same quarantine
  (see :func:`member_addresses`): ``.1`` is the gateway, ``.2`` the manager.

Pure: time comes in as ``now`` (seconds since the epoch) and the whole state is JSON-able.
"""

from __future__ import annotations

import ipaddress

from benchhub.addresses import AddressBook, AddressesExhausted
from benchhub.subnets import SubnetPool as CoreSubnetPool
from benchhub.subnets import SubnetsExhausted

__all__ = [
    "AddressBook",
    "AddressesExhausted",
    "SubnetPool",
    "SubnetsExhausted",
    "manager_address",
    "member_addresses",
]

RESERVED_HOSTS = 2  # .1 the gateway, .2 the manager


def manager_address(subnet: str) -> str:
    """The manager's address: the second host of the subnet (the gateway is the first)."""
    return str(ipaddress.IPv4Network(subnet).network_address + 2)


def member_addresses(subnet: str, quarantine_s: float, state: dict | None = None) -> AddressBook:
    """The address book of a cluster's members (and the workspace it serves) in ``subnet``,
    restored from ``state`` (:meth:`AddressBook.to_dict`) when given."""
    if state:
        return AddressBook.from_dict(state)
    return AddressBook(subnet, reserved=RESERVED_HOSTS, quarantine_s=quarantine_s)


class SubnetPool(CoreSubnetPool):
    """:class:`benchhub.subnets.SubnetPool` of cluster networks (e.g. ``10.231.0.0/16`` in
    ``/26``s: 1024 clusters of up to 59 members plus the workspace)."""

    kind = "cluster"
