"""A scale-up's members started beside the scaler's passes, not inside them.

Starting a round of members is Grid Engine registration (``bench-sge add-members`` in the
manager) and creating and starting containers: a second or more. Done inside the pass, under
the cluster's lock, it delayed the next pass's decision by as much (issue 17: a burst's second
scale-up came 7 s after the first while seven members registered one by one). So a pass only
*chooses* the round (:func:`.pacing.members_to_start`, counting the members still being
started as booting) and :meth:`MemberStarts.launch` runs it as a task:

1. the round's members that are not Grid Engine hosts yet and not being registered ahead
   are registered in one ``docker exec`` (:meth:`.nodes.ClusterNodes.register_members`);
   those that are hosts (spares, :mod:`.spares`, or registered ahead) start without waiting
   for it, and those still being registered ahead as soon as their own registration ends;
2. their containers are created and started in parallel, while the round after it (the next
   ``window`` waiting members, :func:`.pacing.members_to_register`) registers in one more
   ``docker exec``, a task of its own: the round does not wait for it, and a later round
   whose members it registers waits for it instead of registering them again;
3. under the cluster's lock (never held while Grid Engine or Docker work), each member is
   marked started, or removed with its address released when its start failed. A member no
   longer in the record (the cluster was stopped or its members cleared meanwhile) has what
   its start made removed again.

Correctness: a member is in at most one round (:attr:`MemberStarts.starting`); while it is
being started it keeps ``waiting_to_start``, so no pass finds it lost for lack of a container,
and it has not joined, so no pass drains or removes it; the passes count it as capacity.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection

from benchhub.resource_models import ResourceModel
from benchhub.storage_allocations import StorageRefused

from . import pacing
from .containers import ClusterNames, Mount
from .nodes import ClusterNodes
from .scaler_log import ScalerLog
from .scaling import ScalingPolicy
from .state import ClusterRecord, MemberRecord, utcnow

__all__ = ["MemberStarts"]


class MemberStarts:
    """The rounds of member starts of every cluster, in the background of the passes.

    ``save`` persists the records; ``release(rec, name, now)`` forgets a member and puts its
    address into quarantine; ``lock_of(key)`` is the cluster's lock (the service's);
    ``on_started(names, rec)`` is called after each round (the scaler watches the new
    members join)."""

    def __init__(
        self,
        nodes: ClusterNodes,
        save: Callable[[], Awaitable[None]],
        release: Callable[[ClusterRecord, str, object], None],
        log: logging.Logger,
    ):
        self.nodes = nodes
        self.save = save
        self.release = release
        self.log = log
        locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.lock_of: Callable[[str], asyncio.Lock] = locks.__getitem__
        self.on_started: Callable[[ClusterNames, ClusterRecord], None] = lambda n, r: None
        self.starting: dict[str, set[str]] = defaultdict(set)  # key -> members in a round
        # key -> its members (and spares) that are Grid Engine hosts of its manager already
        self.registered: dict[str, set[str]] = defaultdict(set)
        self._registering: dict[str, asyncio.Task] = {}  # member -> its ahead registration
        self._rounds: dict[str, set[asyncio.Task]] = defaultdict(set)
        self._ahead: dict[str, set[asyncio.Task]] = defaultdict(set)  # registrations ahead

    def in_flight(self, key: str) -> bool:
        """Whether a round of the cluster ``key`` is still running."""
        return any(not task.done() for task in self._rounds.get(key, ()))

    def launch(
        self,
        names: ClusterNames,
        rec: ClusterRecord,
        model: ResourceModel,
        policy: ScalingPolicy,
        mounts: list[Mount],
        scaler_log: ScalerLog,
        window: int,
        reported: Collection[str] = (),
        spark_worker: bool | None = None,
    ) -> list[str]:
        """Start the round :mod:`.pacing` allows now as a task; the members it starts.
        ``reported``: members seen reporting since the last pass (not booting any more).
        ``spark_worker``: whether they start their Spark worker with them
        (:func:`.spark_use.worker_at_boot`; None: when the cluster is in Spark use)."""
        starting = self.starting[rec.key]
        waiting = [n for n, m in rec.members.items() if m.waiting_to_start and n not in starting]
        if not waiting:
            return []
        booting = pacing.members_booting(rec.members.values(), starting, reported)
        new = pacing.members_to_start(waiting, booting, window)
        ahead = [
            n
            for n in pacing.members_to_register(waiting, booting, window)[len(new) :]
            if n not in self.registered[rec.key] and n not in self._registering
        ]
        if not new and not ahead:
            return []
        starting.update(new)
        if new:
            members = [rec.members[n] for n in new]
            sizing = (model, policy, mounts)
            worker = rec.spark_in_use if spark_worker is None else spark_worker
            round_ = self._round(names, rec, members, sizing, scaler_log, worker)
            self._track(self._rounds[rec.key], round_)
        if ahead:  # on its own: a round does not wait for the next one's registration
            later = [rec.members[n] for n in ahead]
            registration = self._register_ahead(names, rec, later, policy.capacity)
            task = self._track(self._ahead[rec.key], registration)
            self._registering.update(dict.fromkeys(ahead, task))
        return new

    def register_spares(self, names: ClusterNames, rec: ClusterRecord, capacity) -> bool:
        """Register the spares of ``rec`` (:mod:`.spares`) that are not Grid Engine hosts
        yet, in one task; a round that takes one meanwhile waits for it. Whether a task
        started."""
        todo = [
            n
            for n in rec.spares
            if n not in self.registered[rec.key] and n not in self._registering
        ]
        if not todo:
            return False
        spares = [MemberRecord(n, rec.spares[n], utcnow().isoformat()) for n in todo]
        task = self._track(self._ahead[rec.key], self._register_ahead(names, rec, spares, capacity))
        self._registering.update(dict.fromkeys(todo, task))
        return True

    def registering(self, key: str) -> bool:
        """Whether a registration ahead (or of spares) of the cluster ``key`` runs."""
        return any(not task.done() for task in self._ahead.get(key, ()))

    @staticmethod
    def _track(tasks: set[asyncio.Task], coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def settle(self, key: str) -> None:
        """Until the cluster's rounds and registrations ahead have ended (tests; nothing
        raises)."""
        while tasks := [
            t for t in (*self._rounds.get(key, ()), *self._ahead.get(key, ())) if not t.done()
        ]:
            await asyncio.gather(*tasks, return_exceptions=True)

    def forget(self, key: str) -> None:
        """The cluster is gone: its rounds are cancelled (a container one of them made
        meanwhile has no record left: the service removes it as an orphan)."""
        for task in [*self._rounds.pop(key, ()), *self._ahead.pop(key, ())]:
            task.cancel()
        self.starting.pop(key, None)
        self.registered.pop(key, None)  # a manager started again knows none of them

    async def _register_ahead(self, names, rec, members, capacity) -> None:
        """Register the round after the booting one, so that it only starts containers when
        its turn comes; a failure is logged (its own round registers it then)."""
        try:
            await self.nodes.register_members(names, members, capacity)
            self.registered[rec.key].update(m.name for m in members)
        except Exception as e:
            self.log.warning("%s: registering %s ahead failed: %s", rec.key, members, e)
        finally:
            for m in members:
                self._registering.pop(m.name, None)

    async def _register(self, names, rec, members: list[MemberRecord], capacity) -> None:
        """Make ``members`` (none of them being registered ahead) Grid Engine hosts in one
        go."""
        await self.nodes.register_members(names, members, capacity)
        self.registered[rec.key].update(m.name for m in members)

    async def _registered_ahead(
        self, names, rec, member: MemberRecord, ahead: asyncio.Task, capacity
    ) -> None:
        """Until ``member``'s registration ``ahead`` (a task, perhaps for several members) has
        ended; registers it alone should that one have failed."""
        await asyncio.wait([ahead])  # (it never raises: it logs its failure)
        if member.name not in self.registered[rec.key]:
            await self._register(names, rec, [member], capacity)

    async def _round(self, names, rec, members, sizing, scaler_log, spark_worker) -> None:
        model, policy, mounts = sizing
        scratch_gb = int(rec.settings.get("scratch_gb", 0))

        async def start(member: MemberRecord) -> None:
            await self.nodes.start_member(
                names,
                rec,
                member,
                model,
                policy.capacity,
                mounts,
                scratch_gb,
                spark_worker=spark_worker,
            )

        # each member starts as soon as it is a Grid Engine host: at once when it is one
        # already (a spare, registered ahead); when its own registration ahead ends (not when
        # the round's other registrations do: issue 17, m34 and m35 waited 1.9 s for m36's);
        # the rest when their registration, started now in one go, ends (a failed one fails
        # only them)
        registered = self.registered[rec.key]
        ahead = {
            m.name: self._registering[m.name]
            for m in members
            if m.name not in registered and m.name in self._registering
        }
        rest = [m for m in members if m.name not in registered and m.name not in ahead]
        registration = asyncio.ensure_future(self._register(names, rec, rest, policy.capacity))

        async def registered_then_started(member: MemberRecord) -> None:
            if member.name in ahead:
                await self._registered_ahead(
                    names, rec, member, ahead[member.name], policy.capacity
                )
            elif member in rest:
                await asyncio.shield(registration)
            await start(member)

        try:
            results = await asyncio.gather(
                *(registered_then_started(m) for m in members), return_exceptions=True
            )
        finally:
            if not registration.done():  # cancelled: so is the registration
                registration.cancel()
        if registration.done() and not registration.cancelled():
            registration.exception()  # (seen: each unregistered member's result has it)
        lines = await self._settle_round(names, rec, members, results, spark_worker)
        if lines:
            await asyncio.to_thread(scaler_log.append, utcnow(), lines)
        self.on_started(names, rec)

    async def _settle_round(self, names, rec, members, results, spark_worker) -> list[str]:
        """Under the cluster's lock: each member started, or removed; the log lines."""
        lines = []
        async with self.lock_of(rec.key):
            for member, result in zip(members, results, strict=True):
                self.starting[rec.key].discard(member.name)
                current = rec.members.get(member.name) is member and rec.status == "running"
                if current and not isinstance(result, BaseException):
                    member.started_at = utcnow().isoformat()
                    member.spark_worker = spark_worker
                    member.waiting_to_start = False
                    continue
                if isinstance(result, StorageRefused):  # another allocation came first
                    self.log.warning("%s: member %s not started: %s", rec.key, member.name, result)
                elif isinstance(result, BaseException):
                    self.log.error(
                        "%s: member %s failed to start", rec.key, member.name, exc_info=result
                    )
                try:
                    await self.nodes.remove_member(names, rec, member)
                except Exception as e:  # the cluster is going: its removal takes the rest
                    self.log.warning("%s: removing %s failed: %s", rec.key, member.name, e)
                self.registered[rec.key].discard(member.name)
                if current:
                    self.release(rec, member.name, utcnow())
                    lines.append(f"member {member.name} failed to start: {result}")
            await self.save()
        return lines
