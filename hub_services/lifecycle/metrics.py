"""The lifecycle service's Prometheus series (``/services/lifecycle/metrics``, docs/metrics.md).

``benchhub_lifecycle_stops_requested_total{reason}``: each stop (or restart's stop) the service
asked the hub for, classified as the hub classifies the stop it then records
(:func:`benchhub.stop_reasons.requested_stop_reason`), so the two counters can be compared.

The usage ledger's growth as counters (:class:`UsageTotals`): what the ledger gained since the
service started, in base units and without a user, workspace or project label (the ledger's API
has those, and the all-time figures):

- ``benchhub_usage_run_seconds_total{kind}``: seconds containers ran, ``kind`` one of
  :data:`~.ledger.KINDS` (workspace, cluster-manager, cluster-member);
- ``benchhub_usage_cpu_seconds_total{kind}``: CPUs allocated × seconds (the containers' CPU
  limits, not the CPU time they used), ``benchhub_usage_memory_byte_seconds_total{kind}`` and
  ``benchhub_usage_gpu_seconds_total{kind}`` likewise;
- ``benchhub_usage_storage_byte_seconds_total{volume}``: allocated bytes × seconds of the
  workspaces' ``/data`` (``data``) and cluster members' ``/scratch`` (``scratch``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily

from benchhub.service_metrics import zeroed
from benchhub.stop_reasons import requested_stop_reason

from .ledger import KINDS

__all__ = ["LIFECYCLE_STOP_REASONS", "VOLUMES", "LifecycleMetrics", "UsageTotals"]

ACTOR = "service:lifecycle"  # how the hub's journal names this service's requests
LIFECYCLE_STOP_REASONS = ("idle", "shutdown_timer", "not_accessed", "scheduled_restart", "other")
GIB = 1024**3  # the ledger's GB are GiB, as everywhere in BenchHub
VOLUMES = ("data", "scratch")
# series name (without _total) -> (help, label, the ledger's column or volume, factor)
_RUN_SERIES = {
    "benchhub_usage_run_seconds": ("Seconds containers ran, by kind.", "seconds", 1),
    "benchhub_usage_cpu_seconds": (
        "CPUs allocated (the containers' limits, not CPU time used) times seconds run, by kind.",
        "cpu_seconds",
        1,
    ),
    "benchhub_usage_memory_byte_seconds": (
        "Memory allocated in bytes times seconds run, by kind.",
        "memory_gb_seconds",
        GIB,
    ),
    "benchhub_usage_gpu_seconds": ("GPUs allocated times seconds run, by kind.", "gpu_seconds", 1),
}
STORAGE_SERIES = "benchhub_usage_storage_byte_seconds"


class UsageTotals:
    """The usage ledger's sums as counters (a prometheus_client collector).

    The recorder hands it the ledger's sums when it starts, before its first pass, and after
    each pass (:meth:`record`). The first sums are the baseline: a counter is what the ledger
    gained since (so a service restart is an ordinary counter reset to 0, and the first pass's
    catching up on what ran while the service was down shows as an increase), every series 0
    until then. A counter never goes down: a run the ledger counted until it was last seen and
    later closed a little earlier (or a ``/data`` period closed at its deletion, before the
    pass that saw it) leaves the counter where it was until the ledger's sum passes it again."""

    def __init__(self):
        self.baseline: dict[tuple[str, str], float] | None = None
        self.started = time.time()  # the counters' _created
        self.values: dict[tuple[str, str], float] = {}
        for name in _RUN_SERIES:
            for kind in KINDS:
                self.values[name, kind] = 0.0
        for volume in VOLUMES:
            self.values[STORAGE_SERIES, volume] = 0.0

    def record(self, runs, data_gb_seconds: float, scratch_gb_seconds: float) -> None:
        """The ledger's sums (:meth:`~.ledger.Ledger.totals`): ``runs`` one row per kind."""
        found = dict.fromkeys(self.values, 0.0)
        for row in runs:
            if row.kind not in KINDS:
                continue
            for name, (_help, column, factor) in _RUN_SERIES.items():
                found[name, row.kind] = float(getattr(row, column) or 0) * factor
        found[STORAGE_SERIES, "data"] = float(data_gb_seconds or 0) * GIB
        found[STORAGE_SERIES, "scratch"] = float(scratch_gb_seconds or 0) * GIB
        if self.baseline is None:
            self.baseline = found
            return
        for key, value in found.items():
            self.values[key] = max(self.values[key], value - self.baseline[key])

    def describe(self):
        for name in _RUN_SERIES:
            yield CounterMetricFamily(name, "", labels=["kind"])
        yield CounterMetricFamily(STORAGE_SERIES, "", labels=["volume"])

    def collect(self):
        for name, (text, _column, _factor) in _RUN_SERIES.items():
            family = CounterMetricFamily(name, "Usage ledger: " + text, labels=["kind"])
            for kind in KINDS:
                family.add_metric([kind], self.values[name, kind], created=self.started)
            yield family
        family = CounterMetricFamily(
            STORAGE_SERIES,
            "Usage ledger: allocated bytes times seconds, of workspaces' /data and cluster "
            "members' /scratch.",
            labels=["volume"],
        )
        for volume in VOLUMES:
            family.add_metric([volume], self.values[STORAGE_SERIES, volume], created=self.started)
        yield family


class LifecycleMetrics:
    """The series in their own ``registry``; every reason present at 0 from the start."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.stops_requested = zeroed(
            Counter(
                "benchhub_lifecycle_stops_requested_total",
                "Stops of workspaces the lifecycle policy asked the hub for, by reason.",
                ["reason"],
                registry=self.registry,
            ),
            LIFECYCLE_STOP_REASONS,
        )
        self.usage = UsageTotals()
        self.registry.register(self.usage)

    def stop_requested(self, reason: str) -> None:
        """Count a stop asked for with the reason text ``reason`` (as sent to the hub)."""
        kind = requested_stop_reason(ACTOR, reason)
        self.stops_requested.labels(kind if kind in LIFECYCLE_STOP_REASONS else "other").inc()
