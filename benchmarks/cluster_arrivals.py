"""A qsub into an empty dynamic cluster: the pending-job watch against passes alone.

Two real hubs, one after the other (tests/support/hub_harness, prefix "benchclarr"), each
with the clusters service at its **default** pass interval (5 s; stabilisation 2 s and
minimum member lifetime 5 s, so that the cluster is back at 0 members quickly between
starts), and one workspace, alice/bench:

* ``watch``: the service as shipped (``--watch-new-jobs=True``): a job submitted to a
  cluster that can grow wakes it (hub_services/clusters/pending_watch.py);
* ``passes``: the baseline, ``--watch-new-jobs=False``: the job is found by the next pass.

Each side: a dynamic cluster (0..2 members, standard-small with a dedicated manager), then
:data:`STARTS` times one 1-core job into it at 0 members, timed from the qsub to its member
accepting jobs (``benchmarks.clusters.member_start``, read from the manager every 0.1 s);
and what the watch costs: the manager's CPU time (its cgroup's ``usage_usec``: the qmaster
and every command run in it) over :data:`IDLE_S` seconds of an idle cluster at 0 members,
which can grow, so its watch runs. A failed wait is a row (as in benchmarks/clusters.py).
Raw numbers: .cache/bench/cluster_arrivals.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.clusters import Bench, attempt, member_start, print_failures, wait
from benchmarks.machine import describe, now
from tests.support.cluster_harness import cluster_env, remove_cluster_leftovers
from tests.support.docker_cli import cleanup
from tests.support.hub_harness import HubProcess

REPO = Path(__file__).resolve().parent.parent
PREFIX = "benchclarr"
INTERVAL_S = 5  # the service's default
STARTS, IDLE_S = 7, 30
SIDES = {"watch": "True", "passes": "False"}


def manager_cpu_s(manager: str) -> float:
    """CPU seconds the manager's cgroup has used so far (cgroup v2, else v1)."""
    out = subprocess.run(
        ["docker", "exec", manager, "sh", "-c",
         "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return int(out.split()[0]) / 1e9  # cgroup v1: nanoseconds


def spread_start(bench: Bench, manager: str, i: int) -> float:
    """A member start whose qsub comes at the ``i``-th of :data:`STARTS` spread points of the
    pass schedule: one interval after the cluster reached 0 members (so the pass that the
    last member's removal woke is over), plus (i + 0.5) / STARTS of an interval. Without it,
    every qsub came right after that woken pass and the baseline looked like the watch."""
    wait(lambda: bench.members() == 0, 120, "0 members")
    t0, phase = time.monotonic(), INTERVAL_S * (1 + (i + 0.5) / STARTS)
    wait(lambda: time.monotonic() - t0 >= phase, phase + 5, "the qsub's phase", step=0.1)
    return member_start(bench, manager)


def idle_cost(bench: Bench, manager: str) -> float:
    """The manager's CPU share (cores) over IDLE_S seconds at 0 members."""
    wait(lambda: bench.members() == 0, 120, "0 members before the idle measurement")
    before, t0 = manager_cpu_s(manager), time.monotonic()
    wait(lambda: time.monotonic() - t0 >= IDLE_S, IDLE_S + 5, "the idle period", step=1)
    return (manager_cpu_s(manager) - before) / (time.monotonic() - t0)


def side(name: str, flag: str, results: dict) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    scratch = workdir / "scratch"
    env = cluster_env(scratch, "10.248.0.0/20", 2, 5)
    env.update(BENCHHUB_CLUSTER_INTERVAL=str(INTERVAL_S), BENCHHUB_CLUSTER_WATCH_NEW_JOBS=flag)
    hub = HubProcess(workdir, prefix=PREFIX, env_overrides=env)
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    try:
        hub.start()
        hub.ensure_user("alice")
        hub.start_workspace("alice", "bench", {"resource_model": "test-small"})
        bench = Bench(hub)
        manager = bench.start({"type": "dynamic", "min_members": 0, "max_members": 2})
        starts = [
            attempt(bench, results, f"{name} member start", spread_start, bench, manager, i)
            for i in range(STARTS)
        ]
        results[name] = {
            "member_start_s": [s for s in starts if s is not None],
            "idle_manager_cores": attempt(
                bench, results, f"{name} idle", idle_cost, bench, manager
            ),
        }
        bench.stop()
    finally:
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        remove_cluster_leftovers(PREFIX, scratch)


def main() -> None:
    results: dict = {"date": now(), "machine": describe(), "interval_s": INTERVAL_S}
    for name, flag in SIDES.items():
        side(name, flag, results)
    out = REPO / ".cache" / "bench" / "cluster_arrivals.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    report(results)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(r: dict) -> None:
    print(f"\n## qsub into an empty dynamic cluster ({r['date']}; {r['machine']})\n")
    print(f"Pass interval {r['interval_s']} s (the default); {STARTS} member starts per side.\n")
    print("| measure | watch (shipped) | passes only (baseline) | ratio |")
    print("|---|---|---|---|")
    w, p = r.get("watch", {}), r.get("passes", {})
    ws, ps = w.get("member_start_s") or [], p.get("member_start_s") or []
    for label, f in (("p50", statistics.median), ("p95", _p95)):
        if ws and ps:
            a, b = f(ws), f(ps)
            print(f"| qsub -> member accepting jobs, {label} | {a:.1f} s | {b:.1f} s "
                  f"| **{a / b:.2f}** |")  # fmt: skip
    if ws or ps:
        print(f"| (each start) | {', '.join(f'{s:.1f}' for s in ws)} "
              f"| {', '.join(f'{s:.1f}' for s in ps)} | |")  # fmt: skip
    wi, pi = w.get("idle_manager_cores"), p.get("idle_manager_cores")
    if wi is not None and pi is not None:
        print(f"| idle cluster at 0 members: manager CPU (cores) | {wi:.3f} | {pi:.3f} "
              f"| {wi - pi:+.3f} cores |")  # fmt: skip
    print_failures(r)


if __name__ == "__main__":
    main()
