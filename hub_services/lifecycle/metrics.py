"""The lifecycle service's Prometheus series (``/services/lifecycle/metrics``, docs/metrics.md).

``benchhub_lifecycle_stops_requested_total{reason}``: each stop (or restart's stop) the service
asked the hub for, classified as the hub classifies the stop it then records
(:func:`benchhub.stop_reasons.requested_stop_reason`), so the two counters can be compared.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from benchhub.service_metrics import zeroed
from benchhub.stop_reasons import requested_stop_reason

__all__ = ["LIFECYCLE_STOP_REASONS", "LifecycleMetrics"]

ACTOR = "service:lifecycle"  # how the hub's journal names this service's requests
LIFECYCLE_STOP_REASONS = ("idle", "shutdown_timer", "not_accessed", "scheduled_restart", "other")


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

    def stop_requested(self, reason: str) -> None:
        """Count a stop asked for with the reason text ``reason`` (as sent to the hub)."""
        kind = requested_stop_reason(ACTOR, reason)
        self.stops_requested.labels(kind if kind in LIFECYCLE_STOP_REASONS else "other").inc()
