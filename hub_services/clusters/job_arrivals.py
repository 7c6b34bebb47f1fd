"""One :mod:`.pending_watch` per dynamic cluster that can still grow, kept by the scaler.

After each pass of a cluster, :meth:`JobArrivals.keep` makes sure one watch runs in its
manager while the cluster could add a member (dynamic, below ``max_members``, running); the
watch waits for a job numbered above the highest the scaler has seen pending there and then
calls :attr:`JobArrivals.on_new_jobs` (the service runs a pass at once). A cluster that cannot
grow, or is gone (:meth:`forget`), has no watch; nor has any cluster with :attr:`enabled`
False (``ClustersApp.watch_new_jobs``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from . import pending_watch
from .containers import ClusterNames
from .nodes import ClusterNodes
from .scaling import ScalingPolicy
from .state import ClusterRecord

__all__ = ["JobArrivals"]


class JobArrivals:
    """The running pending-job watches, one per cluster key at most."""

    def __init__(self, nodes: ClusterNodes, log: logging.Logger):
        self.nodes = nodes
        self.log = log
        self.on_new_jobs: Callable[[], None] = lambda: None
        self.enabled = True  # False: no watches, passes only (ClustersApp.watch_new_jobs)
        self._watches: dict[str, asyncio.Task] = {}
        self._highest: dict[str, int] = {}  # cluster key -> highest job number seen pending

    def keep(
        self, names: ClusterNames, rec: ClusterRecord, policy: ScalingPolicy, pending: Iterable
    ) -> None:
        """After a pass of ``rec`` that saw ``pending`` (:class:`.sge.PendingJob`): a watch
        runs in its manager while it can grow, none otherwise."""
        key = rec.key
        after = pending_watch.highest_job((j.job_id for j in pending), self._highest.get(key, 0))
        self._highest[key] = after
        can_grow = (
            self.enabled
            and rec.status == "running"
            and policy.max_members > policy.min_members
            and len(rec.members) < policy.max_members
        )
        running = self._watches.get(key)
        if not can_grow:
            if running is not None:
                running.cancel()
                del self._watches[key]
            return
        if running is not None and not running.done():
            return
        self._watches[key] = asyncio.ensure_future(self._watch(names, key, after))

    async def _watch(self, names: ClusterNames, key: str, after: int) -> None:
        try:
            if await self.nodes.wait_for_new_jobs(names, after):
                self.on_new_jobs()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.warning("%s: watching for new jobs failed", key, exc_info=True)

    def running(self, key: str) -> bool:
        """Whether a watch for the cluster ``key`` runs (tests, the status)."""
        watch = self._watches.get(key)
        return watch is not None and not watch.done()

    def forget(self, key: str) -> None:
        """The cluster ``key`` is gone: its watch stops."""
        self._highest.pop(key, None)
        watch = self._watches.pop(key, None)
        if watch is not None:
            watch.cancel()
