"""When a cluster's members run Spark workers: only once the cluster is used for Spark.

A Spark worker is a JVM on every member (a second of CPU to start, a heap to keep); a
cluster used only through Grid Engine (``qsub``) needs none. So a member starts without one,
and the auto scaler turns Spark on for the whole cluster the first time it sees Spark want
it: an application registered with the cluster's master (a remote PySpark kernel that asks
for executors registers at once, waiting while no worker runs), or a driver with dynamic
allocation wanting executors. From then on the cluster stays in Spark use (a kernel started
again soon after should not wait for workers once more): every joined member that is not
draining gets its worker (``bench-cluster start-worker``), and new members start with one.

Pure: the scaler (:mod:`.scaler`) observes and acts.
"""

from __future__ import annotations

from collections.abc import Iterable

from .spark import SparkView
from .state import MemberRecord

__all__ = ["spark_in_use", "why_in_use", "workers_to_start"]


def why_in_use(view: SparkView) -> str | None:
    """Why ``view`` shows the cluster used for Spark now (a sentence for the scaler log), or
    None. A master that did not answer shows nothing."""
    if not view.master_alive:
        return None
    if view.registered_applications:
        count = view.registered_applications
        return f"{count} Spark application{'s' if count != 1 else ''} registered with the master"
    wanted = sum(request.tasks for request in view.requests)
    if wanted:
        return f"Spark applications want {wanted} executor{'s' if wanted != 1 else ''}"
    return None


def spark_in_use(view: SparkView, already: bool) -> bool:
    """Whether the cluster is in Spark use after observing ``view``: it stays so once it was
    (``already``)."""
    return already or why_in_use(view) is not None


def workers_to_start(
    in_use: bool, members: Iterable[MemberRecord], reporting: Iterable[str]
) -> list[str]:
    """The members whose Spark worker to start now: none unless ``in_use``; else each member
    that has not been given one, whose execution daemon reports to the manager (it has
    finished starting; ``reporting`` are those hosts' names) and that is not draining (a
    drained member's worker was stopped on purpose). Sorted by name."""
    if not in_use:
        return []
    ready = set(reporting)
    return sorted(
        m.name for m in members if not m.spark_worker and not m.draining and m.name in ready
    )
