"""A cluster that died with the Docker engine or the host comes back with its workspace.

Called by :class:`~.service.ClusterController` for a cluster whose workspace does not run (or
that the hub does not list as running), where it used to remove the cluster at once.
:meth:`ClusterRecovery.hold_or_teardown` first looks at the cluster's manager container:

- it is gone, runs, or ended by itself: the workspace stopped, the cluster is removed as
  before (a person's stop makes the hub remove the cluster's containers, so no evidence is
  left to mistake it for an interruption);
- it died with the engine (:func:`benchhub.engine_restarts.died_with_restart` on its state,
  the record wanting it running): the cluster *waits* for its workspace. Its record stays,
  with its settings, subnet and address book; its status is ``starting`` with the reason
  "waiting for its workspace to start again: ..." (the scaler log says so once). The dead
  manager is the durable evidence and is kept until then.
- once the hub lists the workspace as running again and a new workspace container runs, the
  old cluster's containers, network and scratch are removed and the cluster is brought up
  with the same settings, as a new start is (a static cluster's members are made by the
  scaler's first pass; members' ``/scratch`` is scratch: it does not survive);
- a cluster that waited longer than ``wait_seconds`` after its manager died is removed.

The scaler log (``/data/logs/sge-scaler.log``) is written only once the workspace runs again:
while it waits, the workspace's ``/data`` is not mounted on the host.

The hub leaves the dead cluster containers in place only for a run it found dead with the
engine (``bench_spawner/reboot_recovery.py``); this module decides again from Docker alone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from benchhub.engine_restarts import (
    Interruption,
    RestartClock,
    died_with_restart,
    engine_start_time,
    host_boot_time,
)

from .containers import data_mounts
from .scaler_log import ScalerLog
from .state import ClusterRecord, utcnow

__all__ = ["WAITING", "ClusterRecovery", "hold_or_teardown"]

WAITING = "waiting for its workspace to start again"


async def hold_or_teardown(controller, rec: ClusterRecord, active: set[str] | None) -> None:
    """:meth:`ClusterRecovery.hold_or_teardown` with ``controller``'s settings (the recovery
    keeps no state of its own: Docker and the record are the state)."""
    await ClusterRecovery(controller).hold_or_teardown(rec, active)


class ClusterRecovery(LoggingConfigurable):
    """Holds and brings back clusters that died with the engine (see the module).
    Settings: ``c.ClusterRecovery``; made by the controller, its ``parent``."""

    wait_seconds = Float(
        6 * 3600,
        help="""Seconds a cluster that died with the Docker engine (a host reboot) waits for
        its workspace to run again before it is removed, e.g. 21600. Counted from the engine's
        restart: leave room for the hub to come back and the lifecycle service to start the
        workspace (its restart_interrupted_within).""",
    ).tag(config=True)
    engine_pid_file = Unicode(
        "/var/run/docker.pid",
        help="The local dockerd's pid file, e.g. /var/run/docker.pid (the engine's start time).",
    ).tag(config=True)

    def __init__(self, controller, **kwargs):
        super().__init__(parent=controller, log=controller.log, **kwargs)
        self.controller = controller

    @property
    def wait(self) -> timedelta:
        return timedelta(seconds=self.wait_seconds)

    def clock(self) -> RestartClock:
        return RestartClock(engine_start_time(self.engine_pid_file), host_boot_time())

    async def interruption(self, rec: ClusterRecord) -> Interruption | None:
        """How the cluster's manager died with the engine, or None."""
        manager = await self.controller.engine.inspect(self.controller.names(rec).manager)
        if manager is None:
            return None
        clock = await asyncio.to_thread(self.clock)
        wanted = rec.status in ("running", "starting")
        return died_with_restart(manager["State"], clock, wanted_running=wanted)

    async def hold_or_teardown(self, rec: ClusterRecord, active: set[str] | None) -> None:
        """``rec``'s workspace does not run (for Docker or for the hub): wait, bring the
        cluster back, or remove it (see the module)."""
        controller = self.controller
        interruption = await self.interruption(rec)
        if interruption is None:
            return await controller._teardown(rec, "the workspace stopped")
        if utcnow() - interruption.container_finished > self.wait:
            why = f"its workspace did not start again within {self.wait} of the engine restart"
            return await controller._teardown(rec, why)
        workspace = await controller.nodes.workspace_container(
            controller.prefix, rec.user, rec.workspace
        )
        listed = active is None or rec.key in active
        if workspace is None or not listed or not data_mounts(workspace):
            return await self._wait(rec, interruption)
        await self._bring_back(rec, workspace, interruption)

    async def _wait(self, rec: ClusterRecord, interruption: Interruption) -> None:
        reason = f"{WAITING}: {interruption.sentence()}"
        if rec.status == "starting" and rec.reason == reason:
            return
        async with self.controller._locks[rec.key]:
            rec.status, rec.reason = "starting", reason
            await self.controller.save()
        self.log.warning("%s: cluster %s %s", rec.key, rec.cluster_id, reason)

    async def _bring_back(
        self, rec: ClusterRecord, workspace: dict, interruption: Interruption
    ) -> None:
        """Remove what is left of the old cluster, then bring it up with the same settings
        and the workspace's new container."""
        controller = self.controller
        async with controller._locks[rec.key]:
            if controller.records.get(rec.key) is not rec:
                return
            await controller._remove_quietly(controller.names(rec), rec)
            controller.scaler.forget(rec.key)
            controller.views.pop(rec.key, None)
            rec.workspace_container = workspace["Id"]
            rec.data_dir = data_mounts(workspace)[0].source
            rec.internal = await controller.nodes.is_restricted(workspace)
            rec.status, rec.reason = "starting", "starting the manager again"
            await controller.save()
        self.log.info("%s: cluster %s comes back with its workspace", rec.key, rec.cluster_id)
        line = f"cluster {rec.cluster_id} stopped: {interruption.sentence()}; starting it again"
        await asyncio.to_thread(ScalerLog(rec.data_dir).append, utcnow(), [line])
        controller._launch(rec.key, controller._bring_up(rec))
