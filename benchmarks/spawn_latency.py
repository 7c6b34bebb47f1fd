"""Spawn latency, REST request -> ready: BenchSpawner vs plain DockerSpawner, same image, one run.

For each spawner a real hub (with configurable-http-proxy) is started; the client then
1. spawns 10 workspaces one after another (each stopped again before the next), and
2. spawns 20 workspaces at once,
timing each from the POST to the moment the hub's REST API reports the server ready (polled
every 20 ms when the POST returns 202). A spawn that fails (the POST refused, the server gone
without becoming ready, or not ready within 300 s) is recorded with the hub's reason and the
time it failed, and the run goes on: percentiles and ratios are over each side's successful
spawns, with the failures counted next to them. Prints a Markdown table for
docs/benchmarks.md; raw figures (every spawn, every failure) go to .cache/bench/.

Run with ``make bench`` (needs the images and a running Docker Engine).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.machine import describe, now
from tests.support.docker_cli import cleanup, docker, remove_network
from tests.support.hub_harness import HubProcess
from tests.support.waiting import WaitTimedOut, wait

REPO = Path(__file__).resolve().parent.parent
IMAGE = "benchhub/jupyterlab:latest"
NETWORK = "benchlat-open"
SEQUENTIAL, CONCURRENT = 10, 20
READY_WITHIN_S = 300

PLAIN_CONFIG = """
import os
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {image!r}
c.DockerSpawner.network_name = {network!r}
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = "benchlat-plain"
c.DockerSpawner.hub_connect_url = "http://{gateway}:" + os.environ["BENCHHUB_HUB_PORT"]
"""
BENCH_CONFIG = """
c.BenchSpawner.open_network = {network!r}
c.BenchSpawner.default_resource_model = "standard-small"
"""


def ensure_network() -> str:
    if not docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$").strip():
        docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", NETWORK)
    return json.loads(docker("network", "inspect", NETWORK))[0]["IPAM"]["Config"][0]["Gateway"]


def failure_reason(hub: HubProcess, user: str, name: str) -> str:
    """Why the hub says a spawn failed: the last event of the server's progress stream
    ("Spawn failed: ..."; the stream ends at once for a server that is not pending), or
    what the hub answered instead."""
    try:
        r = hub.api("GET", f"/users/{user}/servers/{name}/progress")
    except requests.RequestException as e:
        return f"no progress from the hub: {e}"
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    return events[-1].get("message", "") if events else f"{r.status_code} {r.text[:200]}"


def timed_spawn(hub: HubProcess, user: str, name: str, options: dict | None) -> dict:
    """``{"seconds": s}`` when the server became ready, or ``{"failed": reason, "after_s": s}``."""
    t0 = time.perf_counter()
    body = {"user_options": options} if options is not None else None
    r = hub.api("POST", f"/users/{user}/servers/{name}", body)
    if r.status_code not in (201, 202):
        return {
            "failed": f"POST {r.status_code}: {r.text[:200]}",
            "after_s": time.perf_counter() - t0,
        }
    if r.status_code == 202:
        try:
            server = wait(
                lambda: hub.api("GET", f"/users/{user}").json()["servers"].get(name),
                READY_WITHIN_S,
                f"{user}/{name} ready",
                step=0.02,
                until=lambda s: not s or s.get("ready") or not s.get("pending"),
            )
        except WaitTimedOut as e:
            return {"failed": str(e), "after_s": time.perf_counter() - t0}
        if not (server and server.get("ready")):
            after = time.perf_counter() - t0
            return {"failed": failure_reason(hub, user, name), "after_s": after}
    return {"seconds": time.perf_counter() - t0}


def stop_and_delete(hub: HubProcess, user: str, name: str) -> None:
    hub.api("DELETE", f"/users/{user}/servers/{name}")
    try:
        wait(
            lambda: hub.api("GET", f"/users/{user}").json()["servers"].get(name, {}),
            30,
            f"{user}/{name} stopped",
            step=0.1,
            until=lambda s: not s.get("pending"),
        )
    except WaitTimedOut as e:
        print(f"  (cleanup) {e}")
    hub.api("DELETE", f"/users/{user}/servers/{name}", {"remove": True})


def run_spawner(label: str, extra_config: str, options: dict | None) -> dict:
    prefix = f"benchlat-{label}"
    results: dict = {"sequential": [], "concurrent": []}
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        hub = HubProcess(
            Path(tmp),
            prefix=prefix,
            extra_config=extra_config,
            env_overrides={"BENCHHUB_EGRESS_INTERVAL": "10"},  # the production default
        )
        hub.log_path = REPO / ".cache" / "bench" / f"{label}-hub.log"
        hub.log_path.parent.mkdir(parents=True, exist_ok=True)
        hub.log_path.unlink(missing_ok=True)
        hub.start()
        try:
            hub.ensure_user("bench")
            results["warmup"] = timed_spawn(hub, "bench", "warmup", options)  # caches, imports
            stop_and_delete(hub, "bench", "warmup")
            for i in range(SEQUENTIAL):
                results["sequential"].append(timed_spawn(hub, "bench", f"seq{i}", options))
                stop_and_delete(hub, "bench", f"seq{i}")
            users = [f"c{i}" for i in range(CONCURRENT)]
            for user in users:
                hub.ensure_user(user)
            with ThreadPoolExecutor(CONCURRENT) as pool:
                results["concurrent"] = list(
                    pool.map(lambda u: timed_spawn(hub, u, "ws", options), users)
                )
            with ThreadPoolExecutor(CONCURRENT) as pool:
                list(pool.map(lambda u: stop_and_delete(hub, u, "ws"), users))
        finally:
            hub.stop()
            cleanup(prefix, hub.storage_root)
    return results


def pct(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def rows(results: dict) -> list[str]:
    out = []
    for phase in ("sequential", "concurrent"):
        sides = [results[s][phase] for s in ("dockerspawner", "benchspawner")]
        ok = [[s["seconds"] for s in side if "seconds" in s] for side in sides]
        failed = [sum("failed" in s for s in side) for side in sides]
        for q in (50, 95):
            b, o = pct(ok[0], q), pct(ok[1], q)
            cells = [f"{v:.2f} s" if v is not None else "—" for v in (b, o)]
            ratio = f"{o / b:.2f}" if b and o else "—"
            out.append(
                f"| {phase} ({len(sides[1])}) | p{q} | {cells[0]} | {cells[1]} | {ratio} "
                f"| {len(ok[0])} / {failed[0]} | {len(ok[1])} / {failed[1]} |"
            )
    return out


def failure_lines(results: dict) -> list[str]:
    """One line per side, phase and reason: how many spawns failed so, and when."""
    lines = []
    for side, label in (("dockerspawner", "DockerSpawner"), ("benchspawner", "BenchSpawner")):
        for phase in ("warmup", "sequential", "concurrent"):
            spawns = results[side].get(phase, [])
            spawns = [spawns] if isinstance(spawns, dict) else spawns
            failed = [s for s in spawns if "failed" in s]
            for reason, count in Counter(s["failed"] for s in failed).items():
                after = sorted(s["after_s"] for s in failed if s["failed"] == reason)
                lines.append(
                    f"- {label}, {phase}: {count} failed after {after[0]:.1f}–"
                    f"{after[-1]:.1f} s: {reason}"
                )
    return lines


def main() -> None:
    when, machine = now(), describe()
    gateway = ensure_network()
    plain_cfg = PLAIN_CONFIG.format(image=IMAGE, network=NETWORK, gateway=gateway)
    bench_opts = {"resource_model": "standard-small", "storage_gb": 1}
    try:
        results = {
            "dockerspawner": run_spawner("plain", plain_cfg, None),
            "benchspawner": run_spawner("bench", BENCH_CONFIG.format(network=NETWORK), bench_opts),
        }
    finally:
        remove_network(NETWORK)  # and BenchHub's firewall chains for its bridge
    print(f"\nSpawn latency, request -> ready ({when}; {machine})\n")
    print(
        "| spawns | percentile | DockerSpawner | BenchSpawner | ratio | DockerSpawner ok / "
        "failed | BenchSpawner ok / failed |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows(results)))
    failures = failure_lines(results)
    print("\nFailed spawns (not in the percentiles):\n" + ("\n".join(failures) or "- none"))
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"when": when, "machine": machine, **results}
    (out / "spawn_latency.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
