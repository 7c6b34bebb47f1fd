"""How many members of a cluster boot at once: paced by readiness, not by batch size.

A scale-up records all the members it decided on at once (names, addresses: the decision is
one operation), but starts their containers only while fewer than a *start window* of the
cluster's members are booting (:func:`members_booting`); each member that is done booting
frees its place for the next. Starting more at once does not make any of them ready sooner:
a booting member keeps the CPU busy, and past what the host's cores hold every booting member
slows down (issue 17: ten members with ten Spark JVMs took the load to 16 on two cores, and
the burst took twice its floor).

What keeps the CPU busy is the engine creating and starting a member's container and, when
the member starts a Spark worker with it, that JVM (1.2-1.4 CPU-s) until the member reports;
a member without a JVM is left with its execution daemon starting, about 0.1 CPU-s. So such a
member holds its place only while its container is being created and started. Counted
until it reported (issue 17, 2026-12-01), a burst's second round (5 of 10 members) was
created 0.3-0.5 s after the scale-up that decided it and 0.6-1.3 s after the first round's
containers ran, and its boots followed: about two boots after the last qsub, where the floor
counts one.

:func:`start_window` sizes the window from the host's cores and a measured member boot;
:func:`members_booting` counts the places taken and :func:`members_to_start` applies it.
Pure: the scaler (:mod:`.scaler`) observes and acts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Sequence

from .state import ClusterRecord, MemberRecord

__all__ = [
    "BOOT_CPU_SECONDS",
    "BOOT_SECONDS",
    "WAITING_PASS_S",
    "host_start_window",
    "members_booting",
    "members_to_register",
    "members_to_start",
    "next_pass_in",
    "start_window",
]

# A member's boot: ``docker run`` to its execution daemon reporting to the manager (qhost),
# without a Spark worker, one at a time on an idle 2-core host (issue 17): 0.37-0.65 s. The
# host's CPU was busy 0.43-0.66 CPU-s meanwhile, of which the measurement's own polling
# (``docker exec qhost`` every 0.1 s: 0.62 CPU-s per s, measured apart) was about 0.35: the
# boot itself is about 0.22 CPU-s (the member's own processes 0.10-0.11 CPU-s, the rest the
# engine creating and starting the container), so it keeps about 0.4 of a core busy.
# (A member with a Spark worker used 1.2-1.4 CPU-s in its own processes.)
BOOT_CPU_SECONDS = 0.22
BOOT_SECONDS = 0.55
# how soon the service looks again while members wait for room to boot (seconds)
WAITING_PASS_S = 1.0


def start_window(
    host_cpus: int, boot_cpu_seconds: float = BOOT_CPU_SECONDS, boot_seconds: float = BOOT_SECONDS
) -> int:
    """How many members may boot at once on a host with ``host_cpus`` cores: a boot keeps
    ``boot_cpu_seconds / boot_seconds`` of a core busy, and the cores hold that many such
    boots side by side without slowing any of them. At least 1."""
    if host_cpus < 1 or boot_cpu_seconds <= 0 or boot_seconds <= 0:
        raise ValueError(
            "start_window needs host_cpus >= 1 and positive boot times, got "
            f"host_cpus={host_cpus}, boot_cpu_seconds={boot_cpu_seconds}, "
            f"boot_seconds={boot_seconds}"
        )
    return max(1, math.floor(host_cpus * boot_seconds / boot_cpu_seconds))


def host_start_window() -> int:
    """:func:`start_window` of this host (its CPU cores, as the OS counts them)."""
    return start_window(os.cpu_count() or 1)


def members_booting(
    members: Iterable[MemberRecord], starting: Collection[str], reported: Collection[str] = ()
) -> int:
    """How many places of the start window the cluster's ``members`` take: those whose
    container is being created and started (``starting``: in a round of
    :mod:`.member_starts`), and those started with a Spark worker that have not reported to
    the manager yet (neither ``joined`` in the record nor in ``reported``: seen reporting since
    the last pass). A member started without one is done booting once its container runs."""
    return len(starting) + sum(
        1
        for m in members
        if m.name not in starting
        and m.spark_worker
        and not (m.waiting_to_start or m.joined or m.name in reported)
    )


def members_to_start(waiting: Sequence[str], booting: int, window: int) -> list[str]:
    """Which of the ``waiting`` members (recorded, not started; in the order they were
    decided) to start now, with ``booting`` members of the cluster still booting: as many as
    the ``window`` has room for, the first ones first."""
    return list(waiting[: max(0, window - booting)])


def members_to_register(waiting: Sequence[str], booting: int, window: int) -> list[str]:
    """Which of the ``waiting`` members to register with Grid Engine now: those
    :func:`members_to_start` starts and the next ``window`` after them, so that the next
    round's registration (several ``qconf`` calls each) overlaps this round's boots
    instead of following them."""
    return list(waiting[: max(0, window - booting) + window])


def next_pass_in(interval: float, clusters: Iterable[ClusterRecord]) -> float:
    """Seconds until the service's next pass: ``interval``, or at most
    :data:`WAITING_PASS_S` while members of one of the ``clusters`` wait for room to boot (a
    member that reports frees its place at once, and :mod:`.join_watch` wakes the service
    then; this is the fallback should a watch miss it)."""
    waiting = any(m.waiting_to_start for rec in clusters for m in rec.members.values())
    return min(interval, WAITING_PASS_S) if waiting else interval
