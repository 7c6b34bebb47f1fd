"""Spark on a workspace cluster: what the service writes, asks and concludes.

Every cluster runs a Spark standalone master on its manager (``spark://spark-master:7077``;
``spark-master`` is the manager's alias on the cluster network, ``workspace`` the
workspace's) and, once the cluster is used for Spark (:mod:`.spark_use`), a worker on every
member offering the member's Grid Engine capacity. The drivers are the workspace's PySpark
kernels (images/jupyterlab/spark/startup.py).

* :func:`cluster_file` is ``/data/.spark/cluster.json``, written while the cluster runs: the
  kernels size their first ``spark-defaults.conf`` from it, and the workspace's proxy shows
  the master UI only while it names one (``web_ui``).
* :data:`OBSERVE_SCRIPT` runs in the manager (``docker exec``; its Python has only the
  standard library there) and prints the master's JSON and, for each driver UI on the
  workspace (ports 4040-4055), the dynamic-allocation gauges and executor size. Whatever
  answers on those ports is the user's program: no redirect is followed, each answer is at
  most 1 MiB (the master's 8 MiB), four applications per port, 25 s in all; the service
  reads the exec's output bounded too (:meth:`~.engine.DockerEngine.exec`).
* :func:`parse_observation` turns that into what the auto scaler needs: each worker's use
  (a member running executors is busy) and, for every application with dynamic allocation,
  the executors it wants and has not got, as :class:`~.scaler.Request` values.

Nothing here talks to Docker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote

from benchhub.user_files import read_in_data, remove_in_data, write_in_data

from .scaling import Capacity, Request

__all__ = [
    "CLUSTER_FILE",
    "MASTER_ALIAS",
    "MASTER_URL",
    "OBSERVE_SCRIPT",
    "WORKSPACE_ALIAS",
    "SparkView",
    "WorkerUse",
    "cluster_file",
    "executor_defaults",
    "parse_observation",
    "remove_cluster_file",
    "ui_path",
    "write_cluster_file",
]

MASTER_ALIAS = "spark-master"
WORKSPACE_ALIAS = "workspace"
MASTER_URL = f"spark://{MASTER_ALIAS}:7077"
MASTER_UI_PORT = 8080
CLUSTER_FILE = ".spark/cluster.json"  # relative to the workspace's /data
MIB = 1024**2
# Spark adds max(384 MiB, 10 %) of off-heap overhead to each executor's heap; a member's
# worker offers its whole capacity, so the default heap leaves room for it.
EXECUTOR_OVERHEAD_MIB = 384
DEFAULT_EXECUTOR_CORES = 4  # ICA Bench's example: 4 cores, 4 GB per executor
_GAUGE = ".driver.ExecutorAllocationManager.executors."

OBSERVE_SCRIPT = r"""
import json, signal, sys, time, urllib.request
# The driver UIs are the user's programs on the workspace: no redirect is followed (it could
# point anywhere the manager reaches), every answer is bounded, and so is the whole run: no
# new request after 20 s, and SIGALRM ends a run that a trickling answer still holds at 25 s.
DEADLINE = time.monotonic() + 20
signal.alarm(25)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
def get(url, limit=1 << 20):
    if time.monotonic() > DEADLINE:
        return None
    try:
        with opener.open(url, timeout=2) as r:
            body = r.read(limit + 1)
        return json.loads(body) if len(body) <= limit else None
    except Exception:
        return None
# argv: the workspace's host name [, first driver UI port, master JSON URL] (tests move both)
first = int(sys.argv[2]) if len(sys.argv) > 2 else 4040
master_url = sys.argv[3] if len(sys.argv) > 3 else "http://localhost:8080/json/"
out = {"master": get(master_url, 8 << 20), "drivers": []}
for port in range(first, first + 16):
    try:
        metrics = get(f"http://{sys.argv[1]}:{port}/metrics/json/")
        if not isinstance(metrics, dict):
            continue
        gauges = {k: v.get("value") for k, v in (metrics.get("gauges") or {}).items()
                  if ".ExecutorAllocationManager." in k and isinstance(v, dict)}
        apps = get(f"http://{sys.argv[1]}:{port}/api/v1/applications") or []
        for app in apps[:4]:
            env = get(f"http://{sys.argv[1]}:{port}/api/v1/applications/{app['id']}/environment")
            props = dict((env or {}).get("sparkProperties") or [])
            out["drivers"].append({"port": port, "app": app["id"], "gauges": gauges,
                                   "executor_cores": props.get("spark.executor.cores")})
    except Exception:
        continue
