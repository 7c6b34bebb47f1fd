"""BenchHub's Prometheus metrics of the hub process, served on JupyterHub's own ``/hub/metrics``.

JupyterHub serves prometheus_client's default registry there (behind the ``read:metrics``
scope); :data:`HUB_METRICS` is registered in it when this module is imported (the hub imports
the spawner). docs/metrics.md lists every series.

- ``benchhub_workspace_spawn_duration_seconds{resource_model, template, outcome}``: each start
  the spawner began, from ``start()`` being called to the server answering (or the failure);
  ``outcome`` is one of :data:`SPAWN_OUTCOMES` (:func:`spawn_outcome`).
- ``benchhub_workspaces_running{resource_model, access_mode}``: computed when scraped from the
  hub's spawners (those JupyterHub reports ready), so it can never drift from what the hub
  shows: no start or stop path (a crash, a hub restart that re-adopts running workspaces, an
  exit noticed by a poll) has to remember to update it, and a scrape costs one pass over the
  spawners in memory.
- ``benchhub_workspace_stops_total{reason}``: every run that ended, by
  :data:`benchhub.stop_reasons.STOP_REASONS`.
- ``benchhub_checkpoint_duration_seconds{kind="stop"}`` and
  ``benchhub_checkpoint_failures_total{kind="stop", reason}``: the checkpoint each stop takes
  (:mod:`benchhub.checkpoint_metrics`; the service exports the other kinds).

Label values come from fixed sets and the configured catalogue only (resource models, template
keys); anything else is ``unknown``, so a user's options cannot create series. No label names
a user or a workspace. Every combination of the catalogue is present (at zero) from the first
scrape on.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from jupyterhub.app import JupyterHub
from jupyterhub.spawner import SpawnException
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from tornado import web

from benchhub.checkpoint_metrics import HUB_KINDS, CheckpointMetrics
from benchhub.stop_reasons import STOP_REASONS
from benchhub.workspace_spec import ACCESS_MODES

__all__ = [
    "HUB_METRICS",
    "SPAWN_BUCKETS",
    "SPAWN_OUTCOMES",
    "UNKNOWN",
    "Catalogue",
    "HubMetrics",
    "spawn_outcome",
]

SPAWN_OUTCOMES = ("success", "refused", "image_missing", "out_of_memory", "timeout", "other_error")
# seconds; a plain start takes ~3 s here (docs/benchmarks.md), start_timeout defaults to 120 s
SPAWN_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, float("inf"))
UNKNOWN = "unknown"  # a resource model or template that is not (or no longer) in the catalogue

Catalogue = tuple[tuple[str, ...], tuple[str, ...]]  # (resource model names, template keys)


def spawn_outcome(error: BaseException | None) -> str:
    """The outcome class of a start that ended with ``error`` (None: it succeeded).

    ``refused``: a 4xx the spawner raised (options, storage, project rights: nothing was
    made); ``image_missing``: the template's image is not on the host; ``out_of_memory``: the
    server died at its memory limit while booting; ``timeout``: it did not answer in time (or
    JupyterHub gave up waiting and cancelled the start); else ``other_error``."""
    if error is None:
        return "success"
    if isinstance(error, (TimeoutError, asyncio.CancelledError)):
        return "timeout"
    if isinstance(error, SpawnException):  # an HTTPError (400) too: a failure, not a refusal
        if error.reason == "image":
            return "image_missing"
        text = (getattr(error, "log_message", None) or str(error)).strip()
        return "out_of_memory" if text.startswith("out of memory") else "other_error"
    if isinstance(error, web.HTTPError) and 400 <= error.status_code < 500:
        return "refused"
    return "other_error"


def _from_jupyterhub() -> Catalogue | None:
    """The running hub's catalogue: its spawner class made from its configuration (as
    ``check_config`` does); None outside a hub, or for a spawner without one."""
    if not JupyterHub.initialized():
        return None
    app = JupyterHub.instance()
    catalogue = getattr(app.spawner_class, "metric_catalogue", None)
    return catalogue(app.config) if catalogue else None


def _spawners_of_jupyterhub() -> Iterable:
    """Every spawner of the running hub's users in memory (all with a server are)."""
    if not JupyterHub.initialized():
        return ()
    users = list(JupyterHub.instance().users.values())
    return [spawner for user in users for spawner in user.spawners.values()]


