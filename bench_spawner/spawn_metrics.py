"""The spawner's side of the hub metrics (:mod:`.hub_metrics`): starts timed, run ends counted.

- :func:`metered_start` decorates ``BenchSpawner.start``: each start JupyterHub begins is
  observed in ``benchhub_workspace_spawn_duration_seconds`` with its resource model, template
  and :func:`~.hub_metrics.spawn_outcome`, whether it returns or raises (a cancellation by
  JupyterHub's ``start_timeout`` too). Options refused before JupyterHub begins a start (by
  BenchHub's REST handler, the spawn form, ``apply_user_options``) are not starts and change
  nothing; a 4xx raised by the start itself (storage quota, project rights) is "refused".
- :class:`SpawnMetrics`, a mixin before :class:`~.activity.WorkspaceActivity`, counts each run
  that ended where the spawner journals it (``record_activity``: "stopped" for a stop someone
  asked for, with the request's actor and reason; "errored" for a run that ended by itself,
  with the sentence saying why), once per run: a failed stop checkpoint after an out-of-memory
  exit is still one out-of-memory stop. An "errored" during a start is a failed start, which
  the spawn histogram counts, not a stop.
- It also times the checkpoint a stop takes (``_checkpoint_on_stop`` of
  :class:`~.checkpointing.WorkspaceCheckpointing`, which it precedes), kind "stop".

``c.BenchSpawner.metrics_enabled = False`` turns all of it off (the series stay, at 0): for
measuring what the metrics cost a start (``benchmarks/spawn_overhead.py``).
"""

from __future__ import annotations

import functools
import time

from traitlets import Bool
from traitlets.config import LoggingConfigurable

from benchhub.stop_reasons import exit_stop_reason, requested_stop_reason

from .actors import HUB
from .hub_metrics import HUB_METRICS, Catalogue, spawn_outcome

__all__ = ["SpawnMetrics", "metered_start"]

STOP_CHECKPOINT_FAILED = "checkpoint on stop failed"  # bench_spawner/checkpointing.py's entry


def metered_start(start):
    """Decorate a spawner's ``async def start(self)`` to time it (see the module)."""

    @functools.wraps(start)
    async def metered(self):
        if not getattr(self, "metrics_enabled", True):  # SpawnMetrics's switch
            return await start(self)
        began, error = time.perf_counter(), None
        self._metered_starting = True
        try:
            return await start(self)
        except BaseException as e:
            error = e
            raise
        finally:
            self._metered_starting = False
            options = self.user_options if isinstance(self.user_options, dict) else {}
            try:  # a metrics bug must neither fail a start nor hide why one failed
                HUB_METRICS.spawned(
                    options.get("resource_model"),
                    options.get("image"),  # the image template's key
                    spawn_outcome(error),
                    time.perf_counter() - began,
                )
            except Exception:
                self.log.warning("could not count a start in the metrics", exc_info=True)

    return metered


class SpawnMetrics(LoggingConfigurable):
    """Counts run ends for the hub metrics; relies on ``action_request`` and
    ``record_activity`` (:class:`~.activity.WorkspaceActivity`), ``schema`` and ``templates``
    (:class:`~.workspace_options.WorkspaceOptions`)."""

    metrics_enabled = Bool(
        True,
        help="""Count starts, stops and stop checkpoints in the hub's metrics (/hub/metrics,
        docs/metrics.md). False: nothing is counted (the series stay, at 0); for measuring
        what counting costs a start, e.g. benchmarks/spawn_overhead.py. A site leaves it on.""",
    ).tag(config=True)

    _metered_starting = False  # a start is under way (metered_start)
    _run_end_counted = False  # this run's end was counted (reset when a run starts)

    @classmethod
    def metric_catalogue(cls, config) -> Catalogue:
        """The resource-model names and template keys ``config`` gives this spawner class,
        for the metrics' zeros (made the way ``check_config`` makes one)."""
        spawner = cls(config=config)
        return tuple(spawner.schema.resource_models), tuple(spawner.templates)

    async def _checkpoint_on_stop(self, obj: dict) -> None:
        if not (self.checkpoints_enabled and self.metrics_enabled):
            return await super()._checkpoint_on_stop(obj)
        began = time.perf_counter()
        try:
            await super()._checkpoint_on_stop(obj)
        except Exception as e:
            HUB_METRICS.checkpoints.failed("stop", e)
            raise
        HUB_METRICS.checkpoints.taken("stop", time.perf_counter() - began)

    async def record_activity(
        self, action: str, description: str, fields=None, actor: str | None = None
    ) -> None:
        try:  # a metrics bug must not keep an action out of the journal
            if self.metrics_enabled:
                self._count_run_end(action, description)
        except Exception:
            self.log.warning("could not count a run's end in the metrics", exc_info=True)
        await super().record_activity(action, description, fields, actor)

    def _count_run_end(self, action: str, description: str) -> None:
        if action == "started":
            self._run_end_counted = False
            return
        if action not in ("stopped", "errored") or self._metered_starting:
            return
        if self._run_end_counted:
            return
        self._run_end_counted = True
        if action == "stopped" or description.startswith(STOP_CHECKPOINT_FAILED):
            request = self.action_request or HUB  # a stop someone asked for
            HUB_METRICS.stopped(requested_stop_reason(request.actor, request.reason))
        else:
            HUB_METRICS.stopped(exit_stop_reason(description))
