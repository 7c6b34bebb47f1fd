"""What the metrics and the usage ledger cost a workspace start: spawn p50 with and without them,
in one run, interleaved.

Two real hubs (with their proxy and services) run side by side on this machine, the same in
everything but the switches (docs/metrics.md, docs/operations.md):

- **on**: as a site runs it: the spawner counts starts, run ends and stop checkpoints
  (``c.BenchSpawner.metrics_enabled``, default True); the lifecycle service keeps the usage
  ledger (``c.UsageRecorder.enabled``, default True: on every container start it inspects the
  container and asks the hub for the workspace's project); and a scraper reads ``/hub/metrics``
  and ``/services/lifecycle/metrics`` every :data:`SCRAPE_EVERY_S` seconds, as Prometheus would.
- **off**: ``c.BenchSpawner.metrics_enabled = False`` and the lifecycle service started with
  ``--UsageRecorder.enabled=False``; nothing scrapes it.

After one warm-up start each, :data:`ROUNDS` rounds start one workspace on each hub, one after
the other (the order alternates: on-off, off-on, …, so neither side always goes first), each
timed from the REST request to the hub reporting the server ready, then stopped and deleted.
A start that fails is recorded with the hub's reason and the run goes on (percentiles are over
each side's successful starts). The lifecycle and egress services run at their production
intervals (60 s, 10 s). Printed: a Markdown table for docs/benchmarks.md, the failures, and
the spawner's own metrics work per start timed in-process (what the switch removes from the
start path itself); raw figures go to ``.cache/bench/spawn_overhead.json``.

Run with ``make bench`` or ``python -m benchmarks.spawn_overhead`` (needs the images and a
running Docker Engine; run it alone on the engine).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from bench_spawner.hub_metrics import HubMetrics
from benchmarks.machine import describe, now
from benchmarks.spawn_latency import pct, stop_and_delete, timed_spawn
from tests.support.docker_cli import cleanup
from tests.support.hub_harness import HubProcess

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 15
SCRAPE_EVERY_S = 15
METRICS_TOKEN = "benchhub-bench-metrics-token-3e2d1c0b9a8f7e6d"
OPTIONS = {"resource_model": "standard-small", "storage_gb": 1}
ENV = {
    "BENCHHUB_LIFECYCLE_INTERVAL": "60",  # the production defaults, not the harness's
    "BENCHHUB_EGRESS_INTERVAL": "10",
    "BENCHHUB_METRICS_TOKEN": METRICS_TOKEN,
}
OFF_CONFIG = """
c.BenchSpawner.metrics_enabled = False
for service in c.JupyterHub.services:
    if service["name"] == "lifecycle":
        service["command"] = [*service["command"], "--UsageRecorder.enabled=False"]
