"""When a cluster's members run Spark workers: only once the cluster is used for Spark.

A Spark worker is a JVM on every member (a second of CPU to start, a heap to keep); a
cluster used only through Grid Engine (``qsub``) needs none. So a member starts without one,
and the auto scaler turns Spark on for the whole cluster the first time it sees Spark want
it: an application registered with the cluster's master (a remote PySpark kernel that asks
for executors registers at once, waiting while no worker runs), or a driver with dynamic
allocation wanting executors. From then on the cluster stays in Spark use (a kernel started
again soon after should not wait for workers once more): every joined member that is not
draining gets its worker (``bench-cluster start-worker``).

When a worker starts: a JVM takes 1.2-1.4 CPU-s to start, an execution daemon about 0.1. With
ten members booting on two cores, their ten JVMs kept the host busy for seconds and the last
execution daemons reported 1.0-4 s after their container started, not 0.4-1.2 s (issue 17,
2026-12-01: a burst of Grid Engine jobs in a cluster in Spark use took 1.2-1.8 times its
floor). So while no Spark application is registered or wants executors
(:func:`spark_waiting`), members start without their worker and get it once no member of
the cluster boots any more (:func:`workers_to_start`): Grid Engine's jobs do not wait for
JVMs nobody uses yet, and the JVMs still start, right after. While an application waits,
Spark is the point of the members: they start with their worker (:func:`worker_at_boot`) and
a ready member gets one at once.

Pure: the scaler (:mod:`.scaler`) observes and acts.
"""

from __future__ import annotations

from collections.abc import Iterable

from .spark import SparkView
from .state import MemberRecord

__all__ = [
    "spark_in_use",
    "spark_waiting",
    "why_in_use",
    "worker_at_boot",
    "workers_to_start",
]


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


def spark_waiting(view: SparkView) -> bool:
    """Whether Spark applications wait for workers in ``view``: one is registered with the
    master (it may want executors at any time) or a driver wants executors. A master that did
    not answer shows none waiting."""
    return view.master_alive and bool(view.registered_applications or view.requests)


def worker_at_boot(in_use: bool, waiting: bool) -> bool:
    """Whether a member starting now starts its Spark worker with it: only in a cluster in
    Spark use (``in_use``) while Spark applications wait (``waiting``, :func:`spark_waiting`);
    otherwise it gets its worker later (:func:`workers_to_start`)."""
    return in_use and waiting


def workers_to_start(
    in_use: bool, members: Iterable[MemberRecord], reporting: Iterable[str], waiting: bool = True
) -> list[str]:
    """The members whose Spark worker to start now: none unless ``in_use``; else each member
    that has not been given one, whose execution daemon reports to the manager (it has
    finished starting; ``reporting`` are those hosts' names) and that is not draining (a
    drained member's worker was stopped on purpose). While no Spark application waits
    (``waiting`` False, :func:`spark_waiting`), none as long as a member of the cluster still
    boots (waits to start, or started and not reported yet): its boot comes first. Sorted by
    name."""
    if not in_use:
        return []
    members = [m for m in members if not m.draining]
    ready = set(reporting)
    booting = any(m.waiting_to_start or not (m.joined or m.name in ready) for m in members)
    if booting and not waiting:
        return []
    return sorted(m.name for m in members if not m.spark_worker and m.name in ready)
