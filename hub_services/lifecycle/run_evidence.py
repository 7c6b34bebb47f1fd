"""What the engine says about a run, and the rule for when a run ended. Pure.

A run is one ``[start, stop)`` of one container: its key is the container id and the
engine's ``State.StartedAt`` (a restart of the same container is a new run). Resources are
the container's own limits (``HostConfig``: CPU quota or NanoCpus, memory, GPU device
requests), so workspaces and cluster nodes are measured alike; a workspace also carries its
resource model label, by which it is priced.

**When a run ended** (:func:`run_end`), from the best evidence there is, in this order:

1. a ``die`` event received as it happened: the event's time (source ``event``);
2. the container still exists: stopped, its ``State.FinishedAt`` (``inspect``); running again
   with a later ``StartedAt`` (restarted while nobody watched), the ``FinishedAt`` of that
   restart if it lies within the old run, else the new start (``restarted``);
3. the container is gone: for a workspace, the activity log's first ``stopped`` or
   ``errored`` entry of the workspace at or after the run's start (``journal``: the hub
   writes it before it removes the container, a checkpoint on stop later than the end);
4. else the last moment the service saw it running (``last-seen``): a cluster node removed,
   or a workspace container removed behind BenchHub's back, while the service was down. This
   undercounts by at most the time the service was not looking.

A run's end is recorded once; later evidence never moves it, so nothing is counted twice.

**A cluster member's ``/scratch``** is the host directory the engine bind-mounts there
(:func:`scratch_source`); its size is the allocation the clusters service claimed for it
(the claim record beside it, :mod:`benchhub.storage_allocations`), read by the recorder when
it opens the run and kept in the run's row, so it outlives the member.
"""

from __future__ import annotations

from datetime import datetime

from benchhub.labels import RESOURCE_MODEL, USER, WORKSPACE, cluster_label

from .ledger import ObservedRun, OpenRun, to_us

__all__ = [
    "SCRATCH",
    "belongs",
    "docker_time_us",
    "event_time_us",
    "observed_run",
    "run_end",
    "scratch_source",
]

GIB = 1024**3
_NEVER = "0001-01-01T00:00:00Z"  # Docker's zero time: not started / not finished
SCRATCH = "/scratch"  # where a cluster member has its own volume (hub_services.clusters)


def docker_time_us(text: str | None) -> int | None:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as microseconds since the epoch; None for
    Docker's zero time or nothing."""
    if not text or text.startswith("0001-01-01"):
        return None
    return to_us(datetime.fromisoformat(text).timestamp())


def event_time_us(event: dict) -> int | None:
    """When a Docker event happened (``timeNano``, else ``time``), in microseconds."""
    if event.get("timeNano"):
        return int(event["timeNano"]) // 1000
    if event.get("time"):
        return int(event["time"]) * 1_000_000
    return None


def belongs(labels: dict, names: list[str], prefix: str) -> bool:
    """Whether a container (its labels and ``/names``) is one of this hub's workspaces or
    cluster nodes: a workspace named ``<prefix>-…``, a cluster node labelled with the prefix."""
    labels = labels or {}
    if USER in labels and WORKSPACE in labels:
        return any(name.lstrip("/").startswith(f"{prefix}-") for name in names or ())
    return labels.get(cluster_label("prefix")) == prefix and cluster_label("role") in labels


def _kind(labels: dict) -> str:
    if USER in labels and WORKSPACE in labels:
        return "workspace"
    return f"cluster-{labels[cluster_label('role')]}"


def _cpus(host: dict) -> float:
    if host.get("NanoCpus"):
        return host["NanoCpus"] / 1e9
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 100_000
    return quota / period if quota > 0 else 0.0


def _gpus(host: dict) -> int:
    return sum(
        max(int(request.get("Count") or 0), 0)
        for request in host.get("DeviceRequests") or ()
        if ["gpu"] in (request.get("Capabilities") or ())
    )


def observed_run(inspect: dict) -> ObservedRun | None:
    """The run a ``docker inspect`` of one of this hub's containers shows (its current or
    last run), None if it never started. A container without a CPU limit counts 0 CPUs."""
    state = inspect.get("State") or {}
    start = docker_time_us(state.get("StartedAt"))
    if start is None:
        return None
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    host = inspect.get("HostConfig") or {}
    kind = _kind(labels)
    if kind == "workspace":
        user, workspace = labels[USER], labels[WORKSPACE]
    else:
        user, workspace = labels[cluster_label("user")], labels[cluster_label("workspace")]
    return ObservedRun(
        container_id=inspect["Id"],
        container_name=inspect.get("Name", "").lstrip("/"),
        kind=kind,
        user=user,
        workspace=workspace,
        resource_model=labels.get(RESOURCE_MODEL, "") if kind == "workspace" else "",
        cpus=_cpus(host),
        memory_gb=(host.get("Memory") or 0) / GIB,
        gpus=_gpus(host),
        start_us=start,
    )


def scratch_source(inspect: dict) -> str | None:
    """The host directory bind-mounted at ``/scratch`` in a cluster member (its ``docker
    inspect``), None for anything else: a member without scratch has ``/scratch`` in its
    container, which is not an allocation."""
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    if labels.get(cluster_label("role")) != "member":
        return None
    for mount in inspect.get("Mounts") or ():
        if mount.get("Type") == "bind" and mount.get("Destination") == SCRATCH:
            return mount.get("Source") or None
    return None


def run_end(
    run: OpenRun, inspect: dict | None, journal_end_us: int | None
) -> tuple[int, str] | None:
    """When the open ``run`` ended and how that is known (rules 2–4 of the module docstring),
    or None while it still runs. ``inspect`` is the container's ``docker inspect`` (None:
    gone); ``journal_end_us`` the activity log's first stopped/errored entry of its workspace
    at or after the run's start (None: there is none, or not a workspace)."""
    if inspect is not None:
        state = inspect.get("State") or {}
        started = docker_time_us(state.get("StartedAt"))
        finished = docker_time_us(state.get("FinishedAt"))
        if state.get("Running") and started == run.start_us:
            return None
        if state.get("Running") and started is not None and started > run.start_us:
            within = finished is not None and run.start_us <= finished <= started
            return (finished if within else started), "restarted"
        if finished is not None and finished >= run.start_us:
            return finished, "inspect"
        return run.seen_us, "last-seen"
    if run.kind == "workspace" and journal_end_us is not None:
        return max(journal_end_us, run.start_us), "journal"
    return run.seen_us, "last-seen"
