"""Spare member names: Grid Engine hosts registered before any scale-up needs them.

A member must be a Grid Engine host (admin, submit and execution host in ``@allhosts``,
its address in the manager's ``/etc/hosts``) before its container starts: the qmaster
refuses an execution daemon it does not know. Registering is one ``docker exec`` of ``bench-sge
add-members`` (7 + N ``qconf`` calls) and was the largest cost of a scale-up's first round
(issue 17: 1.8 s for five hosts with another registration beside it, 3 s for four while
Spark worker JVMs booted), paid after the scale-up was decided and before any container was
created.

So a dynamic cluster keeps *spares* (two start windows unless configured,
:func:`default_spares`) in its record (:attr:`.state.ClusterRecord.spares`,
name -> address): the next member names (``next_member`` counts past them) with addresses
held in the cluster's address book, registered with Grid Engine while the cluster is quiet
(:func:`quiet`: no member waiting or booting). A scale-up takes its members from the spares
first (:func:`take`), so its first round creates containers at once; the rest are named and
registered as before. A spare is a configured execution host that never reported: Grid
Engine shows its queue instance as unknown (state ``u`` in ``qstat -f``, ``-`` values in
``qhost``) and schedules nothing there; the service's status lists members only, never
spares.

Pure: :mod:`.scaler` decides when and :mod:`.member_starts` registers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from .state import ClusterRecord

__all__ = ["DEFAULT_START_WINDOWS", "default_spares", "quiet", "reserve", "spares_wanted", "take"]

# Two start windows: a burst's first round takes one window of spares and the round after it
# the second, so a burst of up to two windows (10 members on a 2-core host) registers nothing
# after its jobs were submitted. With one window (issue 17, 2026-12-01) the members beyond it
# were registered after the scale-up, 1.3-2.4 s (2.9-7.6 s with Spark worker JVMs booting):
# then the largest step of the burst. The cost of a spare: a configured execution host that
# never reports (listed in ``qhost``) and an address held in the cluster's subnet.
DEFAULT_START_WINDOWS = 2


def default_spares(start_window: int) -> int:
    """The spares a dynamic cluster keeps unless configured: :data:`DEFAULT_START_WINDOWS`
    start windows (``start_window``: members of a cluster booting at once, at least 1)."""
    return DEFAULT_START_WINDOWS * max(1, start_window)


def spares_wanted(min_members: int, max_members: int, spares: int) -> int:
    """How many spares a cluster keeps: ``spares`` (the service's setting) when it can scale
    up (``max_members > min_members``; at most ``max_members``), else none: a static
    cluster's members are all started with it."""
    if max_members <= min_members or spares <= 0:
        return 0
    return min(spares, max_members)


def quiet(rec: ClusterRecord, starting: Collection[str] = ()) -> bool:
    """Whether registering spares now delays nothing: no member of ``rec`` waits to start, is
    being started (``starting``) or boots (started, not reported yet). Registration is several
    ``qconf`` calls in the manager, which a booting member's report waits behind."""
    return not starting and all(m.joined and not m.waiting_to_start for m in rec.members.values())


def reserve(
    rec: ClusterRecord, wanted: int, member_name: Callable[[int], str], assign: Callable[[str], str]
) -> list[str]:
    """Add spares to ``rec`` until it has ``wanted``: each the next member name
    (``member_name(rec.next_member)``, which counts on) with the address ``assign(name)``
    holds for it (it may raise, e.g. when no address is free: what was added stays). The
    names added, in order."""
    added = []
    while len(rec.spares) < wanted:
        name = member_name(rec.next_member)
        address = assign(name)
        rec.next_member += 1
        rec.spares[name] = address
        added.append(name)
    return added


def take(rec: ClusterRecord, count: int) -> list[tuple[str, str]]:
    """Take up to ``count`` spares out of ``rec`` for new members, oldest first: (name,
    address) pairs; their addresses stay held by the same names."""
    taken = list(rec.spares.items())[: max(0, count)]
    for name, _ in taken:
        del rec.spares[name]
    return taken
