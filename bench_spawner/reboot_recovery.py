"""Why a workspace's run ended without being asked, and whether it comes back by itself.

A mixin of :class:`~bench_spawner.spawner.BenchSpawner`. When the hub finds a workspace's
container no longer running (JupyterHub's ``poll()``: at the hub's start for every server its
database holds as running, then every ``poll_interval``), :meth:`_record_exit` records why:

- it died with the Docker engine or the whole host (a host reboot, or an engine crash that
  its containers did not survive), as :func:`benchhub.engine_restarts.died_with_restart`
  decides from the container's own state and the engine's and host's start times: the
  activity log says "host restarted: ..." or "engine restarted: ..." with the evidence in its
  fields, and ``restart`` true when the hub found it in a poll (the server was running as far
  as the hub knew, and nobody asked to stop it). The lifecycle service then starts it again
  through the hub's API like a person would (``hub_services/lifecycle/restarts.py``), which
  restores ``/data``, the last checkpoint, the restricted access and the options;
- otherwise what the engine says: out of memory, an exit code, the writable layer's limit.

A run that died with the engine keeps its cluster's dead containers (their state is the
clusters service's evidence that the cluster, too, died with the engine, so that it brings the
cluster back when the workspace runs again: ``hub_services/clusters/recovery.py``); any other
release removes them as before. Relies on the spawner's ``volume``, ``record_activity``,
``take_layer_stop_reason``, ``pending``, ``log`` and ``_log_name``.
"""

from __future__ import annotations

import asyncio

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from benchhub.engine_restarts import (
    Interruption,
    RestartClock,
    died_with_restart,
    engine_start_time,
    host_boot_time,
)

from .workspace_status import Outcome, exit_reason, write_outcome

__all__ = ["RebootRecovery"]

COMES_BACK = "the lifecycle service starts it again"


class RebootRecovery(LoggingConfigurable):
    """Records a run's end with its true reason; keeps an interrupted run's cluster."""

    engine_pid_file = Unicode(
        "/var/run/docker.pid",
        help="""The local dockerd's pid file (dockerd's --pidfile), e.g. /var/run/docker.pid:
        the engine's start time is that process's, from /proc. Unreadable (a remote engine):
        no run is recognised as having died with the engine.""",
    ).tag(config=True)
    host_boot_file = Unicode(
        "/proc/stat",
        help="""A file with a "btime <seconds since the epoch>" line giving when the host
        booted, e.g. /proc/stat (the default and the truth). Tests that simulate a reboot
        without rebooting point it at a file of their own: the boot time is the one fact
        that cannot move otherwise.""",
    ).tag(config=True)

    _interrupted_run: Interruption | None = None  # this run died with the engine: see module

    def restart_clock(self) -> RestartClock:
        """When the running engine started and when the host booted."""
        engine = engine_start_time(self.engine_pid_file)
        return RestartClock(engine, host_boot_time(self.host_boot_file))

    async def _record_exit(self, obj: dict) -> None:
        """Record why a container that stopped on its own stopped (see the module)."""
        clock = await asyncio.to_thread(self.restart_clock)
        interruption = died_with_restart(obj["State"], clock)
        if interruption is not None:
            return await self._record_interruption(interruption)
        memory = obj["HostConfig"].get("Memory") or 0
        reason = self.take_layer_stop_reason() or exit_reason(
            obj["State"], memory / 1024**3 if memory else None
        )
        self.log.warning("%s stopped on its own: %s", self._log_name, reason)
        await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("errored", reason))
        await self.record_activity("errored", reason)

    async def _record_interruption(self, interruption: Interruption) -> None:
        # a poll found it (the hub held it running); in a stop, someone asked for the stop
        restart = self.pending != "stop"
        reason = interruption.sentence() + (f"; {COMES_BACK}" if restart else "")
        self.log.warning("%s: %s", self._log_name, reason)
        self._interrupted_run = interruption if restart else None
        await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("errored", reason))
        fields = {**interruption.fields(), "restart": restart}
        await self.record_activity("errored", reason, fields)

    async def _stop_clusters(self) -> None:
        if self._interrupted_run is not None:
            self.log.info(
                "%s: its cluster stopped with the engine; the clusters service brings it back",
                self._log_name,
            )
            return
        await super()._stop_clusters()

    def clear_state(self) -> None:
        super().clear_state()
        self._interrupted_run = None  # the run is over: a later release removes clusters
