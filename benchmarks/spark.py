"""Spark on a dynamic workspace cluster, one run: what a cold start costs a job, step by step.

A real hub (tests/support/hub_harness, prefix "benchsparkb") with the clusters service (a pass
every second, stabilisation 2 s, minimum member lifetime 10 s) and one workspace, alice/bench
(standard-small: the kernel's driver runs there). Members are standard-small with a dedicated
manager (2 cores each to executors of 1 core). Containers share the host's clock, so times
taken in the workspace (the driver's REST API), by this process and in the cluster compare.

Steps, each measured:

1. member: one Grid Engine member, from a pending job to accepting jobs (the member start the
   cluster benchmark measures; members boot without a Spark worker until Spark is used);
2. worker registration: ``bench-cluster start-worker`` on that member until its worker is
   ALIVE at the master;
3. then, in one "PySpark – Remote - Dynamic" kernel on the cluster at 0 members: a *cold* job
   of 4 one-second tasks (the scaler notices the wanted executors, members start with their
   workers, executors launch), then the same job *warm* on the executors it left. From the
   cold job: the executor JVM (its worker ALIVE at the master, seen by this process every
   0.2 s, to the executor's ``addTime`` at the driver) and the Python worker (a cold task's
   run time less a warm one's: the first task on an executor forks its Python worker).

The floor printed is the sum of the measured necessary steps: member + worker registration +
executor JVM + Python worker + the warm job. A failed wait becomes a row (as in
benchmarks/clusters.py). Raw numbers: .cache/bench/spark.json; the scaler log:
.cache/bench/spark-scaler.log.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.clusters import Bench, attempt, keep_scaler_log, member_start, print_failures, wait
from tests.support.cluster_harness import cluster_env, remove_cluster_leftovers, run_in_kernel
from tests.support.docker_cli import cleanup
from tests.support.hub_harness import HubProcess

REPO = Path(__file__).resolve().parent.parent
# lines added to the kernel's settings, to compare executor options, e.g.
# BENCH_SPARK_CONF='spark.executor.extraJavaOptions -XX:+UseSerialGC'
EXTRA_CONF = os.environ.get("BENCH_SPARK_CONF", "").replace("\\n", "\n")
if EXTRA_CONF:
    EXTRA_CONF += "\n"

PREFIX = "benchsparkb"
MEMBER = {"resource_model": "standard-small", "dedicated_manager": True}
CONF = """spark.master                                 spark://spark-master:7077
spark.driver.host                            workspace
spark.driver.bindAddress                     0.0.0.0
spark.executor.cores                         1
spark.executor.memory                        1g
spark.dynamicAllocation.enabled              true
spark.dynamicAllocation.shuffleTracking.enabled true
spark.dynamicAllocation.schedulerBacklogTimeout 1s
spark.dynamicAllocation.executorIdleTimeout  60s
spark.dynamicAllocation.maxExecutors         4
"""
JOB = """
import json, time, urllib.request
from datetime import datetime, UTC
def rest(path):
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}{path}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)
def job():
    t0 = time.time()
    sc.parallelize(range(4), 4).map(lambda x: (time.sleep(1), x)[1]).sum()
    return [t0, time.time()]
def run_times(job):
    return [t["taskMetrics"]["executorRunTime"] / 1000 for stage in job["stageIds"]
            for t in rest(f"/stages/{stage}/0/taskList?length=100")]
def added(text):
    return datetime.strptime(text.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=UTC).timestamp()
def compute():
    t0 = time.time()
    spark.range(0, 200_000_000, numPartitions=4).selectExpr("sum(id % 7)").collect()
    return time.time() - t0
cold, warm = job(), job()
jobs = sorted(rest("/jobs"), key=lambda j: j["jobId"])
computes = [compute() for _ in range(3)]
print("TIMES " + json.dumps({
    "cold": cold, "warm": warm, "cold_runs": run_times(jobs[0]), "warm_runs": run_times(jobs[1]),
    "compute": computes,
    "executors": [{"host": e["hostPort"].rsplit(":", 1)[0], "added": added(e["addTime"])}
                  for e in rest("/allexecutors") if e["id"] != "driver"]}))
