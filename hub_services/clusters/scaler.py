"""One pass of the auto scaler over one cluster: observe, decide, act once, log.

:meth:`ClusterScaler.step` reads Grid Engine (``qhost``/``qstat`` XML in the manager), Spark
(the master's workers, the drivers' dynamic-allocation wishes: :mod:`.spark`) and Docker (is
each member's container still running), then:

1. a member whose container is gone or stopped (killed, out of memory, a preemptible member
   reclaimed), or that did not join within ``join_timeout``, is *lost*: its jobs are
   rescheduled (they become pending again, state ``Rq``), it leaves Grid Engine and its
   container, scratch and address go (the address into quarantine);
2. :func:`.scaler.decide` chooses one action from the pending requests (Grid Engine jobs
   and executors Spark applications want) and the members (a member running executors is
   busy, and what they hold is not free);
3. the action is carried out: ``scale_up`` records its members and starts them paced by
   readiness (:mod:`.pacing`: at most ``start_window`` of the cluster's members booting at
   once; the others start in later passes as those report, the next round registered with
   Grid Engine meanwhile; a :mod:`.join_watch` in the manager calls :attr:`on_joined` as
   soon as a booting member reports). A round is started beside the passes, outside the
   cluster's lock (:mod:`.member_starts`: one Grid Engine registration for all its members),
   so the next pass decides without waiting for it. ``drain`` disables a member's
   queue, ``remove`` takes out a drained idle member. A member's minimum lifetime counts from
   when it joined (when it could first take a job), not from its container start;
4. once Spark wants the cluster (:mod:`.spark_use`), joined members get their Spark worker;
   until then members run no JVM. New members start with one while Spark applications wait
   for workers; otherwise they get theirs once no member of the cluster boots any more (a
   JVM's start slowed the execution daemons booting beside it).

Static clusters go through the same pass with ``min_members == max_members``: a lost member
is replaced because the cluster is below its minimum. What happened goes to the cluster's
scaler log; jobs no member can ever run are logged once each.

Storage limits (with ``admission`` and ``layer_watch``): a member whose own files (its
container's writable layer) passed the model's ``disk_gb`` is lost like any other, with the
reason ``disk limit``; members are measured at the adaptive cadence of
:mod:`benchhub.writable_layer`, at most once per pass. A scale-up starts only as many
members as can have their ``/scratch`` (the host's capacity and the user's quota), and says so
in the log once; each member's scratch is then claimed when it is created (``nodes``).

The owner's limits (with ``quota_fit``, :mod:`.quota_gate`): a scale-up starts only as many
members as fit the user's CPU, memory and GPU limits, and says which limit stops it in the
log, once until that changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from benchhub.resource_models import ResourceModel
from benchhub.storage_admission import StorageRequest
from benchhub.storage_allocations import StorageAdmission
from benchhub.writable_layer import (
    MEMBER_FILES,
    WritableLayerWatch,
    next_check_in,
    over_limit_reason,
)

from . import sge, spares, spark, spark_use
from .addresses import AddressesExhausted, member_addresses
from .containers import ClusterNames, Mount
from .job_arrivals import JobArrivals
from .member_starts import MemberStarts
from .nodes import ClusterNodes, node_exit_reason
from .scaler_log import ScalerLog
from .scaling import Capacity, Decision, Member, ScalingPolicy, decide
from .state import ClusterRecord, MemberRecord, parse_time, utcnow

__all__ = ["ClusterScaler"]

GIB = 1024**3


class ClusterScaler:
    """Runs :meth:`step`; ``save`` persists the records (awaited after every change)."""

    def __init__(
        self,
        nodes: ClusterNodes,
        save: Callable[[], Awaitable[None]],
        start_window: int = 4,
        join_timeout: float = 120,
        address_quarantine: float = 900,
        log: logging.Logger | None = None,
        admission: StorageAdmission | None = None,
        layer_watch: WritableLayerWatch | None = None,
    ):
        self.nodes = nodes
        self.admission = admission
        self.layer_watch = layer_watch
        self.save = save
        self.start_window = max(1, start_window)  # members of a cluster booting at once
        self.spare_members = 0  # spares a dynamic cluster keeps registered (:mod:`.spares`)
        self.join_timeout = join_timeout
        self.address_quarantine = address_quarantine
        self.log = log or logging.getLogger("benchhub.clusters")
        self._notes: dict[str, str] = {}  # key -> last "at maximum" sentence logged
        self.on_decision: Callable[[str], None] = lambda action: None  # ClusterMetrics.decided
        # (record, members' model, count) -> (how many fit the user's limits, log lines):
        # quota_gate.ClusterQuotaGate.members_that_fit; None: no limits
        self.quota_fit: Callable[..., Awaitable[tuple[int, list[str]]]] | None = None
        self._scratch_notes: dict[str, int] = {}  # key -> members that fit, when last logged
        # member -> (monotonic time of its next measurement, (charged bytes, at) last seen)
        self._measured: dict[str, tuple[float, tuple[int, float] | None]] = {}
        # a booting member reported (:mod:`.join_watch`): the service runs a pass at once
        self.on_joined: Callable[[], None] = lambda: None
        # cluster key -> its join watches and the members each waits for
        self._watches: dict[str, list[tuple[asyncio.Task, frozenset[str]]]] = {}
        # cluster key -> what its last pass started members with (model, policy, mounts, log)
        self._sizing: dict[str, tuple] = {}
        # cluster key -> members a watch saw report that no pass has recorded as joined yet
        self._reported: dict[str, set[str]] = {}
        # cluster key -> whether its members start with their Spark worker now
        # (:func:`.spark_use.worker_at_boot`, as its last pass saw Spark)
        self._worker_at_boot: dict[str, bool] = {}
        self.starts = MemberStarts(nodes, save, self._release, self.log)
        self.starts.on_started = self._round_ended  # a round's members boot: watch them
        self._followers: set[asyncio.Task] = set()  # rounds launched as the one before ended
        self.arrivals = JobArrivals(nodes, self.log)  # a new job wakes the service (on_new_jobs)

    async def step(
        self,
        names: ClusterNames,
        rec: ClusterRecord,
        model: ResourceModel,
        policy: ScalingPolicy,
        mounts: list[Mount],
        scaler_log: ScalerLog,
    ) -> dict:
        """One pass; returns the cluster's observed view for the API (see :func:`_view`)."""
        now = utcnow()
        lines: list[str] = []
        (hosts, pending), sparks = await asyncio.gather(
            self.nodes.observe(names), self.nodes.observe_spark(names, rec, policy.capacity)
        )
        lost = await self._lost(rec, model, hosts, now)
        self._reported[rec.key] = {
            n
            for n in self._reported.get(rec.key, ())
            if n in rec.members and not rec.members[n].joined
        }
        for name, reason in lost.items():
            lines.append(await self._lose(names, rec, name, reason, now))
        spark_news = self._spark_use(rec, sparks)
        lines += spark_news
        spark_waiting = spark_use.spark_waiting(sparks)
        worker_at_boot = spark_use.worker_at_boot(rec.spark_in_use, spark_waiting)
        self._worker_at_boot[rec.key] = worker_at_boot
        members = self._members(rec, hosts, sparks.workers)
        requests = [job.request() for job in pending if job.waiting] + sparks.requests
        decision = decide(policy, requests, members, now, parse_time(rec.last_operation_at))
        self.on_decision(decision.action)
        lines += await self._act(decision, names, rec, model, policy, mounts, now)
        self._sizing[rec.key] = (model, policy, mounts, scaler_log)
        self.starts.launch(
            names,
            rec,
            model,
            policy,
            mounts,
            scaler_log,
            self.start_window,
            spark_worker=worker_at_boot,
        )
        spared = self._keep_spares(names, rec, policy, now)
        workers = await self._start_workers(rec, hosts, spark_waiting)
        lines += self._report(rec, decision, policy, members, requests)
        if lost or spark_news or workers or spared or decision.action != "none":
            await self.save()
        await asyncio.to_thread(scaler_log.append, now, lines)
        if not self.starts.in_flight(rec.key):  # else the round's end does
            self._watch_joins(names, rec)
        self.arrivals.keep(names, rec, policy, pending)
        return _view(rec, hosts, pending, sparks, decision, now)

    def _round_ended(self, names: ClusterNames, rec: ClusterRecord) -> None:
        """A round's containers were started: watch its members join, and start the next
        round at once when members wait (the ended round's members free their places in the
        start window now, unless they boot a Spark worker: :func:`.pacing.members_booting`)."""
        self._watch_joins(names, rec)
        if any(m.waiting_to_start for m in rec.members.values()):
            task = asyncio.ensure_future(self._next_round(names, rec, ()))
            self._followers.add(task)
            task.add_done_callback(self._followers.discard)

    async def settle(self, key: str) -> None:
        """Until the member starts of the cluster ``key`` have ended, also the rounds that
        started as others ended (tests; nothing raises)."""
        while True:
            await self.starts.settle(key)
            if not self._followers:
                return
            await asyncio.gather(*self._followers, return_exceptions=True)

    def _watch_joins(self, names: ClusterNames, rec: ClusterRecord) -> None:
        """While members of ``rec`` boot, keep a :mod:`.join_watch` running for each of them
        (one watch for those no running watch waits for); when one reports,
        :attr:`on_joined` (the service's next pass starts at once)."""
        booting = {m.name for m in rec.members.values() if not (m.waiting_to_start or m.joined)}
        booting -= self._reported.get(rec.key, set())
        running = [(t, hosts) for t, hosts in self._watches.get(rec.key, []) if not t.done()]
        unwatched = sorted(booting.difference(*(hosts for _, hosts in running)))
        self._watches[rec.key] = running
        if not unwatched:
            return

        async def watch() -> None:
            try:
                if joined := await self.nodes.wait_for_join(names, unwatched):
                    await self._next_round(names, rec, joined)
                    self.on_joined()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.warning("%s: watching members join failed", rec.key, exc_info=True)

        running.append((asyncio.ensure_future(watch()), frozenset(unwatched)))

    async def _next_round(self, names: ClusterNames, rec: ClusterRecord, joined) -> None:
        """Members of ``rec`` reported (``joined``; or none, when a round's containers were
        started): places in the start window may be free, so the next round of waiting
        members starts now, as the pass after would (issue 17: that pass, three
        ``qstat``/``qhost`` and the Spark observation in the manager, took 0.5-1 s per round
        of a burst). Under the cluster's lock; the pass still follows and does the rest."""
        sizing = self._sizing.get(rec.key)
        if sizing is None:
            return
        async with self.starts.lock_of(rec.key):
            if rec.status == "running":  # (the pass records them as joined)
                reported = self._reported.setdefault(rec.key, set())
                reported.update(joined)
                self.starts.launch(
                    names,
                    rec,
                    *sizing,
                    self.start_window,
                    reported=reported,
                    spark_worker=self._worker_at_boot.get(rec.key),
                )

    # ---- lost members ----------------------------------------------------------------------

    async def _lost(
        self, rec: ClusterRecord, model: ResourceModel, hosts: dict, now: datetime
    ) -> dict[str, str]:
        """``{member: why it is lost}``; also records members that joined."""
        found = await asyncio.gather(*(self.nodes.engine.inspect(n) for n in rec.members))
        lost = {}
        memory = int(model.memory_gb * GIB)
        for member, container in zip(list(rec.members.values()), found, strict=True):
            host = hosts.get(member.name)
            if member.waiting_to_start:  # no container yet (pacing)
                continue
            if container is None or not container["State"]["Running"]:
                state = container["State"] if container else None
                lost[member.name] = node_exit_reason(state, memory)
            elif host is not None and host.reporting:
                if not member.joined:
                    member.joined_at = now.isoformat()
                member.joined = True
            elif not member.joined:
                age = (now - parse_time(member.started_at)).total_seconds()
                if age > self.join_timeout:
                    lost[member.name] = f"it did not join the manager within {age:.0f} s"
        running = {
            m.name: c
            for m, c in zip(rec.members.values(), found, strict=True)
            if m.name not in lost and c is not None
        }
        lost.update(await self._over_disk_limit(rec, model, running))
        return lost

    async def _over_disk_limit(
        self, rec: ClusterRecord, model: ResourceModel, running: dict
    ) -> dict[str, str]:
        """``{member: disk limit reason}`` of the running members measured in this pass."""
        if self.layer_watch is None:
            return {}
        limit = int(model.disk_gb * GIB)
        cadence = self.layer_watch.cadence
        now = time.monotonic()
        due = {
            name: upper
            for name, c in running.items()
            if (upper := _upper_dir(c)) and self._measured.get(name, (0, None))[0] <= now
        }
        found = await asyncio.gather(
            *(self.layer_watch.usage(u) for u in due.values()), return_exceptions=True
        )
        over = {}
        for name, usage in zip(due, found, strict=True):
            previous = self._measured.get(name, (0, None))[1]
            if isinstance(usage, BaseException):
                self.log.warning("%s: measuring %s failed: %s", rec.key, name, usage)
                self._measured[name] = (now + cadence.max_interval, previous)
                continue
            reason = over_limit_reason(usage, limit, limit, MEMBER_FILES)
            if reason:
                over[name] = reason
                continue
            rate = 0.0
            if previous is not None:
                rate = (usage.charged - previous[0]) / max(now - previous[1], 1e-3)
            wait = next_check_in(usage.charged, limit, rate, cadence)
            self._measured[name] = (now + wait, (usage.charged, now))
        return over

    async def _lose(self, names, rec: ClusterRecord, name: str, reason: str, now) -> str:
        member = rec.members[name]
        jobs = await self.nodes.reschedule(names, name)
        warning = await self.nodes.remove_member(names, rec, member)
        self._release(rec, name, now)
        if warning:
            self.log.warning("%s: %s", rec.key, warning)
        jobs_text = f"{jobs} running job{'s' if jobs != 1 else ''} rescheduled"
        return f"member {name} lost: {reason}; {jobs_text}"

    def _release(self, rec: ClusterRecord, name: str, now: datetime) -> None:
        book = member_addresses(rec.subnet, self.address_quarantine, rec.addresses)
        book.release(name, now.timestamp())
        rec.addresses = book.to_dict()
        rec.members.pop(name, None)
        self._measured.pop(name, None)
        self.starts.registered[rec.key].discard(name)

    @staticmethod
    def _members(
        rec: ClusterRecord, hosts: dict[str, sge.HostState], workers: dict[str, spark.WorkerUse]
    ) -> list[Member]:
        """The scaler's members: Grid Engine's jobs and free consumables, with a member's
        Spark executors counted as one more running job and taken off what is free."""
        members = []
        for m in rec.members.values():
            host = hosts.get(m.name)
            use = workers.get(m.name)
            free = host.free if host else None
            if free is not None and use is not None:
                free = Capacity(max(0, free.cores - use.cores), max(0, free.memory - use.memory))
            executors = 1 if use is not None and use.cores else 0
            members.append(
                Member(
                    m.name,
                    parse_time(m.joined_at or m.started_at),  # its lifetime: since joining
                    running_jobs=(host.running_jobs if host else 0) + executors,
                    draining=m.draining or bool(host and host.disabled),
                    preemptible=m.preemptible,
                    joined=bool(host and host.reporting),
                    free=free,
                )
            )
        return members

    # ---- Spark workers on demand -----------------------------------------------------------

    @staticmethod
    def _spark_use(rec: ClusterRecord, sparks: spark.SparkView) -> list[str]:
        """Turn the cluster's Spark use on when Spark first wants it; the log line saying so."""
        if rec.spark_in_use or not spark_use.spark_in_use(sparks, False):
            return []
        rec.spark_in_use = True
        return [
            f"Spark is in use ({spark_use.why_in_use(sparks)}): members run a Spark "
            "worker from now on"
        ]

    async def _start_workers(self, rec: ClusterRecord, hosts: dict, waiting: bool) -> list[str]:
        """Start the Spark worker of each member :func:`.spark_use.workers_to_start` names
        (in parallel; ``waiting``: Spark applications wait for workers); a member whose start
        failed is tried again in the next pass."""
        reporting = [name for name, host in hosts.items() if host.reporting]
        wanted = spark_use.workers_to_start(
            rec.spark_in_use, rec.members.values(), reporting, waiting
        )
        if not wanted:
            return []
        warnings = await asyncio.gather(*(self.nodes.start_worker(name) for name in wanted))
        started = []
        for name, warning in zip(wanted, warnings, strict=True):
            if warning:
                self.log.warning("%s: %s", rec.key, warning)
            elif name in rec.members:
                rec.members[name].spark_worker = True
                started.append(name)
        return started

    def _keep_spares(self, names, rec: ClusterRecord, policy: ScalingPolicy, now) -> bool:
        """While the cluster is quiet, top its spares up and register those that are not Grid
        Engine hosts yet (a task); whether the record changed."""
        wanted = spares.spares_wanted(policy.min_members, policy.max_members, self.spare_members)
        starting = self.starts.starting.get(rec.key, ())
        if not spares.quiet(rec, starting) or self.starts.registering(rec.key):
            return False
        book = member_addresses(rec.subnet, self.address_quarantine, rec.addresses)
        try:
            added = spares.reserve(
                rec, wanted, names.member, lambda name: book.assign(name, now.timestamp())
            )
        except AddressesExhausted:
            added = []  # fewer spares: a scale-up names and registers its members itself
        rec.addresses = book.to_dict()
        self.starts.register_spares(names, rec, policy.capacity)
        return bool(added)

    # ---- acting ----------------------------------------------------------------------------

    async def _act(self, decision: Decision, names, rec, model, policy, mounts, now) -> list:
        if decision.action == "scale_up":
            return await self._scale_up(decision, names, rec, model, policy, mounts, now)
        if decision.action == "drain":
            await self.nodes.drain(names, decision.member)
            rec.members[decision.member].draining = True
            rec.last_operation_at = now.isoformat()
            return [f"drain {decision.member}: {decision.reason}"]
        if decision.action == "remove":
            member = rec.members[decision.member]
            warning = await self.nodes.remove_member(names, rec, member)
            self._release(rec, member.name, now)
            return [f"remove {member.name}: {decision.reason}"] + ([warning] if warning else [])
        return []

    async def _scale_up(self, decision, names, rec, model, policy, mounts, now) -> list[str]:
        count, limited = decision.count, []
        if self.quota_fit is not None:  # the user's CPU, memory and GPU limits
            count, limited = await self.quota_fit(rec, model, count)
            if not count:
                return limited
        scratch_gb = int(rec.settings.get("scratch_gb", 0))
        count, lines = await self._scratch_fit(names, rec, count, scratch_gb)
        lines = limited + lines
        if not count:
            return lines
        book = member_addresses(rec.subnet, self.address_quarantine, rec.addresses)
        new = []
        for name, address in spares.take(rec, count):  # registered already (most likely)
            new.append(self._new_member(rec, name, address, now, scratch_gb))
        for _ in range(count - len(new)):
            name = names.member(rec.next_member)
            try:
                address = book.assign(name, now.timestamp())
            except AddressesExhausted as e:
                lines.append(f"cannot add more members now: {e}")
                break
            rec.next_member += 1
            new.append(self._new_member(rec, name, address, now, scratch_gb))
        rec.addresses = book.to_dict()
        rec.members.update({m.name: m for m in new})
        rec.last_operation_at = now.isoformat()
        await self.save()  # a crash from here on finds the members in the record: adopted or lost
        total = len([m for m in rec.members.values() if not m.draining])
        lines.insert(0, f"scale up by {len(new)} to {total} members: {decision.reason}")
        return lines

    @staticmethod
    def _new_member(rec, name: str, address: str, now, scratch_gb: int) -> MemberRecord:
        return MemberRecord(
            name,
            address,
            now.isoformat(),
            scratch=scratch_gb > 0,
            preemptible=bool(rec.settings.get("preemptible")),
            waiting_to_start=True,
        )

    async def _scratch_fit(self, names, rec, count: int, scratch_gb: int) -> tuple[int, list]:
        """How many of ``count`` new members can have their ``/scratch`` now, and the log
        line saying why not all (once, until the number changes)."""
        if not scratch_gb or self.admission is None:
            return count, []
        request = StorageRequest("scratch_gb", rec.user, scratch_gb * GIB, count, what="/scratch")
        target = self.nodes.scratch(rec.cluster_id, names.member(rec.next_member)).dir
        verdict = await asyncio.to_thread(self.admission.check, target, request)
        if verdict.admitted:
            self._scratch_notes.pop(rec.key, None)
            return count, []
        fit = min(count, verdict.room_bytes // (scratch_gb * GIB))
        if self._scratch_notes.get(rec.key) == fit:
            return fit, []
        self._scratch_notes[rec.key] = fit
        starting = f"only {fit} start" if fit else "none starts"
        return fit, [
            f"{count - fit} of {count} new members cannot have their /scratch, so "
            f"{starting}: scratch_gb: {verdict.message}"
        ]

    # ---- reporting -------------------------------------------------------------------------

    def _report(self, rec, decision: Decision, policy, members, requests) -> list[str]:
        lines = []
        waiting = {request.job_id for request in requests}
        for item in decision.unsatisfiable:
            if item.job_id not in rec.reported:
                lines.append(f"never scheduled: {item.reason}")
        rec.reported = sorted({u.job_id for u in decision.unsatisfiable} & waiting)
        active = [m for m in members if not m.draining]
        note = ""  # a static cluster does not scale: being at its size is no news
        if (
            decision.action == "none"
            and decision.members_needed
            and (policy.min_members < len(active) >= policy.max_members)
        ):
            note = decision.reason
        if note and note != self._notes.get(rec.key):
            lines.append(f"at the maximum: {note}")
        self._notes[rec.key] = note
        return lines

    def forget(self, key: str) -> None:
        self._notes.pop(key, None)
        self._scratch_notes.pop(key, None)
        self._sizing.pop(key, None)
        self._reported.pop(key, None)
        self._worker_at_boot.pop(key, None)
        for watch, _ in self._watches.pop(key, []):
            watch.cancel()
        self.arrivals.forget(key)
        self.starts.forget(key)


def _upper_dir(container: dict) -> str | None:
    """The container's writable layer (overlay2 upper directory), if the engine says."""
    return ((container.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")


def _member_state(
    member: MemberRecord, host: sge.HostState | None, use: spark.WorkerUse | None
) -> str:
    if host is None or not host.reporting:
        return "starting" if not member.joined else "unreachable"
    if member.draining or host.disabled:
        return "draining"
    return "busy" if host.running_jobs or (use and use.cores) else "idle"


def _view(
    rec: ClusterRecord, hosts, pending, sparks: spark.SparkView, decision: Decision, now: datetime
) -> dict:
    """What ``GET`` shows besides the record: members and their state, pending jobs (with the
    complex defaults applied), jobs that no member can ever run, Spark's workers and
    applications, and the last decision."""
    members = []
    for m in rec.members.values():
        host = hosts.get(m.name)
        use = sparks.workers.get(m.name)
        free = host.free if host else None
        members.append(
            {
                "name": m.name,
                "address": m.address,
                "state": _member_state(m, host, use),
                "running_jobs": host.running_jobs if host else 0,
                "started_at": m.started_at,
                "preemptible": m.preemptible,
                "scratch": m.scratch,
                "free": {"cores": free.cores, "memory_bytes": free.memory} if free else None,
                "spark": {
                    "cores_used": use.cores,
                    "memory_used_bytes": use.memory,
                    "alive": use.alive,
                }
                if use
                else None,
            }
        )
    return {
        "observed_at": now.isoformat(),
        "members": members,
        "pending": [
            {
                "job_id": j.job_id,
                "name": j.name,
                "owner": j.owner,
                "state": j.state,
                "tasks": j.tasks,
                "slots": j.slots,
                "static_cores": j.static_cores,
                "static_mem_bytes": j.static_mem,
            }
            for j in pending
        ],
        "unsatisfiable": [{"job_id": u.job_id, "reason": u.reason} for u in decision.unsatisfiable],
        "spark": {
            "master": "alive" if sparks.master_alive else "not answering",
            "workers": len(sparks.workers),
            "applications": sparks.applications,
            "in_use": rec.spark_in_use,
        },
        "decision": {
            "action": decision.action,
            "reason": decision.reason,
            "members_needed": decision.members_needed,
        },
    }
