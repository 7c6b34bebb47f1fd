"""The lifecycle reconciler: observe every running workspace, decide, act once.

A pass reads the hub's active servers (one request per page of users), the workspace
containers (one Docker call) and their CPU counters (cgroup files, no Docker call), asks each
ready workspace's Jupyter server about kernels and terminals (directly, without counting as
activity), then calls :func:`~hub_services.lifecycle.policy.decide` for each and carries out
stops, security restarts and reminders. Actions go through the hub API like a person's would
(the hub records them in the activity journal with the reason); the service's memory per
workspace (:mod:`.cycles`) marks an action pending before it starts and done after, so a
service killed at any point finishes the same action on restart and never does a second.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jupyterhub.utils import exponential_backoff, maybe_future
from traitlets import Callable, Float, Instance, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient, HubServer
from benchhub.labels import WORKSPACE, workspace_key

from . import policy as policy_module
from .activity_log import ActivityLog
from .cpu import CpuWindow, read_cpu
from .cycles import Cycle, CycleStore
from .metrics import LifecycleMetrics
from .policy import (
    Activity,
    Decision,
    Policy,
    PolicyUnreadable,
    carry_over,
    decide,
    next_trigger,
)
from .reminders import Reminder
from .restarts import InterruptedRestarts
from .server_probe import ServerActivity, probe_server, server_token

__all__ = ["LifecycleService", "PassReport"]

ACTOR = "service:lifecycle"


@dataclass
class PassReport:
    """What one pass saw and did (for logs and the benchmark)."""

    workspaces: int = 0
    hub_calls: int = 0
    probes: int = 0
    actions: int = 0
    reminders: int = 0
    seconds: float = 0.0


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class LifecycleService(LoggingConfigurable):
    """Enforces each workspace's run-time policy. Settings are traits (``c.LifecycleService``)."""

    interval = Float(60, help="Seconds between policy passes, e.g. 60.").tag(config=True)
    hour = Float(
        3600,
        help="""Seconds in an 'hour' of the workspace options (auto_shutdown_hours,
        reminder_hours). 3600 in production; tests and demos shorten it.""",
    ).tag(config=True)
    restart_every = Float(
        30 * 86400, help="Seconds between security restarts, counted from start (30 days)."
    ).tag(config=True)
    not_accessed_limit = Float(
        7 * 86400, help="Seconds without any request after which a workspace stops (7 days)."
    ).tag(config=True)
    idle_cpu_share = Float(
        0.05,
        help="""A workspace is idle only while its container uses less than this share of its
        CPU limit over idle_window (0.05 = 5 %), among the other idle conditions.""",
    ).tag(config=True)
    idle_window = Float(
        300, help="Seconds over which CPU use is measured for the idle rule, e.g. 300."
    ).tag(config=True)
    server_port = Integer(8888, help="Port of the Jupyter server in workspace containers.").tag(
        config=True
    )
    probe_concurrency = Integer(
        32, help="How many workspace servers are asked about kernels at once."
    ).tag(config=True)
    stop_timeout = Float(300, help="Seconds a restart waits for the workspace to stop.").tag(
        config=True
    )
    journal = Unicode(
        "", help="The hub's activity journal file to copy into the activity log ('' = none)."
    ).tag(config=True)
    hub_url = Unicode(
        "", help="Public hub URL for reminder texts, e.g. https://hub.example.org"
    ).tag(config=True)
    prefix = Unicode(
        "bench",
        help="""Prefix of this hub's Docker names (the hub's BENCHHUB_PREFIX), e.g. bench: only
        workspace containers named <prefix>-… are this hub's (another hub on the same engine
        may have a workspace of the same user and name).""",
    ).tag(config=True)
    restart_interrupted_within = Float(
        3600,
        help="""Seconds after a host reboot or an engine restart during which a workspace that
        was running when it happened is started again by itself, e.g. 3600 (docs/
        operations.md, "The host reboots"); 0 = never (they stay errored, with the reason).""",
    ).tag(config=True)
    reminder_hook = Callable(
        None,
        allow_none=True,
        help="""Called with a Reminder (user, workspace, event, at, reason) before a shutdown
        or restart, awaited if it returns an awaitable. SMTPReminder() mails the owner.
        The hub's home page shows a banner either way.""",
    ).tag(config=True)
    hub = Instance(HubClient)
    activity_log = Instance(ActivityLog)
    cycles = Instance(CycleStore)
    engine = Instance(DockerEngine, help="The Docker Engine (docker-py behind a thread pool).")

    @default("hub")
    def _default_hub(self):
        return HubClient()

    @default("engine")
    def _default_engine(self):
        return DockerEngine(threads=4, timeout=30)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.schedule: dict[str, dict] = {}  # key -> what the API and home page show
        self._windows: dict[str, CpuWindow] = {}
        # when each workspace was last seen busy (CPU over the share, unknown CPU, a busy
        # kernel); not persisted: after a restart of the service every workspace counts as
        # busy at that moment, so a restart can delay an idle shutdown but never hasten one
        self._last_busy: dict[str, datetime] = {}
        self._since = policy_module.utcnow()
        self._in_flight: dict[str, asyncio.Task] = {}
        self._probe_slots = asyncio.Semaphore(self.probe_concurrency)
        self._server_tokens: dict[str, str | None] = {}  # container id -> its server token
        self.metrics = LifecycleMetrics()  # /services/lifecycle/metrics
        self.last_pass: PassReport | None = None
        self.last_pass_at: datetime | None = None
        self.last_error = ""

    @property
    def settings(self) -> Policy:
        """The service's own part of every workspace's policy (restart, not-accessed limit, CPU
        share); the shutdown and reminders come from each workspace's options."""
        return Policy(
            shutdown_mode="none",
            shutdown_after=None,
            restart_every=timedelta(seconds=self.restart_every),
            not_accessed_limit=timedelta(seconds=self.not_accessed_limit),
            idle_cpu_share=self.idle_cpu_share,
        )

    # ---- one pass ------------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        """Observe, decide and start the due actions (they finish in the background)."""
        t0, calls0 = time.monotonic(), self.hub.calls
        report = PassReport()
        if self.journal:
            await asyncio.to_thread(self.activity_log.ingest, self.journal)
        servers = [s async for s in self.hub.active_servers()]
        await self._restart_interrupted(servers)
        containers = await self._containers()
        self._sample_cpu(containers)
        cycles = await asyncio.to_thread(self.cycles.all)
        await self._resume_pending(cycles, {s.key: s for s in servers})
        ready = [s for s in servers if s.model.get("ready") and s.key not in self._in_flight]
        plans = []
        for server in ready:
            plan = await self._plan(server, cycles.get(server.key))
            if plan is not None:
                plans.append(plan)
        now = policy_module.utcnow()
        asked = [(srv, pol) for srv, cyc, pol in plans if self._needs_probe(srv, cyc, pol, now)]
        answers = await asyncio.gather(
            *(self._probe(srv, containers.get(srv.key)) for srv, _ in asked)
        )
        probes = {srv.key: answer for (srv, _), answer in zip(asked, answers, strict=True)}
        for server, cycle, policy in plans:
            self._consider(server, cycle, policy, probes, report)
        report.probes = len(asked)
        active = {s.key for s in servers}
        for key in set(self.schedule) - active:
            self.schedule.pop(key, None)
        for key, cycle in cycles.items():  # a stop ends the run: forget it (unless mid-action)
            if key not in active and not cycle.pending and key not in self._in_flight:
                await asyncio.to_thread(self.cycles.forget, key)
        for key in set(self._windows) - set(containers):
            self._windows.pop(key, None)
        running_ids = {c["Id"] for c in containers.values()}
        for container_id in set(self._server_tokens) - running_ids:
            self._server_tokens.pop(container_id, None)
        for key in set(self._last_busy) - active:
            self._last_busy.pop(key, None)
        report.workspaces = len(servers)
        report.hub_calls = self.hub.calls - calls0
        report.seconds = time.monotonic() - t0
        return report

    async def _restart_interrupted(self, servers: list[HubServer]) -> None:
        """Start again, once, what died with the engine or the host (:mod:`.restarts`)."""
        restarts = InterruptedRestarts(
            self.activity_log, self.hub, ACTOR, self.restart_interrupted_within, self.log
        )
        for key, restart in await restarts.due({s.key for s in servers} | {*self._in_flight}):
            self._launch(key, restart)

    async def _containers(self) -> dict[str, dict]:
        found = await self.engine.call(
            "containers", filters={"label": WORKSPACE, "status": "running"}
        )
        return {
            workspace_key(c["Labels"]): c
            for c in found
            if any(name.lstrip("/").startswith(f"{self.prefix}-") for name in c["Names"])
        }

    def _sample_cpu(self, containers: dict[str, dict]) -> None:
        ids = {c["Id"]: key for key, c in containers.items()}
        now = time.monotonic()
        for container_id, sample in read_cpu(list(ids)).items():
            window = self._windows.setdefault(ids[container_id], CpuWindow(self.idle_window))
            window.add(now, sample)

    def _needs_probe(self, server: HubServer, cycle: Cycle, policy: Policy, now) -> bool:
        """Whether to ask the server about kernels and terminals this pass. They only matter
        to the idle rule, and not while the container's CPU use already says busy; even then
        only once the idle shutdown or a reminder of it could fall due before the next pass
        (:func:`next_trigger`, computed as if no kernel were busy: the earliest it can be)."""
        if policy.shutdown_mode != "idle":
            return False
        window = self._windows.get(server.key)
        share = window.share() if window else None
        if share is None or share >= policy.idle_cpu_share:
            return False
        idle = replace(self._activity(server, cycle, None, asked=False), cpu_share=share)
        trigger = next_trigger(policy, idle)
        return trigger is not None and trigger <= now + timedelta(seconds=2 * self.interval)

    async def _probe(self, server: HubServer, container: dict | None) -> ServerActivity | None:
        """Ask the workspace's server about kernels and terminals with the server's own token
        (never the service's: whatever answers on the port is the user's program); None when
        it cannot be asked or does not answer properly (then it counts as busy)."""
        if container is None:
            return None
        networks = container.get("NetworkSettings", {}).get("Networks", {})
        address = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), None)
        if address is None:
            return None
        url = f"http://{address}:{self.server_port}{server.model.get('url', '/')}"
        async with self._probe_slots:
            try:
                token = await self._server_token(container["Id"])
                if token is None:
                    self.log.info(
                        "%s: its container has no server token: counted as busy", server.key
                    )
                    return None
                return await probe_server(url, token)
            except Exception as e:
                self.log.info("%s: no kernel figures (%s): counted as busy", server.key, e)
                return None

    async def _server_token(self, container_id: str) -> str | None:
        """The server token in the container's environment (one ``docker inspect`` per
        container: a container keeps its token for life, a new start is a new container)."""
        if container_id not in self._server_tokens:
            inspect = await self.engine.call("inspect_container", container_id)
            self._server_tokens[container_id] = server_token(inspect)
        return self._server_tokens[container_id]

    # ---- deciding ------------------------------------------------------------------------------

    async def _plan(self, server: HubServer, cycle: Cycle | None):
        """``(server, cycle, policy)`` to decide on, or None if its policy is unreadable."""
        cycle = await self._current_cycle(server, cycle)
        try:
            policy = Policy.from_options(
                server.model.get("user_options") or {}, self.settings, timedelta(seconds=self.hour)
            )
        except PolicyUnreadable as e:
            await self._skip(server, cycle, e.reason)
            return None
        return server, cycle, policy

    def _consider(self, server, cycle, policy, probes: dict, report: PassReport) -> None:
        """Decide on one workspace and launch what is due. A workspace whose server was not
        asked (its idle shutdown is not near) is decided as if no kernel were busy: nothing
        can fall due before the next pass, and the schedule shows when it would."""
        asked = server.key in probes
        probe = probes.get(server.key)
        self._note_busy(server.key, policy, probe, asked)
        activity = self._activity(server, cycle, probe, asked)
        decision = decide(policy, activity, policy_module.utcnow())
        self.schedule[server.key] = _view(server, policy, activity, decision, probe, asked)
        if decision.action in ("stop", "restart"):
            report.actions += 1
            self._launch(server.key, self._act(server, cycle, policy, activity, decision))
        elif decision.action == "remind":
            report.reminders += 1
            self._launch(server.key, self._remind(server, cycle, decision))

    async def _current_cycle(self, server: HubServer, cycle: Cycle | None) -> Cycle:
        """The cycle of this run; a new one (with the carried-over time after our security
        restart) when the hub reports a different start."""
        started = server.model.get("started") or ""
        if cycle is not None and cycle.started == started:
            return cycle
        carried = 0.0
        if cycle and cycle.carry_next and _time(started) >= _time(cycle.carry_next["after"]):
            carried = float(cycle.carry_next["carried_over_s"])
        fresh = Cycle(started=started, carried_over_s=carried)
        await asyncio.to_thread(self.cycles.save, server.key, fresh)
        return fresh

    def _note_busy(self, key: str, policy: Policy, probe, asked: bool) -> None:
        window = self._windows.get(key)
        share = window.share() if window else None
        moments = [self._last_busy.get(key, self._since)]
        if share is None or share >= policy.idle_cpu_share or (asked and probe is None):
            moments.append(policy_module.utcnow())
        if probe is not None:
            if probe.kernels_busy:
                moments.append(policy_module.utcnow())
            if probe.last_kernel_activity:
                moments.append(probe.last_kernel_activity)
        self._last_busy[key] = max(moments)

    def _activity(self, server: HubServer, cycle: Cycle, probe, asked: bool) -> Activity:
        """The figures for :func:`decide`; a server asked but not answering counts as busy."""
        window = self._windows.get(server.key)
        last_request = _time(server.model.get("last_activity"))
        return Activity(
            started=_time(cycle.started),
            carried_over=timedelta(seconds=cycle.carried_over_s),
            last_request=last_request,
            last_terminal_input=probe.last_terminal_input if probe else None,
            last_busy=self._last_busy.get(server.key, self._since),
            kernels_busy=probe.kernels_busy if probe else asked,
            cpu_share=window.share() if window else None,
            last_access=last_request,
            reminders_sent=frozenset(cycle.reminders_sent),
            actions_done=frozenset(cycle.actions_done),
        )

    async def _skip(self, server: HubServer, cycle: Cycle, reason: str) -> None:
        """A policy that cannot be read: never act on the workspace; log the reason once."""
        self.schedule[server.key] = {
            "user": server.user,
            "workspace": server.name,
            "project": server.project,
            "next_event": None,
            "policy_error": reason,
        }
        if cycle.skipped == reason:
            return
        self.log.warning("%s: policy unreadable, left alone: %s", server.key, reason)
        uid = f"skip:{server.key}:{cycle.started}:{reason}"
        await self._log_entry(
            server.user, server.name, "policy-skipped", f"policy not enforced: {reason}", uid
        )
        await asyncio.to_thread(self.cycles.save, server.key, replace(cycle, skipped=reason))

    # ---- acting --------------------------------------------------------------------------------

    def _launch(self, key: str, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._in_flight[key] = task
        task.add_done_callback(lambda t, key=key: self._landed(key, t))

    def _landed(self, key: str, task: asyncio.Task) -> None:
        self._in_flight.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("%s: action failed", key, exc_info=task.exception())

    async def _act(self, server, cycle, policy, activity, decision: Decision) -> None:
        now = policy_module.utcnow()
        pending = {
            "event_id": decision.event_id,
            "action": decision.action,
            "reason": decision.reason,
            "phase": "stopping",
        }
        carry = None
        if decision.action == "restart":
            carried = carry_over(policy, activity, now).total_seconds()
            carry = {"after": now.isoformat(), "carried_over_s": carried}
        cycle = replace(cycle, pending=pending, carry_next=carry)
        await asyncio.to_thread(self.cycles.save, server.key, cycle)
        self.log.info("%s: %s (%s)", server.key, decision.action, decision.reason)
        await self._carry_out(server.user, server.name, cycle)

    async def _carry_out(self, user: str, name: str, cycle: Cycle) -> None:
        """Finish ``cycle.pending`` from its phase; each step is safe to repeat."""
        key, pending = f"{user}/{name}", dict(cycle.pending)
        if pending["phase"] == "stopping":
            what = "" if pending["action"] == "restart" else "policy: "
            await self.hub.stop_server(user, name, f"{what}{pending['reason']}")
            self.metrics.stop_requested(f"{what}{pending['reason']}")
            if pending["action"] == "restart":
                await self._wait_stopped(user, name)
                pending["phase"] = "starting"
                cycle = replace(cycle, pending=pending)
                await asyncio.to_thread(self.cycles.save, key, cycle)
        if pending["phase"] == "starting":
            await self.hub.start_server(user, name)
        await asyncio.to_thread(self.cycles.save, key, cycle.with_done(pending["event_id"]))

    async def _wait_stopped(self, user: str, name: str) -> None:
        async def stopped():
            model = await self.hub.server(user, name)
            return model is None or (not model.get("ready") and not model.get("pending"))

        await exponential_backoff(
            stopped, f"{user}/{name} did not stop", timeout=self.stop_timeout, max_wait=2
        )

    async def _resume_pending(self, cycles: dict[str, Cycle], servers: dict[str, HubServer]):
        """Finish actions a killed service left pending (once: the hub state decides)."""
        for key, cycle in cycles.items():
            if not cycle.pending or key in self._in_flight:
                continue
            user, name = key.split("/", 1)
            server = servers.get(key)
            same_run = server is not None and server.model.get("started") == cycle.started
            if server is not None and not same_run:
                # a new run already: the restart (or a person) started it again
                await asyncio.to_thread(
                    self.cycles.save, key, cycle.with_done(cycle.pending["event_id"])
                )
                continue
            self.log.info("%s: finishing %s left pending", key, cycle.pending["action"])
            self._launch(key, self._carry_out(user, name, cycle))

    async def _remind(self, server: HubServer, cycle: Cycle, decision: Decision) -> None:
        reminder = Reminder(
            server.user,
            server.name,
            decision.next_event,
            decision.next_event_at,
            decision.reason,
            self.hub_url,
        )
        if self.reminder_hook is not None:
            await maybe_future(self.reminder_hook(reminder))
        await self._log_entry(
            server.user,
            server.name,
            "reminded",
            f"reminder: {decision.reason}",
            f"{server.key}:{decision.event_id}",
            {"event": decision.next_event, "at": decision.next_event_at.isoformat()},
        )
        cycle = (await asyncio.to_thread(self.cycles.all)).get(server.key, cycle)
        cycle = cycle.with_reminder(decision.event_id)
        await asyncio.to_thread(self.cycles.save, server.key, cycle)

    async def _log_entry(self, user, workspace, action, description, uid, fields=None) -> None:
        entry = {
            "uid": uid,
            "at": policy_module.utcnow(),
            "user": user,
            "workspace": workspace,
            "actor": ACTOR,
            "action": action,
            "description": description,
            "fields": fields or {},
        }
        await asyncio.to_thread(self.activity_log.append, entry)

    # ---- the loop ------------------------------------------------------------------------------

    async def loop(self) -> None:
        while True:
            try:
                self.last_pass = await self.run_pass()
                self.last_pass_at, self.last_error = policy_module.utcnow(), ""
                self.log.debug("pass: %s", self.last_pass)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                self.log.error("lifecycle pass failed; nothing was acted on", exc_info=True)
            await asyncio.sleep(self.interval)

    def health(self) -> dict:
        """The last pass: when, how long, what it saw; and the last error ("" if it worked)."""
        report = vars(self.last_pass) if self.last_pass else None
        at = self.last_pass_at.isoformat() if self.last_pass_at else None
        return {
            "last_pass_at": at,
            "last_pass": report,
            "last_error": self.last_error,
            "actions_in_flight": sorted(self._in_flight),
        }


def _view(server, policy: Policy, activity: Activity, decision: Decision, probe, asked) -> dict:
    """The schedule entry of one workspace for the API and the hub's home page
    (``kernels_busy`` None: the server was not asked this pass)."""
    lead = max(policy.reminders, default=timedelta(0))
    remaining = decision.remaining.total_seconds() if decision.remaining is not None else None
    return {
        "user": server.user,
        "workspace": server.name,
        "project": server.project,
        "next_event": decision.next_event,
        "next_event_at": decision.next_event_at.isoformat() if decision.next_event_at else None,
        "remaining_seconds": remaining,
        "reason": decision.reason,
        "reminder_due": remaining is not None and remaining <= lead.total_seconds(),
        "policy": {
            "shutdown_mode": policy.shutdown_mode,
            "shutdown_after_seconds": (
                policy.shutdown_after.total_seconds() if policy.shutdown_after else None
            ),
            "keep_until": policy.keep_until.isoformat() if policy.keep_until else None,
            "restart_every_seconds": policy.restart_every.total_seconds(),
        },
        "activity": {
            "started": activity.started.isoformat(),
            "last_request": activity.last_request.isoformat() if activity.last_request else None,
            "kernels_busy": activity.kernels_busy if asked else None,
            "kernels": probe.kernels if probe else None,
            "cpu_share": activity.cpu_share,
        },
    }
