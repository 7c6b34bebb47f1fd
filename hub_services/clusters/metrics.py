"""The clusters service's Prometheus series (``/services/clusters/metrics``, docs/metrics.md).

- ``benchhub_clusters{status}``: clusters by status (:data:`~.state.STATUSES`), and
- ``benchhub_cluster_members{state}``: members of running clusters by the state their last
  scaler pass saw (:data:`MEMBER_STATES`, as the cluster API shows them),

both computed when scraped from the controller's records and views (never out of step with
the API); and

- ``benchhub_cluster_scaler_decisions_total{decision}``: each scaler pass's decision, ``up``
  (scale up), ``down`` (drain or remove a member) or ``hold`` (nothing to do).
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from benchhub.service_metrics import zeroed

from .state import STATUSES

__all__ = ["DECISIONS", "MEMBER_STATES", "ClusterMetrics"]

MEMBER_STATES = ("starting", "idle", "busy", "draining", "unreachable")
# the scaler's actions (scaling.Decision.action) -> the decision label
DECISIONS = {"scale_up": "up", "drain": "down", "remove": "down", "none": "hold"}


class ClusterMetrics:
    """The series of ``controller`` (its ``records`` and ``views``) in their own
    ``registry``; :meth:`decided` is the scaler's ``on_decision`` hook."""

    def __init__(self, controller):
        self.controller = controller
        self.registry = CollectorRegistry()
        self.decisions = zeroed(
            Counter(
                "benchhub_cluster_scaler_decisions_total",
                "Scaler passes over a running cluster, by decision (up, down, hold).",
                ["decision"],
                registry=self.registry,
            ),
            sorted(set(DECISIONS.values())),
        )
        self.registry.register(self)

    def decided(self, action: str) -> None:
        """Count one pass's decision (a :class:`~.scaling.Decision` action)."""
        self.decisions.labels(DECISIONS.get(action, "hold")).inc()

    def describe(self):
        yield GaugeMetricFamily("benchhub_clusters", "", labels=["status"])
        yield GaugeMetricFamily("benchhub_cluster_members", "", labels=["state"])

    def collect(self):
        records = list(self.controller.records.values())
        statuses = Tally({status: 0 for status in STATUSES})
        states = Tally({state: 0 for state in MEMBER_STATES})
        for rec in records:
            statuses[rec.status if rec.status in STATUSES else "errored"] += 1
            if rec.status == "running":
                view = self.controller.views.get(rec.key) or {}
                for member in view.get("members") or ():
                    state = member.get("state")
                    states[state if state in MEMBER_STATES else "unreachable"] += 1
        clusters = GaugeMetricFamily("benchhub_clusters", "Clusters by status.", labels=["status"])
        for status in STATUSES:
            clusters.add_metric([status], statuses[status])
        members = GaugeMetricFamily(
            "benchhub_cluster_members",
            "Members of running clusters by state, as their last scaler pass saw them.",
            labels=["state"],
        )
        for state in MEMBER_STATES:
            members.add_metric([state], states[state])
        yield clusters
        yield members