print(json.dumps(out))
"""


def executor_defaults(capacity: Capacity) -> dict:
    """The executor size a cluster's first remote ``spark-defaults.conf`` gets: up to 4
    cores (ICA Bench's example), as many executors per member as that allows, each with an
    equal share of the member's memory less Spark's overhead (at least 512 MiB)."""
    cores = max(1, min(DEFAULT_EXECUTOR_CORES, capacity.cores))
    per_member = max(1, capacity.cores // cores)
    memory_mib = capacity.memory // MIB // per_member - EXECUTOR_OVERHEAD_MIB
    memory_mib = max(512, memory_mib // 128 * 128)
    return {"cores": cores, "memory": f"{memory_mib}m", "per_member": per_member}


def ui_path(hub_base_url: str, user: str, workspace: str) -> str:
    """The master UI through the hub's proxy and the workspace's jupyter-server-proxy."""
    base = hub_base_url.rstrip("/")
    return (
        f"{base}/user/{quote(user, safe='')}/{quote(workspace, safe='')}/proxy/"
        f"{MASTER_ALIAS}:{MASTER_UI_PORT}/"
    )


def cluster_file(
    cluster_id: str, kind: str, max_members: int, capacity: Capacity, web_ui: str | None
) -> dict:
    """The content of ``/data/.spark/cluster.json`` (see the module docstring)."""
    executor = executor_defaults(capacity)
    return {
        "cluster_id": cluster_id,
        "type": kind,
        "master_url": MASTER_URL,
        "driver_host": WORKSPACE_ALIAS,
        "member": {"cores": capacity.cores, "memory_mib": capacity.memory // MIB},
        "executor": {"cores": executor["cores"], "memory": executor["memory"]},
        "max_executors": executor["per_member"] * max_members,
        "web_ui": web_ui,
    }


def write_cluster_file(data_dir: str, content: dict) -> None:
    """Write ``cluster.json`` into the workspace's data directory (the host path), owned by
    the workspace user like the rest of ``/data/.spark``. Blocking: call it in a thread."""
    write_in_data(data_dir, CLUSTER_FILE, json.dumps(content, indent=1) + "\n")


def remove_cluster_file(data_dir: str, cluster_id: str) -> None:
    """Remove ``cluster.json`` if it is this cluster's (a newer cluster's file stays)."""
    try:
        if json.loads(read_in_data(data_dir, CLUSTER_FILE)).get("cluster_id") == cluster_id:
            remove_in_data(data_dir, CLUSTER_FILE)
    except (OSError, ValueError, AttributeError):
        pass


@dataclass(frozen=True)
class WorkerUse:
    """What Spark uses of one member: cores and memory granted to executors."""

    cores: int
    memory: int  # bytes
    alive: bool = True


@dataclass(frozen=True)
class SparkView:
    """:func:`parse_observation`'s result. ``workers`` by host (= member name); ``requests``
    the executors dynamic-allocation applications want and lack; ``applications`` for the
    API; ``registered_applications`` how many applications the master runs (waiting for
    executors or running)."""

    master_alive: bool
    workers: dict[str, WorkerUse] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    applications: list[dict] = field(default_factory=list)
    registered_applications: int = 0


def parse_observation(text: str, capacity: Capacity) -> SparkView:
    """Read :data:`OBSERVE_SCRIPT`'s output. An executor's cores are the application's
    ``spark.executor.cores`` (unset: a whole member, Spark standalone's default), its memory
    the master's ``memoryperexecutor``. Only applications the master runs count (a local
    kernel's driver UI is not one of them)."""
    # the exec's output is stdout and stderr together: the document is the last JSON line
    line = next((ln for ln in reversed(text.strip().splitlines()) if ln.startswith("{")), "")
    try:
        doc = json.loads(line)
    except ValueError:
        return SparkView(master_alive=False)
    master = doc.get("master") if isinstance(doc, dict) else None
    if not isinstance(master, dict):
        return SparkView(master_alive=False)
    workers = {
        w["host"]: WorkerUse(
            int(w.get("coresused", 0)), int(w.get("memoryused", 0)) * MIB, w.get("state") == "ALIVE"
        )
        for w in master.get("workers") or []
        if w.get("state") != "DEAD"
    }
    apps = {a["id"]: a for a in master.get("activeapps") or []}
    requests, applications = [], []
    for driver in doc.get("drivers") or []:
        app = apps.get(driver.get("app"))
        if app is None:
            continue
        gauges = {
            k.rsplit(_GAUGE, 1)[-1]: v
            for k, v in (driver.get("gauges") or {}).items()
            if k.startswith(f"{app['id']}{_GAUGE}")
        }
        target, have = gauges.get("numberTargetExecutors"), gauges.get("numberAllExecutors")
        missing = max(0, int(target) - int(have)) if target is not None and have is not None else 0
        cores = _whole(driver.get("executor_cores")) or capacity.cores
        memory = int(app.get("memoryperexecutor", 1024)) * MIB
        applications.append(
            {
                "id": app["id"],
                "name": app.get("name", ""),
                "dynamic": target is not None,
                "executors_wanted": missing,
                "executor_cores": cores,
                "executor_memory_bytes": memory,
            }
        )
        if missing:
            requests.append(Request(f"spark {app['id']}", missing, Capacity(cores, memory)))
    return SparkView(True, workers, requests, applications, registered_applications=len(apps))


def _whole(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None
