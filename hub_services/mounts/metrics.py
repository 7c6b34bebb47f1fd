"""The mounts service's Prometheus series (``/services/mounts/metrics``, docs/metrics.md).

- ``benchhub_mounts_created_total``: fast mounts made in a workspace (``POST``, 201);
- ``benchhub_mounts_deleted_total``: fast mounts removed from one (``DELETE`` of a mount
  that was there; deleting what is not mounted is a success that removes nothing);
- ``benchhub_mounts_refused_total{reason}``: requests to make or delete a mount refused,
  by :data:`REFUSAL_REASONS` (a request without credentials never reaches the service's
  handler and is not counted);
- ``benchhub_mounts_failed_total{operation}``: a mount or unmount that failed inside the
  service (a 500), by ``create`` or ``delete``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from benchhub.service_metrics import zeroed

__all__ = ["OPERATIONS", "REFUSAL_REASONS", "MountMetrics"]

REFUSAL_REASONS = (
    "forbidden",  # the token may not act on the workspace, or the project rule says no
    "invalid",  # a field (body, mount_path, source, mode) is not what is allowed
    "not_running",  # the workspace is not running
    "no_project_data",  # it has no /data/project (or its project is gone)
    "path_taken",  # the mount path, or one nested with it, is mounted already
    "too_many",  # the workspace holds MountService.max_mounts already
    "held_read_write",  # another running workspace holds the source read-write
)
OPERATIONS = ("create", "delete")


class MountMetrics:
    """The series in their own ``registry``; every reason present at 0 from the start."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.created = Counter(
            "benchhub_mounts_created_total",
            "Fast mounts made in workspaces.",
            registry=self.registry,
        )
        self.deleted = Counter(
            "benchhub_mounts_deleted_total",
            "Fast mounts removed from workspaces.",
            registry=self.registry,
        )
        self.refused = zeroed(
            Counter(
                "benchhub_mounts_refused_total",
                "Requests to make or delete a fast mount that were refused, by reason.",
                ["reason"],
                registry=self.registry,
            ),
            REFUSAL_REASONS,
        )
        self.failed = zeroed(
            Counter(
                "benchhub_mounts_failed_total",
                "Mounts and unmounts that failed inside the service, by operation.",
                ["operation"],
                registry=self.registry,
            ),
            OPERATIONS,
        )

    def refusal(self, reason: str) -> None:
        """Count a refused request (a reason outside :data:`REFUSAL_REASONS`: "invalid")."""
        self.refused.labels(reason if reason in REFUSAL_REASONS else "invalid").inc()
