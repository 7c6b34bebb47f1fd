"""The auto scaler's decision for a dynamic cluster, as one pure function.

:func:`decide` looks at the pending work (:class:`Request`), the members (:class:`Member`)
and the cluster's :class:`ScalingPolicy` at time ``now`` and returns one :class:`Decision`:
``scale_up`` by ``count`` members, ``drain`` one member (stop giving it work), ``remove`` one
drained idle member, or ``none``, always with a ``reason`` sentence for the scaler log.

Rules, in the order they are checked:

1. A draining member without running jobs is removed (this completes a scale-down already
   decided, so it is allowed at any time).
2. A scale-up goes at once, also while members are still joining: the pending work is
   packed into the joining members too (each counts as an empty member), so only what the
   members on their way cannot hold adds more. A burst of ``qsub`` calls that a pass sees
   half-submitted thus grows the cluster in the next pass instead of a stabilisation later
   (issue 17).
3. No scale-down starts while a scale operation is in flight: while a member has not joined
   yet, or during ``policy.stabilisation`` after ``last_operation_at`` (the caller records
   ``now`` there whenever it carries out a ``scale_up`` or ``drain``).
4. Pending requests that no single member could ever run (more cores or memory per task than
   ``policy.capacity``) are reported in ``unsatisfiable`` and never cause a scale-up.
4. The rest is bin-packed (first fit, largest first) into the free capacity of the joined,
   non-draining members, then into new empty members; the members that opens is
   ``members_needed``. The target is that count added, bounded by ``min_members`` and
   ``max_members``: below the target scale up (rule 2), above ``max_members`` drain.
6. Without satisfiable pending work and above ``min_members``, one idle member older than
   ``policy.min_lifetime`` is drained (preemptible members first, then the youngest), unless
   another member is still draining: one scale-down at a time.

Capacity is counted in whole cores and bytes of memory, as Grid Engine's ``static_cores``
and ``static_mem`` consumables are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = [
    "ACTIONS",
    "MAX_MEMBERS",
    "Capacity",
    "Decision",
    "Member",
    "Request",
    "ScalingPolicy",
    "Unsatisfiable",
    "decide",
    "pack",
]

ACTIONS = ("none", "scale_up", "drain", "remove")
MAX_MEMBERS = 50
_GIB = 1024**3


@dataclass(frozen=True, order=True)
class Capacity:
    """Whole cores and bytes of memory: what a member offers or a task needs."""

    cores: int
    memory: int

    def holds(self, need: Capacity) -> bool:
        """True when ``need`` fits into this capacity."""
        return need.cores <= self.cores and need.memory <= self.memory

    def times(self, count: int) -> Capacity:
        """``count`` tasks of this size together."""
        return Capacity(self.cores * count, self.memory * count)

    def minus(self, other: Capacity) -> Capacity:
        """What is left after ``other`` is taken (may be negative: callers check first)."""
        return Capacity(self.cores - other.cores, self.memory - other.memory)

    def describe(self) -> str:
        """E.g. ``"3 cores, 14.4 GiB"`` (memory rounded to 0.1 GiB)."""
        cores = "1 core" if self.cores == 1 else f"{self.cores} cores"
        return f"{cores}, {self.memory / _GIB:.1f} GiB".replace(".0 GiB", " GiB")


@dataclass(frozen=True)
class Request:
    """Pending work of one job: ``tasks`` identical tasks (array tasks), each needing ``need``
    on a single member (a parallel job's slots all land on one member)."""

    job_id: str
    tasks: int
    need: Capacity


@dataclass(frozen=True)
class Member:
    """One cluster member as observed now.

    ``started_at`` is when its container started (aware datetime); ``joined`` is False until
    its execution daemon has reported to the manager. ``free`` is what it can still take
    (Grid Engine's remaining consumables); None means unknown: all of ``policy.capacity``
    when it runs no job, nothing otherwise.
    """

    name: str
    started_at: datetime
    running_jobs: int = 0
    draining: bool = False
    preemptible: bool = False
    joined: bool = True
    free: Capacity | None = None


@dataclass(frozen=True)
class ScalingPolicy:
    """Bounds and pacing of a cluster. ``capacity`` is what one member offers to jobs.

    Construction raises :class:`ValueError` naming each bad field.
    """

    min_members: int
    max_members: int
    capacity: Capacity
    stabilisation: timedelta = timedelta(seconds=60)
    min_lifetime: timedelta = timedelta(seconds=300)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_members <= self.max_members <= MAX_MEMBERS:
            problems.append(
                f"members must satisfy 0 <= min_members <= max_members <= {MAX_MEMBERS}, "
                f"got min_members={self.min_members}, max_members={self.max_members}"
            )
        if self.capacity.cores < 0 or self.capacity.memory < 0:
            problems.append(f"capacity must not be negative, got {self.capacity}")
        for name in ("stabilisation", "min_lifetime"):
            if getattr(self, name) < timedelta(0):
                problems.append(f"{name} must not be negative, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Unsatisfiable:
    """A pending job no member can ever run, and why."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do now. ``count`` is set for ``scale_up``, ``member`` for ``drain``/``remove``.

    ``members_needed`` is how many members the satisfiable pending work needs beyond the
    free capacity of the current members, before the bounds are applied.
    """

    action: str
    reason: str
    count: int = 0
    member: str | None = None
    members_needed: int = 0
    unsatisfiable: tuple[Unsatisfiable, ...] = field(default=())


def _fit(free: Capacity, need: Capacity, limit: int) -> int:
    """How many tasks of ``need`` fit into ``free``, at most ``limit``."""
    counts = [limit]
    if need.cores > 0:
        counts.append(free.cores // need.cores)
    if need.memory > 0:
        counts.append(free.memory // need.memory)
    return max(0, min(counts))


def _place(bins: list, need: Capacity, tasks: int) -> tuple[list, int]:
    """Put up to ``tasks`` tasks of ``need`` into ``bins`` (first fit); ``bins`` holds
    ``(free capacity, number of such members)``. Returns the new bins and the tasks left."""
    out = []
    for free, count in bins:
        per_bin = _fit(free, need, tasks) if tasks else 0
        if per_bin == 0:
            out.append((free, count))
            continue
        used = min(count, -(-tasks // per_bin))
        full, last = divmod(min(tasks, per_bin * used), per_bin)
        if full:
            out.append((free.minus(need.times(per_bin)), full))
        if last:
            out.append((free.minus(need.times(last)), 1))
        if count > used:
            out.append((free, count - used))
        tasks -= full * per_bin + last
    return out, tasks


def pack(requests: list[Request], free: list[Capacity], capacity: Capacity) -> int:
    """How many new members of ``capacity`` the ``requests`` need after filling ``free``.

    First fit decreasing over groups of identical tasks, so a 100 000-task array costs no
    more than one job. Every request must fit into ``capacity`` (see :func:`decide`).
    """
    bins = [(slot, 1) for slot in free]
    new = 0
    for request in sorted(requests, key=lambda r: r.need, reverse=True):
        bins, left = _place(bins, request.need, request.tasks)
        if left:
            added = -(-left // _fit(capacity, request.need, left))
            new += added
            opened, _ = _place([(capacity, added)], request.need, left)
            bins += opened
    return new


def _split(
    requests: list[Request], capacity: Capacity
) -> tuple[list[Request], tuple[Unsatisfiable, ...]]:
    """The requests one member can run, and the others with the reason they never will."""
    satisfiable, unsatisfiable = [], []
    for request in requests:
        if request.tasks <= 0:
            continue
        if capacity.holds(request.need):
            satisfiable.append(request)
            continue
        reason = (
            f"job {request.job_id} asks for {request.need.describe()} per task, more than one "
            f"member offers ({capacity.describe()}); it waits until the cluster uses a larger "
            "member resource model"
        )
        unsatisfiable.append(Unsatisfiable(request.job_id, reason))
    return satisfiable, tuple(unsatisfiable)


def _free(member: Member, capacity: Capacity) -> Capacity:
    """What ``member`` can still take (see :class:`Member`); a joining member is empty."""
    if not member.joined:
        return capacity
    if member.free is not None:
        return member.free
    return capacity if member.running_jobs == 0 else Capacity(0, 0)


def _in_flight(
    policy: ScalingPolicy, members: list[Member], now: datetime, last: datetime | None
) -> str | None:
    """Why no scale-down may start now, or None."""
    joining = sorted(m.name for m in members if not m.joined)
    if joining:
        return f"waiting for {_names(joining)} to join before a scale-down"
    if last is not None and now < last + policy.stabilisation:
        ready = last + policy.stabilisation
        return (
            f"stabilising after the scale operation at {last:%H:%M:%S}; a scale-down can "
            f"start at {ready:%H:%M:%S}"
        )
    return None


def _names(names: list[str]) -> str:
    return f"member {names[0]}" if len(names) == 1 else f"members {', '.join(names)}"


def _tasks(requests: list[Request]) -> str:
    count = sum(r.tasks for r in requests)
    return "1 pending task" if count == 1 else f"{count} pending tasks"


def _scale_up(policy: ScalingPolicy, active: int, needed: int, demand: list[Request]) -> str:
    """The reason sentence for growing from ``active`` members."""
    if active < policy.min_members and active + needed <= policy.min_members:
        return f"{active} members is below the minimum of {policy.min_members}"
    reason = f"{_tasks(demand)} need {needed} more member{'s' if needed != 1 else ''}"
    if active + needed > policy.max_members:
        reason += f"; adding up to the maximum of {policy.max_members}"
    return reason


def _drain_candidate(
    policy: ScalingPolicy, active: list[Member], now: datetime, forced: bool
) -> Member | None:
    """The member to drain: above the maximum any (fewest running jobs first); otherwise only
    an idle joined member past its minimum lifetime. Preemptible first, then the youngest."""
    if forced:
        pool = active
    else:
        pool = [
            m
            for m in active
            if m.joined and m.running_jobs == 0 and now - m.started_at >= policy.min_lifetime
        ]
    ranked = sorted(
        pool,
        key=lambda m: (m.running_jobs, not m.preemptible, -m.started_at.timestamp(), m.name),
    )
    return ranked[0] if ranked else None


def _shrink(
    policy: ScalingPolicy, members: list[Member], now: datetime, busy: bool
) -> tuple[Member | None, str]:
    """A member to drain, or None with the reason why the cluster stays as it is."""
    active = [m for m in members if not m.draining]
    forced = len(active) > policy.max_members
    if not forced and (busy or len(active) <= policy.min_members):
        if busy:
            return None, "pending work fits on the current members"
        return None, f"no pending work; {len(active)} members is the minimum"
    draining = sorted(m.name for m in members if m.draining)
    if draining:
        return None, f"{_names(draining)} still runs jobs while draining; waiting for it"
    member = _drain_candidate(policy, active, now, forced)
    if member is None:
        lifetime = int(policy.min_lifetime.total_seconds())
        return None, (
            "no pending work, but no member is idle and older than the minimum lifetime "
            f"of {lifetime} s"
        )
    if forced:
        return member, (
            f"{len(active)} members is above the maximum of {policy.max_members}: "
            f"draining {member.name} ({member.running_jobs} running jobs finish first)"
        )
    age = int((now - member.started_at).total_seconds())
    return member, f"no pending work: draining idle member {member.name} (up {age} s)"


def decide(
    policy: ScalingPolicy,
    requests: list[Request],
    members: list[Member],
    now: datetime,
    last_operation_at: datetime | None = None,
) -> Decision:
    """The one scale action to take now; see the module docstring for the rules.

    ``requests`` are the pending jobs (held or failed jobs left out by the caller),
    ``members`` every member the cluster has, ``last_operation_at`` when the last
    ``scale_up`` or ``drain`` was carried out (None: never). Never returns a ``scale_up``
    beyond ``max_members`` or a ``drain`` below ``min_members``, never removes a member with
    running jobs, and never starts a ``drain`` while a scale operation is in flight; a
    ``scale_up`` only ever adds what the members there and joining cannot hold.
    """
    satisfiable, unsatisfiable = _split(requests, policy.capacity)
    active = [m for m in members if not m.draining]
    needed = pack(satisfiable, [_free(m, policy.capacity) for m in active], policy.capacity)

    def result(action: str, reason: str, **kwargs) -> Decision:
        return Decision(
            action, reason, members_needed=needed, unsatisfiable=unsatisfiable, **kwargs
        )

    drained = sorted(m.name for m in members if m.draining and m.running_jobs == 0)
    if drained:
        reason = f"member {drained[0]} is drained and runs no job: removing it"
        return result("remove", reason, member=drained[0])
    target = min(max(len(active) + needed, policy.min_members), policy.max_members)
    if target > len(active):
        reason = _scale_up(policy, len(active), needed, satisfiable)
        return result("scale_up", reason, count=target - len(active))
    waiting = _in_flight(policy, members, now, last_operation_at)
    if waiting:
        return result("none", waiting)
    if needed and len(active) == policy.max_members:
        reason = (
            f"{_tasks(satisfiable)} need {needed} more members, but the cluster is at its "
            f"maximum of {policy.max_members}"
        )
        return result("none", reason)
    member, reason = _shrink(policy, members, now, busy=bool(satisfiable))
    if member is None:
        return result("none", reason)
    return result("drain", reason, member=member.name)
