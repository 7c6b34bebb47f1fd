"""Spark on a dynamic workspace cluster, one run: what a cold start costs a job.

A real hub (tests/hub_harness, prefix "benchsparkb") with the clusters service (a pass every
second, stabilisation 2 s, minimum member lifetime 10 s) and one workspace, alice/bench
(standard-small: the kernel's driver runs there). Members are standard-small with a dedicated
manager (2 cores each to executors of 1 core). In one "PySpark – Remote - Dynamic" kernel:

1. cold: the cluster has 0 members; a job of 4 one-second tasks runs. Its time includes the
   scaler noticing the wanted executors, members starting, their workers registering and
   the executors launching.
2. warm: the same job again at once, on the executors the first one left.
3. floor: the time one Grid Engine member takes from a pending job to accepting jobs (the
   member start the cluster benchmark measures), plus the warm job: what a cold job could
   take at best with members started on demand.

Reported: cold, warm, floor and cold / floor. Raw numbers: .cache/bench/spark.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from cluster_harness import remove_cluster_leftovers, run_in_kernel  # noqa: E402
from docker_cli import cleanup  # noqa: E402
from hub_harness import HubProcess  # noqa: E402

from benchmarks.clusters import Bench, member_start, wait  # noqa: E402

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
import time
def job():
    t0 = time.monotonic()
    sc.parallelize(range(4), 4).map(lambda x: (time.sleep(1), x)[1]).sum()
    return time.monotonic() - t0
print("COLD", job())
print("WARM", job())
print("EXECUTORS", sc._jsc.sc().getExecutorMemoryStatus().size() - 1)
"""


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    scratch = workdir / "scratch"
    hub = HubProcess(workdir, prefix=PREFIX, env_overrides={
        "BENCHHUB_CLUSTER_SUBNETS": "10.236.0.0/20",
        "BENCHHUB_CLUSTER_SCRATCH_ROOT": str(scratch),
        "BENCHHUB_CLUSTER_INTERVAL": "1",
        "BENCHHUB_CLUSTER_STABILISATION": "2",
        "BENCHHUB_CLUSTER_MIN_LIFETIME": "10",
    })  # fmt: skip
    cleanup(PREFIX, hub.storage_root)
    results: dict = {"date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    try:
        hub.start()
        hub.ensure_user("alice")
        hub.start_workspace("alice", "bench", {"resource_model": "standard-small"})
        bench = Bench(hub)
        manager = bench.start({"type": "dynamic", "min_members": 0, "max_members": 4, **MEMBER})
        results["member_start_s"] = member_start(bench, manager)
        wait(lambda: bench.members() == 0, 180, "back to 0 members", step=0.5)
        conf = hub.storage_root / "alice" / "bench" / "mnt" / ".spark/remote/conf-dynamic"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "spark-defaults.conf").write_text(CONF)
        started = time.monotonic()
        out = run_in_kernel(bench.workspace, "pyspark-remote-dynamic", JOB)
        results["kernel_s"] = time.monotonic() - started
        values = dict(line.split(" ", 1) for line in out.splitlines() if line[:1].isupper())
        results.update(cold_s=float(values["COLD"]), warm_s=float(values["WARM"]),
                       executors=int(values["EXECUTORS"]))  # fmt: skip
        bench.stop()
    finally:
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        remove_cluster_leftovers(PREFIX, scratch)
    out_file = REPO / ".cache" / "bench" / "spark.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(results, indent=1))
    floor = results["member_start_s"] + results["warm_s"]
    print(f"\n## Spark on a dynamic cluster ({results['date']})\n")
    print("| measure | BenchHub | floor | ratio |")
    print("|---|---|---|---|")
    print(f"| job of 4 one-second tasks, cold (0 members, {results['executors']} executors "
          f"after) | {results['cold_s']:.1f} s | {floor:.1f} s (member start "
          f"{results['member_start_s']:.1f} s + warm job) | **{results['cold_s'] / floor:.2f}** |")
    print(f"| the same job, warm (executors there) | {results['warm_s']:.1f} s | | |")


if __name__ == "__main__":
    main()