class HubMetrics:
    """The hub's BenchHub series, as one prometheus_client collector (see the module).

    ``catalogue()`` gives the resource models and templates (None while unknown: asked again
    at the next scrape); ``spawners()`` the spawners whose ready ones count as running."""

    def __init__(
        self,
        catalogue: Callable[[], Catalogue | None] = _from_jupyterhub,
        spawners: Callable[[], Iterable] = _spawners_of_jupyterhub,
    ):
        self._catalogue_source = catalogue
        self._spawners = spawners
        self.catalogue: Catalogue | None = None
        # not registered themselves: this collector yields them, after making the zeros
        self.spawn_duration = Histogram(
            "benchhub_workspace_spawn_duration_seconds",
            "Seconds from a workspace start's beginning to its server answering (or failing), "
            "by resource model, image template and outcome.",
            ["resource_model", "template", "outcome"],
            buckets=SPAWN_BUCKETS,
            registry=None,
        )
        self.stops = Counter(
            "benchhub_workspace_stops_total",
            "Workspace runs that ended, by reason.",
            ["reason"],
            registry=None,
        )
        for reason in STOP_REASONS:
            self.stops.labels(reason)
        # the stop's checkpoint, in a registry of its own that this collector yields from
        self.checkpoints = CheckpointMetrics(HUB_KINDS, CollectorRegistry(), store_bytes=False)

    # ---- what happened -------------------------------------------------------------------------

    def label_values(self, resource_model: object, template: object) -> tuple[str, str]:
        """``(resource_model, template)`` as label values: themselves when the catalogue has
        them, else :data:`UNKNOWN`."""
        models, templates = self._known()
        model = resource_model if resource_model in models else UNKNOWN
        return model, template if template in templates else UNKNOWN

    def spawned(self, resource_model: object, template: object, outcome: str, seconds: float):
        """Count a start that ended with ``outcome`` after ``seconds``."""
        self.spawn_duration.labels(*self.label_values(resource_model, template), outcome).observe(
            max(0.0, seconds)
        )

    def stopped(self, reason: str) -> None:
        """Count a run that ended for ``reason`` (one of STOP_REASONS, else "other")."""
        self.stops.labels(reason if reason in STOP_REASONS else "other").inc()

    # ---- the collector -------------------------------------------------------------------------

    def _known(self) -> Catalogue:
        if self.catalogue is None:
            self.catalogue = self._catalogue_source()
            if self.catalogue is not None:
                models, templates = self.catalogue
                for model in models:
                    for template in templates:
                        for outcome in SPAWN_OUTCOMES:
                            self.spawn_duration.labels(model, template, outcome)
        return self.catalogue or ((), ())

    def _running(self) -> GaugeMetricFamily:
        models, _ = self._known()
        counts = Tally({(model, mode): 0 for model in models for mode in ACCESS_MODES})
        for spawner in self._spawners():
            if getattr(spawner, "ready", False):
                options = getattr(spawner, "user_options", None) or {}
                model, _ = self.label_values(options.get("resource_model"), None)
                mode = options.get("access_mode")
                counts[model, mode if mode in ACCESS_MODES else UNKNOWN] += 1
        family = GaugeMetricFamily(
            "benchhub_workspaces_running",
            "Workspaces whose server is running and ready, by resource model and access mode.",
            labels=["resource_model", "access_mode"],
        )
        for (model, mode), count in sorted(counts.items()):
            family.add_metric([model, mode], count)
        return family

    def describe(self):
        """The families without samples: registering asks for these, not for a scrape."""
        yield from self.spawn_duration.describe()
        yield from self.stops.describe()
        yield from self.checkpoints.duration.describe()
        yield from self.checkpoints.failures.describe()
        yield GaugeMetricFamily(
            "benchhub_workspaces_running", "", labels=["resource_model", "access_mode"]
        )

    def collect(self):
        self._known()  # the catalogue's zeros before the first start
        yield from self.spawn_duration.collect()
        yield from self.stops.collect()
        yield from self.checkpoints.registry.collect()
        yield self._running()


HUB_METRICS = HubMetrics()
REGISTRY.register(HUB_METRICS)
