"""Checkpoint series, shared by the two processes that take checkpoints (docs/metrics.md).

The checkpoints service takes the periodic and requested ones and exports them on
``/services/checkpoints/metrics`` with the store's size; the hub's spawner takes the one on
stop and exports it on ``/hub/metrics``. Both use this one definition, so a dashboard sums the
same names over both targets:

- ``benchhub_checkpoint_duration_seconds{kind}``: checkpoints taken, by :data:`KINDS`;
- ``benchhub_checkpoint_failures_total{kind, reason}``: checkpoints that failed, by
  :func:`failure_reason`;
- ``benchhub_checkpoint_store_bytes`` (service only): bytes the store holds (chunks and
  manifests), measured at every cleanup pass (the first a tick after the service starts) and
  grown by each checkpoint the service takes in between.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .checkpoints.errors import CheckpointCorrupt, CheckpointError, ManifestInvalid
from .service_metrics import zeroed

__all__ = [
    "FAILURE_REASONS",
    "HUB_KINDS",
    "KINDS",
    "SERVICE_KINDS",
    "CheckpointMetrics",
    "failure_reason",
    "stored_bytes",
]

SERVICE_KINDS = ("periodic", "on_request", "named")  # automatic every interval; checkpoint-now
HUB_KINDS = ("stop",)  # the spawner's, when a workspace stops or its exit is noticed
KINDS = SERVICE_KINDS + HUB_KINDS
FAILURE_REASONS = ("quota", "corrupt", "io", "store", "other")
# seconds: a small home directory takes well under a second, a first full checkpoint of a
# large one minutes
DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))


def failure_reason(error: BaseException) -> str:
    """The class of a checkpoint failure: ``quota`` (a named checkpoint over the user's
    quota), ``corrupt`` (a damaged manifest or chunk), ``io`` (the host: disk full,
    permissions), ``store`` (another store error: an S3 request that kept failing), else
    ``other``."""
    if type(error).__name__ == "NamedQuotaExceeded":  # the service's own CheckpointError
        return "quota"
    if isinstance(error, (CheckpointCorrupt, ManifestInvalid)):
        return "corrupt"
    if isinstance(error, OSError):
        return "io"
    if isinstance(error, CheckpointError):
        return "store"
    return "other"


def stored_bytes(backend) -> int:
    """Bytes of every chunk and manifest in a checkpoint store's ``backend`` (one listing;
    blocking)."""
    return sum(info.size for prefix in ("chunks/", "manifests/") for info in backend.list(prefix))


class CheckpointMetrics:
    """The checkpoint series of ``kinds`` in ``registry`` (a new one by default), every
    combination present at 0; with ``store_bytes`` the store-size gauge too."""

    def __init__(
        self,
        kinds: tuple[str, ...] = SERVICE_KINDS,
        registry: CollectorRegistry | None = None,
        store_bytes: bool = True,
    ):
        self.kinds = kinds
        self.registry = registry if registry is not None else CollectorRegistry()
        self.duration = zeroed(
            Histogram(
                "benchhub_checkpoint_duration_seconds",
                "Seconds a checkpoint took to capture and store, by kind.",
                ["kind"],
                buckets=DURATION_BUCKETS,
                registry=self.registry,
            ),
            kinds,
        )
        self.failures = zeroed(
            Counter(
                "benchhub_checkpoint_failures_total",
                "Checkpoints that failed, by kind and reason class.",
                ["kind", "reason"],
                registry=self.registry,
            ),
            kinds,
            FAILURE_REASONS,
        )
        self.store_bytes = (
            Gauge(
                "benchhub_checkpoint_store_bytes",
                "Bytes the checkpoint store holds (chunks and manifests).",
                registry=self.registry,
            )
            if store_bytes
            else None
        )

    def taken(self, kind: str, seconds: float, new_bytes: int = 0) -> None:
        """Count a checkpoint of ``kind`` that took ``seconds`` and stored ``new_bytes``."""
        self.duration.labels(kind).observe(max(0.0, seconds))
        if self.store_bytes is not None and new_bytes > 0:
            self.store_bytes.inc(new_bytes)

    async def measure(self, kind: str, taking: Awaitable, refusals: tuple[type, ...] = ()):
        """Await ``taking`` (a checkpoint of ``kind`` returning its summary, a dict with
        ``new_stored_bytes``) and count it, taken or failed; an error of ``refusals`` (the
        request was refused before anything was taken) is not counted. Returns its result."""
        began = time.perf_counter()
        try:
            summary = await taking
        except refusals:
            raise
        except Exception as e:
            self.failed(kind, e)
            raise
        new_bytes = summary.get("new_stored_bytes") if isinstance(summary, dict) else 0
        self.taken(kind, time.perf_counter() - began, new_bytes or 0)
        return summary

    def failed(self, kind: str, error: BaseException) -> None:
        """Count a checkpoint of ``kind`` that failed with ``error``."""
        self.failures.labels(kind, failure_reason(error)).inc()

    def measured(self, stored_bytes: int) -> None:
        """The store holds ``stored_bytes`` now (a full listing)."""
        if self.store_bytes is not None:
            self.store_bytes.set(stored_bytes)