"""
MASTER_JSON = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://localhost:8080/json/', timeout=5).read()"
    ".decode())"
)


def master_workers(manager: str) -> dict[str, str]:
    """``{worker host (its member's name): state}`` from the master's JSON (asked in the
    manager)."""
    out = subprocess.run(
        ["docker", "exec", manager, "/opt/venv/bin/python", "-c", MASTER_JSON],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    try:
        workers = json.loads(out).get("workers") or []
    except ValueError:
        return {}
    return {w.get("host", ""): w.get("state", "") for w in workers}


def worker_registration(bench: Bench, manager: str) -> float:
    """Start the one member's Spark worker; seconds until the master has it ALIVE."""
    member = bench.api("GET")["members"][0]["name"]
    t0 = time.monotonic()
    subprocess.run(
        ["docker", "exec", member, "bench-cluster", "start-worker"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait(
        lambda: master_workers(manager),
        60,
        "the member's worker ALIVE at the master",
        until=lambda w: "ALIVE" in w.values(),
    )
    return time.monotonic() - t0


class WorkerWatch(threading.Thread):
    """Notes when each worker is first ALIVE at the master (epoch seconds), every 0.2 s."""

    def __init__(self, manager: str):
        super().__init__(daemon=True)
        self.manager, self.alive, self.done = manager, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for ip, state in master_workers(self.manager).items():
                if state == "ALIVE":
                    self.alive.setdefault(ip, time.time())


def cold_and_warm(bench: Bench, hub: HubProcess, manager: str) -> dict:
    conf = hub.storage_root / "alice" / "bench" / "mnt" / ".spark/remote/conf-dynamic"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(CONF + EXTRA_CONF)
    watch = WorkerWatch(manager)
    watch.start()
    try:
        out = run_in_kernel(bench.workspace, "pyspark-remote-dynamic", JOB)
    finally:
        watch.done.set()
        watch.join()
    line = next((ln for ln in out.splitlines() if ln.startswith("TIMES ")), None)
    if line is None:
        raise RuntimeError(f"the kernel printed no times: {out[-2000:]}")
    t = json.loads(line[6:])
    jvm = [e["added"] - watch.alive[e["host"]] for e in t["executors"] if e["host"] in watch.alive]
    return {
        "cold_s": t["cold"][1] - t["cold"][0],
        "warm_s": t["warm"][1] - t["warm"][0],
        "executors": len(t["executors"]),
        "executor_jvm_s": min(jvm) if jvm else None,
        "python_worker_s": statistics.median(t["cold_runs"]) - statistics.median(t["warm_runs"]),
        "compute_s": t.get("compute"),
        "raw": t,
        "workers_alive": watch.alive,
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides=cluster_env(scratch, "10.236.0.0/20", 2, 10),
    )
    cleanup(PREFIX, hub.storage_root)
    results: dict = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "extra_conf": EXTRA_CONF.strip(),
        "load_before": os.getloadavg(),
    }
    bench = None
    try:
        hub.start()
        hub.ensure_user("alice")
        hub.start_workspace("alice", "bench", {"resource_model": "standard-small"})
        bench = Bench(hub)
        manager = bench.start({"type": "dynamic", "min_members": 0, "max_members": 4, **MEMBER})
        results["member_start_s"] = attempt(
            bench, results, "member start", member_start, bench, manager
        )
        if results["member_start_s"] is not None:
            results["worker_registration_s"] = attempt(
                bench, results, "worker registration", worker_registration, bench, manager
            )
        attempt(
            bench,
            results,
            "back to 0 members",
            wait,
            lambda: bench.members() == 0,
            180,
            "back to 0 members",
        )
        results.update(
            attempt(bench, results, "cold job", cold_and_warm, bench, hub, manager) or {}
        )
        results["load_after"] = os.getloadavg()
        keep_scaler_log(bench, "spark-scaler.log")
        bench.stop()
    finally:
        if bench is not None and not (REPO / ".cache/bench/spark-scaler.log").exists():
            keep_scaler_log(bench, "spark-scaler.log")
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        remove_cluster_leftovers(PREFIX, scratch)
    out_file = REPO / ".cache" / "bench" / "spark.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(results, indent=1))
    _report(results)


def _report(r: dict) -> None:
    print(f"\n## Spark on a dynamic cluster ({r['date']}; extra settings: {r['extra_conf']!r})\n")
    print(f"load {r.get('load_before')} -> {r.get('load_after')}\n")
    print("| measure | BenchHub | floor | ratio |")
    print("|---|---|---|---|")
    steps = {
        "member (pending job -> accepting jobs)": r.get("member_start_s"),
        "worker registration (start-worker -> ALIVE at the master)": r.get("worker_registration_s"),
        "executor JVM (worker ALIVE -> executor added at the driver)": r.get("executor_jvm_s"),
        "Python worker (cold task less warm task)": r.get("python_worker_s"),
        "the warm job": r.get("warm_s"),
    }
    for name, value in steps.items():
        print(f"| step: {name} | {'-' if value is None else f'{value:.2f} s'} | | |")
    if r.get("cold_s") is not None and None not in steps.values():
        floor = sum(steps.values())
        print(
            f"| job of 4 one-second tasks, cold (0 members, {r['executors']} executors "
            f"after) | {r['cold_s']:.1f} s | {floor:.1f} s (the steps above) "
            f"| **{r['cold_s'] / floor:.2f}** |"
        )
    if r.get("compute_s"):
        runs = ", ".join(f"{c:.2f}" for c in r["compute_s"])
        print(f"| warm compute: sum over 2e8 rows on the executors ({runs} s) | | | |")
    print_failures(r)


if __name__ == "__main__":
    main()
