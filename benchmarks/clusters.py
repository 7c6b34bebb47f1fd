"""Workspace clusters, one run: scale-up after a burst, scale-down after the work, throughput.

A real hub (tests/support/hub_harness, prefix "benchclusb") with the clusters service (a pass
every second and at once on Docker events, stabilisation 5 s, minimum member lifetime 10 s
instead of ICA Bench's 300 s; members boot paced by the default start window of this host,
hub_services/clusters/pacing.py) and one workspace, alice/bench. Members are
standard-small (2 CPUs, 8 GB) with a dedicated manager, so each offers 2 cores to jobs; jobs
are submitted with qsub inside the workspace as its user. Member readiness is read from the
manager (``qhost``: the execution daemon reports) every 0.1 s, independently of the service.

1. Member start: a dynamic cluster (0..10) at 0 members gets one 1-core job; the time from
   qsub to the new member accepting jobs is the floor's unit (median of 3, scaled back to 0
   between them).
2. Burst: 20 one-core jobs (sleep 20) submitted at once need k = 10 members. Time from the
   first qsub to all 10 accepting jobs, against the larger of member start x ceil(k / start
   window) and the time the qsubs took + one member start (:func:`burst_floor`); when each
   member first accepted jobs is kept (``accepted_s``). Twice in a row.
3. Scale-down: from the last job's end to 0 members, against the policy's own pacing (one
   member drained at a time, the next after the stabilisation time: (k - 1) x 5 s).
   2b/3b. The same with Spark in use: a Spark application (a driver run in the manager, as
   uid 1000) registers with the master, the scaler marks the cluster in Spark use, and from
   then on every member runs a Spark worker (a JVM) beside its execution daemon (started
   with it while a Spark application waits for workers, else once no member of the cluster
   boots: hub_services/clusters/spark_use.py); the member start is measured again that way
   and is that burst's floor's unit. Each burst also records when all k members' Spark
   workers were alive (``workers_s``, from the first qsub, as the service's status shows
   them): the JVMs' cost is moved after the boots, not gone.
4. Throughput: a static cluster of 4 members (8 cores) runs 500 one-second jobs (one array
   job, -t 1-500): time from qsub to the last task's end, against 500 CPU-s / 8 cores.
The engine's events for the run's cluster containers (create, start, every ``docker exec``
with its command, its end, and its id pairing the two) go to
.cache/bench/clusters-events.log. Phases can be chosen:
``python -m benchmarks.clusters [plain] [spark] [throughput]`` (all by default). Raw
numbers: .cache/bench/clusters.json; the run's scaler log: .cache/bench/clusters-scaler.log.
A wait that fails does not end the run: it becomes a row (what was awaited, what was reached
and when, the scaler log's tail) in the table and in the JSON (``failed``), and the next phase
starts.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import requests

from hub_services.clusters import pacing
from hub_services.clusters.containers import LABEL
from tests.support import waiting
from tests.support.cluster_harness import cluster_env
from tests.support.docker_cli import cleanup, docker, exec_in
from tests.support.hub_harness import HubProcess

REPO = Path(__file__).resolve().parent.parent

PREFIX = "benchclusb"
# WINDOW is the service's default start window on this host (parallel_starts 0)
STABILISATION_S, MIN_LIFETIME_S = 5, 10
WINDOW = pacing.start_window(os.cpu_count() or 1)
SCALER_LOG = "logs/sge-scaler.log"  # in the workspace's /data
MEMBER = {"resource_model": "standard-small", "dedicated_manager": True}  # 2 cores per member
BURST, BURST_SLEEP_S, CORES_PER_MEMBER = 20, 20, 2
THROUGHPUT_JOBS, THROUGHPUT_MEMBERS = 500, 4
BURSTS, STARTS = 2, 3  # bursts in a row, member starts (the floor's unit: their median)
# a Spark application that registers with the cluster's master (run in the manager as the
# workspace user) and ends when its standard input does (once the scaler has marked the
# cluster in Spark use)
SPARK_APP = """
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("spark://spark-master:7077").appName("bench-spark-use")
         .config("spark.driver.host", "spark-master").config("spark.ui.enabled", "false")
         .getOrCreate())
