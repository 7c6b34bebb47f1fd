"""The usage ledger's recorder: the engine's events as they happen, and a reconciliation.

:class:`UsageRecorder` keeps :class:`~.ledger.Ledger` true to the engine:

- **events**: a container ``start`` opens a run (its ``StartedAt`` read with ``docker
  inspect``), a ``die`` closes it at the event's time; workspaces and cluster nodes alike.
- **a reconciliation** when the service starts and every ``interval`` seconds: every running
  container of this hub is looked at (all of them at the start and every ``full_every``
  passes, else only those the ledger does not hold as open), and every open run whose
  container no longer runs is closed by the rule of :mod:`.run_evidence` — so runs that began
  or ended while the service (or the hub) was down are recorded when it comes back.
- **storage**: one paged read of every workspace in the hub (stopped ones included) per pass;
  each workspace's ``storage_gb`` and project are its storage period. A cluster member's
  ``/scratch`` is read with its run (:func:`scratch_allocation_gb`) and is storage while the
  member runs.
- **totals**: when it starts (the baseline) and after each pass, everything the ledger holds
  summed for the service's Prometheus series (:class:`~.metrics.UsageTotals`), when
  ``metrics`` is given.

Every write is keyed (:mod:`.ledger`), so repeating any step, or two of them racing, records
nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from traitlets import Bool, Float, Instance, Integer, Unicode
from traitlets.config import LoggingConfigurable

from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient, HubServer
from benchhub.labels import WORKSPACE, cluster_label
from benchhub.storage_admission import GIB
from benchhub.storage_allocations import StorageAdmission

from .activity_log import ActivityLog
from .ledger import Ledger, OpenRun, to_us
from .metrics import LifecycleMetrics
from .run_evidence import belongs, event_time_us, observed_run, run_end, scratch_source

__all__ = ["UsageRecorder", "scratch_allocation_gb"]


def scratch_allocation_gb(source: str) -> float:
    """GB allocated to the scratch volume whose mount is ``source`` (``<scratch root>/<cluster
    id>/<member>/mnt``, as the clusters service makes it), as storage admission counts it:
    the larger of its claim record and its image; 0 when there is no such volume. Blocks."""
    volume_dir = Path(source).parent
    if not volume_dir.is_dir():
        return 0.0
    admission = StorageAdmission(roots=[str(volume_dir.parent.parent)])
    for allocation in admission.allocations():
        if allocation.path == str(volume_dir):
            return allocation.allocated_bytes / GIB
    return 0.0


_PAGINATED = "application/jupyterhub-pagination+json"


class UsageRecorder(LoggingConfigurable):
    """Records runs and storage into the ledger (settings: ``c.UsageRecorder``)."""

    interval = Float(
        60, help="Seconds between reconciliations of the ledger with the engine, e.g. 60."
    ).tag(config=True)
    full_every = Integer(
        10,
        help="""Every this many reconciliations, inspect every running container (not only
        those the ledger does not know), to catch a restart whose events were missed.""",
    ).tag(config=True)
    prefix = Unicode("bench", help="This hub's Docker name prefix (BENCHHUB_PREFIX).").tag(
        config=True
    )
    journal = Unicode("", help="The hub's activity journal (LifecycleService.journal).").tag(
        config=True
    )
    enabled = Bool(
        True,
        help="""Record the ledger (False: the service neither watches the engine nor keeps
        the ledger; its usage API answers from what is recorded). For measurements, e.g. the
        spawn overhead benchmark; a site leaves it on.""",
    ).tag(config=True)
    ledger = Instance(Ledger)
    metrics = Instance(LifecycleMetrics, allow_none=True)
    activity_log = Instance(ActivityLog)
    engine = Instance(DockerEngine)
    hub = Instance(HubClient)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.passes = 0
        self.last_error = ""
        self._projects: dict[str, str] = {}  # "user/workspace" -> project, from the hub
        self._events: asyncio.Queue | None = None

    # ---- events --------------------------------------------------------------------------------

    def watch(self) -> None:
        """Follow the engine's start and die events (call once, on the event loop)."""
        loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()

        def on_event(event: dict) -> None:  # on the watching thread
            loop.call_soon_threadsafe(self._events.put_nowait, event)

        self.engine.watch(on_event, events=("start", "die"))

    async def follow_events(self) -> None:
        """Apply the queued events one by one, for ever."""
        while True:
            event = await self._events.get()
            try:
                await self.on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.error("usage ledger: event %s not applied", event, exc_info=True)

    async def on_event(self, event: dict) -> None:
        """One container event: ``start`` opens a run, ``die`` closes one (a container the
        ledger did not know yet is inspected, so a run that began and ended between passes
        is recorded whole)."""
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        names = [attributes.get("name", "")]
        if not belongs(attributes, names, self.prefix):
            return
        container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
        action = event.get("Action") or event.get("status")
        if action == "start":  # a new run: its project as the hub has it now
            await self._open(container_id, to_us(time.time()), fresh_project=True)
        elif action == "die":
            at = event_time_us(event) or to_us(time.time())
            closed = await asyncio.to_thread(self.ledger.close_run, container_id, at, "event")
            if not closed and await self._open(container_id, at):
                await asyncio.to_thread(self.ledger.close_run, container_id, at, "event")

    async def _open(self, container_id: str, seen_us: int, fresh_project: bool = False) -> bool:
        """Open the run a running (or just stopped) container shows; False if it is gone.
        Its project is the workspace's in the hub (asked again with ``fresh_project``, else
        as the last pass read it)."""
        inspect = await self.engine.inspect(container_id)
        run = observed_run(inspect) if inspect else None
        if run is None:
            return False
        source = scratch_source(inspect)
        if source is not None:
            gb = await asyncio.to_thread(scratch_allocation_gb, source)
            run = dataclasses.replace(run, scratch_gb=gb)
        project = await self._project(run.user, run.workspace, fresh_project)
        await asyncio.to_thread(self.ledger.open_run, run, project, seen_us)
        return True

    async def _project(self, user: str, workspace: str, fresh: bool) -> str:
        key = f"{user}/{workspace}"
        if fresh or key not in self._projects:
            try:
                self._projects[key] = await self.hub.project_of(user, workspace) or ""
            except Exception as e:  # the next pass corrects it from the hub's list
                self.log.info("usage ledger: project of %s unknown for now (%s)", key, e)
                return ""
        return self._projects[key]

    # ---- reconciliation ------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """One pass (see the module docstring). Containers are listed before the journal is
        read: the hub journals a stop before it removes the container, so a container found
        gone has its entry in the log by the time its run is closed."""
        now = to_us(time.time())
        listed = await self._containers()
        if self.journal:
            await asyncio.to_thread(self.activity_log.ingest, self.journal)
        servers = await self._servers()
        if servers is not None:
            self._projects = {s.key: s.project for s in servers}
        running = {c["Id"] for c in listed if c.get("State") == "running"}
        full = self.passes % max(self.full_every, 1) == 0
        for run in await asyncio.to_thread(self.ledger.open_runs):
            if full or run.container_id not in running:
                await self._close_if_ended(run)
        known = {run.container_id for run in await asyncio.to_thread(self.ledger.open_runs)}
        for container_id in sorted(running):
            if full or container_id not in known:
                await self._open(container_id, now)
        await asyncio.to_thread(self.ledger.mark_seen, running & known, now)
        if servers is not None:
            await self._record_storage(servers, now)
        await self._record_totals(now)
        self.passes += 1

    async def _record_totals(self, now: int) -> None:
        if self.metrics is not None:
            self.metrics.usage.record(*await asyncio.to_thread(self.ledger.totals, now))

    async def _containers(self) -> list[dict]:
        found = []
        for label in (WORKSPACE, f"{cluster_label('prefix')}={self.prefix}"):
            listed = await self.engine.call("containers", all=True, filters={"label": label})
            found += [c for c in listed if belongs(c.get("Labels"), c.get("Names"), self.prefix)]
        return found

    async def _close_if_ended(self, run: OpenRun) -> None:
        inspect = await self.engine.inspect(run.container_id)
        journal = None
        if inspect is None and run.kind == "workspace":
            journal = await asyncio.to_thread(
                self.ledger.journal_time,
                run.user,
                run.workspace,
                ("stopped", "errored"),
                run.start_us,
            )
        ended = run_end(run, inspect, journal)
        if ended is not None:
            stop, source = ended
            await asyncio.to_thread(self.ledger.close_run, run.container_id, stop, source)
            self.log.info(
                "usage ledger: run of %s/%s (%s) ended by %s",
                run.user,
                run.workspace,
                run.kind,
                source,
            )

    async def _servers(self) -> list[HubServer] | None:
        """Every workspace in the hub, running or not; None if the hub could not be read
        whole (then storage is left as it was)."""
        found, offset = [], 0
        try:
            while True:
                page = await self.hub.request(
                    "GET",
                    f"users?include_stopped_servers=1&offset={offset}&limit=200",
                    Accept=_PAGINATED,
                )
                users = page["items"] if isinstance(page, dict) else page
                for user in users:
                    for name, server in (user.get("servers") or {}).items():
                        if name:
                            found.append(HubServer(user["name"], name, server))
                following = (
                    page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
                )
                if not following or not users:
                    return found
                offset = following["offset"]
        except Exception as e:
            self.log.warning("usage ledger: the hub's workspaces could not be read (%s)", e)
            return None

    async def _record_storage(self, servers: list[HubServer], now: int) -> None:
        """Each workspace's allocated ``/data`` (its ``storage_gb``) from now, or from its
        creation (the activity log) when the ledger has not seen it yet; a workspace no longer
        in the hub lost its storage when it was deleted (the log), else now."""
        held = await asyncio.to_thread(self.ledger.storage_now)
        present = set()
        for server in servers:
            options = server.model.get("user_options") or {}
            gb = options.get("storage_gb")
            if isinstance(gb, bool) or not isinstance(gb, int | float):
                continue  # not a BenchHub workspace
            key = (server.user, server.name)
            present.add(key)
            at = now
            if key not in held:
                after = await asyncio.to_thread(self.ledger.last_storage_end, *key) or 0
                created = await asyncio.to_thread(
                    self.ledger.journal_time, *key, ("created",), after
                )
                at = created if created is not None else now
            await asyncio.to_thread(self.ledger.set_storage, *key, server.project, float(gb), at)
        for key, (_gb, _project, start) in held.items():
            if key not in present:
                deleted = await asyncio.to_thread(
                    self.ledger.journal_time, *key, ("deleted",), start
                )
                await asyncio.to_thread(
                    self.ledger.end_storage, *key, deleted if deleted is not None else now
                )

    # ---- the loop ------------------------------------------------------------------------------

    async def loop(self) -> None:
        """Watch events and reconcile every ``interval`` seconds until cancelled (at once
        done when not ``enabled``)."""
        if not self.enabled:
            self.log.warning("usage ledger: not recorded (UsageRecorder.enabled is False)")
            return
        self.watch()
        follower = asyncio.ensure_future(self.follow_events())
        try:
            try:  # the metrics' baseline: what the ledger held before this process added to it
                await self._record_totals(to_us(time.time()))
            except Exception:
                self.log.error("usage ledger: the totals could not be read", exc_info=True)
            while True:
                try:
                    await self.reconcile()
                    self.last_error = ""
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    self.log.error("usage ledger: reconciliation failed", exc_info=True)
                await asyncio.sleep(self.interval)
        finally:
            follower.cancel()