"""
SIDES = {"on": "", "off": OFF_CONFIG}


def start_hub(tmp: Path, side: str) -> HubProcess:
    prefix = f"benchovh-{side}"
    (tmp / side).mkdir()
    hub = HubProcess(tmp / side, prefix=prefix, extra_config=SIDES[side], env_overrides=ENV)
    hub.log_path = REPO / ".cache" / "bench" / f"spawn-overhead-{side}-hub.log"
    hub.log_path.parent.mkdir(parents=True, exist_ok=True)
    hub.log_path.unlink(missing_ok=True)
    cleanup(prefix, hub.storage_root)
    hub.start()
    hub.ensure_user("bench")
    return hub


class Scraper(threading.Thread):
    """Reads the hub's and the lifecycle service's metrics every ``every`` seconds."""

    def __init__(self, hub: HubProcess, every: float):
        super().__init__(daemon=True)
        self.hub, self.every = hub, every
        self.stopping = threading.Event()
        self.scrapes: Counter = Counter()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        while not self.stopping.wait(self.every):
            for path in ("/hub/metrics", "/services/lifecycle/metrics"):
                try:
                    r = requests.get(f"{self.hub.url}{path}", headers=headers, timeout=10)
                    self.scrapes["ok" if r.ok else f"HTTP {r.status_code}"] += 1
                except requests.RequestException as e:
                    self.scrapes[type(e).__name__] += 1


def metrics_work_per_start_us(repeats: int = 20_000) -> float:
    """Microseconds the spawner's metrics spend per start and run end, in-process: a start
    observed in the histogram and a stop counted (what ``metrics_enabled=False`` skips)."""
    metrics = HubMetrics(catalogue=lambda: (("standard-small",), ("jupyterlab",)), spawners=list)
    began = time.perf_counter()
    for _ in range(repeats):
        metrics.spawned("standard-small", "jupyterlab", "success", 3.2)
        metrics.stopped("user")
    return (time.perf_counter() - began) / repeats * 1e6


def one_spawn(hub: HubProcess, name: str) -> dict:
    result = timed_spawn(hub, "bench", name, OPTIONS)
    stop_and_delete(hub, "bench", name)
    return result


def run() -> dict:
    results: dict = {side: {"warmup": None, "rounds": []} for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        hubs: dict[str, HubProcess] = {}
        scraper = None
        try:
            for side in SIDES:
                hubs[side] = start_hub(Path(tmp), side)
            scraper = Scraper(hubs["on"], SCRAPE_EVERY_S)
            scraper.start()
            for side in SIDES:
                results[side]["warmup"] = one_spawn(hubs[side], "warmup")
            for i in range(ROUNDS):
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for side in order:
                    spawn = one_spawn(hubs[side], f"r{i}")
                    results[side]["rounds"].append({"round": i, **spawn})
                    shown = f"{spawn['seconds']:.2f} s" if "seconds" in spawn else "failed"
                    print(f"  round {i + 1}/{ROUNDS} {side}: {shown}", flush=True)
        finally:
            if scraper is not None:
                scraper.stopping.set()
                results["scrapes"] = dict(scraper.scrapes)
            for hub in hubs.values():
                hub.stop()
                cleanup(hub.prefix, hub.storage_root)
    return results


def seconds(results: dict, side: str) -> list[float]:
    return [s["seconds"] for s in results[side]["rounds"] if "seconds" in s]


def paired_ratios(results: dict) -> list[float]:
    """on / off of each round in which both starts succeeded."""
    off = {s["round"]: s["seconds"] for s in results["off"]["rounds"] if "seconds" in s}
    return [
        s["seconds"] / off[s["round"]]
        for s in results["on"]["rounds"]
        if "seconds" in s and s["round"] in off
    ]


def table(results: dict) -> list[str]:
    on, off = seconds(results, "on"), seconds(results, "off")
    failed = {side: len(results[side]["rounds"]) - len(seconds(results, side)) for side in SIDES}
    lines = [
        "| percentile | metrics + ledger off | metrics + ledger on | ratio on / off "
        "| off ok / failed | on ok / failed |",
        "|---|---|---|---|---|---|",
    ]
    for q in (50, 95):
        b, o = pct(off, q), pct(on, q)
        cells = [f"{v:.2f} s" if v is not None else "—" for v in (b, o)]
        ratio = f"{o / b:.3f}" if b and o else "—"
        lines.append(
            f"| p{q} | {cells[0]} | {cells[1]} | {ratio} | {len(off)} / {failed['off']} "
            f"| {len(on)} / {failed['on']} |"
        )
    return lines


def failure_lines(results: dict) -> list[str]:
    lines = []
    for side in SIDES:
        spawns = [results[side]["warmup"], *results[side]["rounds"]]
        failed = [s for s in spawns if s and "failed" in s]
        for reason, count in Counter(s["failed"] for s in failed).items():
            lines.append(f"- {side}: {count} failed: {reason}")
    return lines


def main() -> None:
    when, machine = now(), describe()
    per_start_us = metrics_work_per_start_us()
    results = run()
    ratios = paired_ratios(results)
    print(f"\nSpawn p50 with and without metrics + ledger ({when}; {machine})\n")
    print("\n".join(table(results)))
    if ratios:
        print(
            f"\nPaired rounds (both starts succeeded: {len(ratios)}): median on/off "
            f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}–{max(ratios):.3f}"
        )
    print(f"The spawner's metrics work, in-process: {per_start_us:.1f} µs per start and stop")
    print(f"Scrapes of the 'on' hub: {results.get('scrapes')}")
    print(
        "\nFailed spawns (not in the percentiles):\n"
        + ("\n".join(failure_lines(results)) or "- none")
    )
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {
        "when": when,
        "machine": machine,
        "metrics_work_per_start_us": per_start_us,
        "paired_ratios": ratios,
        **results,
    }
    (out / "spawn_overhead.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