print("REGISTERED", spark.sparkContext.applicationId, flush=True)
sys.stdin.read()
spark.stop()
"""


# (in the manager) every 0.1 s one line: the members whose queue instance is neither
# unknown (its execution daemon reports) nor disabled, i.e. that accept jobs
ACCEPTING_LOOP = r"""
while :; do
  qstat -f -xml -q all.q 2>/dev/null | awk -v manager="$(hostname)" '
    /<name>all.q@/ { h = $0; sub(/.*<name>all.q@/, "", h); sub(/<.*/, "", h); s = "" }
    /<job_list/ { job = 1 }
    /<\/job_list>/ { job = 0 }
    /<state>/ && !job { s = $0 }
    /<\/Queue-List>/ { if (h != "" && h != manager && s !~ /[ud]/) printf "%s ", h; h = "" }
    END { print "." }' || exit 0
  sleep 0.1
done
"""


class AcceptWatch(threading.Thread):
    """What :data:`ACCEPTING_LOOP` prints, kept as ``latest``: one ``docker exec`` for the
    whole run instead of two per look (which took about 0.6 of a core on 2 cores, from the
    members it measures). It ends with the manager."""

    def __init__(self, manager: str):
        super().__init__(daemon=True)
        self.latest: frozenset[str] = frozenset()
        self.first = threading.Event()
        self.process = subprocess.Popen(
            ["docker", "exec", manager, "sh", "-c", ACCEPTING_LOOP],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self) -> None:
        for line in self.process.stdout:
            self.latest = frozenset(line.strip().rstrip(".").split())
            self.first.set()


class Bench:
    def __init__(self, hub: HubProcess):
        self.hub = hub
        self.workspace = hub.container_name("alice", "bench")
        r = hub.api("POST", "/users/alice/tokens", {"expires_in": 7200})
        self.token = r.json()["token"]
        self.watches: dict[str, AcceptWatch] = {}

    def api(self, method: str, body: dict | None = None) -> dict | None:
        r = requests.request(
            method,
            f"{self.hub.url}/services/clusters/api/clusters/alice/bench",
            json=body,
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )
        if r.status_code in (204, 404):
            return None
        r.raise_for_status()
        return r.json()

    def sh(self, script: str) -> str:
        result = exec_in(self.workspace, script, user="1000")
        if result.returncode != 0:
            raise RuntimeError(f"{script}: {result.stdout}{result.stderr}")
        return result.stdout

    def accepting(self, manager: str) -> int:
        """Members (not the manager) whose execution daemon reports and take jobs."""
        return len(self.accepting_names(manager))

    def accepting_names(self, manager: str) -> set[str]:
        """The members (not the manager) whose execution daemon reports and take jobs, as
        :class:`AcceptWatch` last saw them (started for ``manager`` on first use)."""
        watch = self.watches.get(manager)
        if watch is None or not watch.is_alive():
            watch = self.watches[manager] = AcceptWatch(manager)
            watch.start()
            watch.first.wait(10)
        return set(watch.latest)

    def spark_workers(self) -> int:
        """Members whose Spark worker the service's last pass saw alive."""
        members = (self.api("GET") or {}).get("members") or []
        return sum(1 for m in members if (m.get("spark") or {}).get("alive"))

    def members(self) -> int:
        return len((self.api("GET") or {}).get("members") or [])

    def scaler_log(self) -> str:
        path = self.hub.storage_root / "alice" / "bench" / "mnt" / SCALER_LOG
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, settings: dict) -> str:
        self.api("POST", {**MEMBER, **settings})
        wait(lambda: (self.api("GET") or {}).get("status") == "running", 60, "the manager runs")
        return self.api("GET")["manager"]

    def stop(self) -> None:
        self.api("DELETE")
        wait(lambda: self.api("GET") is None, 60, "the cluster is gone")

    def queue_empty(self, manager: str) -> bool:
        out = subprocess.run(
            ["docker", "exec", manager, "qstat", "-u", "*"], capture_output=True, text=True
        ).stdout
        return not out.strip()


# the support package's wait, looking at least every 0.1 s: the times measured here are seen
# within 0.1 s of the event
wait = partial(waiting.wait, step=0.1)


def attempt(bench: Bench, results: dict, phase: str, measure, *args):
    """``measure(*args)``; a wait in it that fails is recorded in ``results["failed"]`` (what
    it waited for, what it reached, seconds into the phase, the scaler log's last lines) and
    gives None instead of ending the run."""
    t0 = time.monotonic()
    try:
        return measure(*args)
    except waiting.WaitTimedOut as e:
        results.setdefault("failed", []).append(
            {
                "phase": phase,
                "waited_for": e.what,
                "timeout_s": e.timeout,
                "reached": repr(e.last),
                "after_s": round(time.monotonic() - t0, 1),
                "scaler_log_tail": bench.scaler_log().splitlines()[-15:],
            }
        )
        print(f"FAILED {phase}: {e}", flush=True)
        return None


def keep_scaler_log(bench: Bench, name: str) -> None:
    """Copy the run's scaler log to .cache/bench/<name> (the workspace is removed after)."""
    out = REPO / ".cache" / "bench" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(bench.scaler_log())


def member_start(bench: Bench, manager: str) -> float:
    """qsub of one 1-core job into an empty dynamic cluster -> its member accepts jobs."""
    wait(lambda: bench.accepting(manager) == 0 and bench.members() == 0, 120, "0 members")
    t0 = time.monotonic()
    bench.sh("cd /data && qsub -o /dev/null -e /dev/null -b y sleep 1")
    wait(lambda: bench.accepting(manager), 60, "one member accepts jobs", until=lambda n: n == 1)
    return time.monotonic() - t0


def burst(bench: Bench, manager: str, spark: bool = False) -> dict:
    """A burst (see the module docstring); with ``spark``, also the time until all its
    members' Spark workers are alive (None when they were not within 60 s)."""
    k = math.ceil(BURST / CORES_PER_MEMBER)
    wait(lambda: bench.members() == 0, 120, "0 members before the burst")
    t0, started_at = time.monotonic(), time.time()
    bench.sh(
        f"cd /data && for i in $(seq {BURST}); do qsub -o /dev/null -e /dev/null "
        f"-b y sleep {BURST_SLEEP_S} >/dev/null; done"
    )
    submitted = time.monotonic() - t0
    accepted: dict[str, float] = {}  # member -> seconds from the first qsub to accepting

    def count() -> int:
        names = bench.accepting_names(manager)
        for name in names:
            accepted.setdefault(name, round(time.monotonic() - t0, 2))
        return len(names)

    wait(count, 120, f"{k} members accept jobs", until=lambda n: n >= k)
    up = time.monotonic() - t0
    workers = None
    if spark:
        try:
            wait(bench.spark_workers, 60, f"{k} Spark workers alive", until=lambda n: n >= k)
            workers = round(time.monotonic() - t0, 2)
        except waiting.WaitTimedOut:
            pass  # recorded as None; the burst goes on
    wait(lambda: bench.queue_empty(manager), 300, "the burst's jobs end")
    ended = time.monotonic()
    wait(lambda: bench.members() == 0, 600, "back to 0 members", step=0.5)
    return {
        "k": k,
        "started_at": started_at,  # the first qsub, seconds since the epoch (the events log)
        "submit_s": submitted,
        "scale_up_s": up,
        "workers_s": workers,
        "scale_down_s": time.monotonic() - ended,
        "accepted_s": dict(sorted(accepted.items(), key=lambda item: item[1])),
    }


def use_spark(bench: Bench, manager: str) -> bool:
    """Mark the cluster in Spark use (see the module docstring); new members start with a
    Spark worker from now on. True when done."""
    app = subprocess.Popen(
        ["docker", "exec", "-i", "-u", "1000", manager, "/opt/venv/bin/python", "-c", SPARK_APP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait(
            lambda: (bench.api("GET") or {}).get("spark", {}).get("in_use") or app.poll(),
            120,
            "Spark in use",
        )
    finally:
        output = app.communicate(input="", timeout=120)[0]  # stdin ends: the application stops
    if not (bench.api("GET") or {}).get("spark", {}).get("in_use"):
        raise waiting.WaitTimedOut("Spark in use", 120, output[-1500:])
    return True


def scaling_phase(bench: Bench, results: dict, manager: str, label: str) -> None:
    """Member starts, then bursts in a row, recorded under ``label`` (plain / spark)."""
    starts = [
        attempt(bench, results, f"{label} member start", member_start, bench, manager)
        for _ in range(STARTS)
    ]
    results[label] = {
        "member_start_s": [s for s in starts if s is not None],
        "bursts": [
            attempt(bench, results, f"{label} burst", burst, bench, manager, label == "spark")
            for _ in range(BURSTS)
        ],
    }


def throughput(bench: Bench) -> float:
    manager = bench.start({"type": "static", "members": THROUGHPUT_MEMBERS})
    wait(
        lambda: bench.accepting(manager),
        120,
        "all members accept jobs",
        until=lambda n: n == THROUGHPUT_MEMBERS,
    )
    t0 = time.monotonic()
    bench.sh(f"cd /data && qsub -o /dev/null -e /dev/null -t 1-{THROUGHPUT_JOBS} -b y sleep 1")
    wait(lambda: bench.queue_empty(manager), 1800, "the 500 jobs end", step=0.25)
    return time.monotonic() - t0


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="benchclusb-"))
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides=cluster_env(
            workdir / "scratch", "10.234.0.0/20", STABILISATION_S, MIN_LIFETIME_S
        ),
    )
    cleanup(PREFIX, hub.storage_root)
    results: dict = {"date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "window": WINDOW}
    bench = None
    events = REPO / ".cache" / "bench" / "clusters-events.log"  # when each member was made
    events.parent.mkdir(parents=True, exist_ok=True)
    engine_log = subprocess.Popen(
        [
            *("docker", "events", "--filter", f"label={LABEL}.prefix={PREFIX}"),
            *("--filter", "event=create", "--filter", "event=start", "--filter"),
            *("event=exec_create", "--filter", "event=exec_die", "--format"),
            # the exec id pairs an exec's end with its start: how long each took
            "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.execID}}",
        ],
        stdout=events.open("w"),
    )
    try:
        hub.start()
        hub.ensure_user("alice")
        hub.start_workspace("alice", "bench", {"resource_model": "test-small"})
        bench = Bench(hub)
        phases = sys.argv[1:] or ["plain", "spark", "throughput"]
        results["load_before"] = os.getloadavg()
        if "plain" in phases or "spark" in phases:
            manager = bench.start({"type": "dynamic", "min_members": 0, "max_members": 10})
            if "plain" in phases:
                scaling_phase(bench, results, manager, "plain")
            if "spark" in phases and attempt(
                bench, results, "Spark use", use_spark, bench, manager
            ):
                scaling_phase(bench, results, manager, "spark")
            bench.stop()
        if "throughput" in phases:
            results["throughput_s"] = attempt(bench, results, "throughput", throughput, bench)
        results["load_after"] = os.getloadavg()
        keep_scaler_log(bench, "clusters-scaler.log")
        bench.stop()
    finally:
        engine_log.terminate()
        if bench is not None and bench.scaler_log():
            keep_scaler_log(bench, "clusters-scaler.log")
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        for net in docker(
            "network", "ls", "-q", "--filter", f"name=^{PREFIX}-cluster-", check=False
        ).split():
            docker("network", "rm", net, check=False)
        out = REPO / ".cache" / "bench" / "clusters.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))  # also what a crash left
    _report(results)


def _report(r: dict) -> None:
    print(f"\n## Workspace clusters ({r['date']}, load {_load(r)})\n")
    print("| measure | BenchHub | floor / ideal | ratio |")
    print("|---|---|---|---|")
    for label, what in (("plain", "Grid Engine only"), ("spark", "Spark in use")):
        if label in r:
            _report_scaling(r[label], what)
    if r.get("throughput_s") is not None:
        ideal = THROUGHPUT_JOBS * 1.0 / (THROUGHPUT_MEMBERS * CORES_PER_MEMBER)
        print(
            f"| {THROUGHPUT_JOBS} one-second jobs, {THROUGHPUT_MEMBERS} members x "
            f"{CORES_PER_MEMBER} cores | {r['throughput_s']:.1f} s | {ideal:.1f} s "
            f"(CPU-s / cores) | **{r['throughput_s'] / ideal:.2f}** |"
        )
    print_failures(r)


def _load(r: dict) -> str:
    return " -> ".join(
        "/".join(f"{x:.2f}" for x in r[k]) for k in ("load_before", "load_after") if k in r
    )


def _report_scaling(r: dict, what: str) -> None:
    start = statistics.median(r["member_start_s"]) if r["member_start_s"] else None
    if start is not None:
        starts = ", ".join(f"{s:.1f}" for s in r["member_start_s"])
        print(
            f"| {what}: one member: qsub -> accepting jobs (median of {starts} s) "
            f"| {start:.1f} s | | |"
        )
    for i, b in enumerate(r["bursts"], 1):
        if not b:
            continue
        if start is not None:
            floor_up, how = burst_floor(start, b["k"], b["submit_s"])
            print(
                f"| {what}: burst {i} of {BURST} jobs -> all {b['k']} members accepting jobs "
                f"(at most {WINDOW} booting at once; submitting took {b['submit_s']:.1f} s) "
                f"| {b['scale_up_s']:.1f} s | {floor_up:.1f} s ({how}) "
                f"| **{b['scale_up_s'] / floor_up:.2f}** |"
            )
        if b.get("workers_s") is not None:
            print(
                f"| {what}: burst {i}: all {b['k']} members' Spark workers alive (first qsub ->) "
                f"| {b['workers_s']:.1f} s | | |"
            )
        floor_down = (b["k"] - 1) * STABILISATION_S
        print(
            f"| {what}: burst {i}: last job end -> 0 members (one drained at a time, "
            f"{STABILISATION_S} s apart) | {b['scale_down_s']:.1f} s | {floor_down:.0f} s "
            f"((k-1) x stabilisation) | **{b['scale_down_s'] / floor_down:.2f}** |"
        )


def burst_floor(start: float, k: int, submit_s: float) -> tuple[float, str]:
    """The burst's floor and how it is made: the larger of ``k`` members booting a start
    window at a time (member start x ceil(k / window)) and one member start after the last
    qsub (the last jobs' member cannot be decided before they exist; the burst's time runs
    from the first qsub, and the qsubs, one after the other, take seconds)."""
    rounds = start * math.ceil(k / WINDOW)
    after_submit = submit_s + start
    if after_submit > rounds:
        return after_submit, "submitting + one member start"
    return rounds, f"member start x ceil({k}/{WINDOW})"


def print_failures(r: dict) -> None:
    """A row per failed wait, and the scaler log's tail under the table."""
    for f in r.get("failed", []):
        print(
            f"| FAILED {f['phase']}: {f['waited_for']} | not after {f['timeout_s']:g} s "
            f"(at {f['after_s']:.0f} s into the phase) | reached: {f['reached']} | |"
        )
    for f in r.get("failed", []):
        print(f"\nscaler log before the {f['phase']} failure:")
        print("\n".join(f"    {line}" for line in f["scaler_log_tail"]))


if __name__ == "__main__":
    main()
