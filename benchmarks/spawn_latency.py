"""Spawn latency, REST request -> ready: BenchSpawner vs plain DockerSpawner, same image, one run.

For each spawner a real hub (with configurable-http-proxy) is started; the client then
1. spawns 10 workspaces one after another (each stopped again before the next), and
2. spawns 20 workspaces at once,
timing each from the POST to the moment the hub's REST API reports the server ready (polled
every 20 ms when the POST returns 202). Prints p50/p95 per spawner and the ratios, as a
Markdown table for docs/benchmarks.md, and writes the raw figures to .cache/bench/.

Run with ``make bench`` (needs the images and a running Docker Engine).
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hub_harness import HubProcess  # noqa: E402

IMAGE = "benchhub/jupyterlab:latest"
NETWORK = "benchlat-open"
SEQUENTIAL, CONCURRENT = 10, 20

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


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


def ensure_network() -> str:
    if not docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$").strip():
        docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", NETWORK)
    return json.loads(docker("network", "inspect", NETWORK))[0]["IPAM"]["Config"][0]["Gateway"]


def timed_spawn(hub: HubProcess, user: str, name: str, options: dict | None) -> float:
    t0 = time.perf_counter()
    body = {"user_options": options} if options is not None else None
    r = hub.api("POST", f"/users/{user}/servers/{name}", body)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn {user}/{name}: {r.status_code} {r.text}")
    deadline = t0 + 300
    while r.status_code == 202:
        server = hub.api("GET", f"/users/{user}").json()["servers"].get(name)
        if server and server.get("ready"):
            break
        if (server and not server.get("pending")) or time.perf_counter() > deadline:
            raise RuntimeError(f"spawn {user}/{name} failed: {server}; see {hub.log_path}")
        time.sleep(0.02)
    return time.perf_counter() - t0


def stop_and_delete(hub: HubProcess, user: str, name: str) -> None:
    hub.api("DELETE", f"/users/{user}/servers/{name}")
    for _ in range(300):
        if not hub.api("GET", f"/users/{user}").json()["servers"].get(name, {}).get("pending"):
            break
        time.sleep(0.1)
    hub.api("DELETE", f"/users/{user}/servers/{name}", {"remove": True})


def run_spawner(label: str, extra_config: str, options: dict | None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        hub = HubProcess(
            Path(tmp), prefix=f"benchlat-{label}", extra_config=extra_config,
            env_overrides={"BENCHHUB_EGRESS_INTERVAL": "10"},  # the production default
        )  # fmt: skip
        hub.log_path = REPO / ".cache" / "bench" / f"{label}-hub.log"
        hub.log_path.parent.mkdir(parents=True, exist_ok=True)
        hub.log_path.unlink(missing_ok=True)
        hub.start()
        try:
            hub.ensure_user("bench")
            timed_spawn(hub, "bench", "warmup", options)  # page cache, network, first import
            stop_and_delete(hub, "bench", "warmup")
            sequential = []
            for i in range(SEQUENTIAL):
                sequential.append(timed_spawn(hub, "bench", f"seq{i}", options))
                stop_and_delete(hub, "bench", f"seq{i}")
            users = [f"c{i}" for i in range(CONCURRENT)]
            for user in users:
                hub.ensure_user(user)
            with ThreadPoolExecutor(CONCURRENT) as pool:
                concurrent = list(pool.map(lambda u: timed_spawn(hub, u, "ws", options), users))
            with ThreadPoolExecutor(CONCURRENT) as pool:
                list(pool.map(lambda u: stop_and_delete(hub, u, "ws"), users))
        finally:
            hub.stop()
            leftovers = docker("ps", "-aq", "--filter", f"name=^benchlat-{label}").split()
            if leftovers:
                docker("rm", "-f", *leftovers)
    return {"sequential": sequential, "concurrent": concurrent}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    gateway = ensure_network()
    plain_cfg = PLAIN_CONFIG.format(image=IMAGE, network=NETWORK, gateway=gateway)
    bench_opts = {"resource_model": "standard-small", "storage_gb": 1}
    results = {
        "dockerspawner": run_spawner("plain", plain_cfg, None),
        "benchspawner": run_spawner("bench", BENCH_CONFIG.format(network=NETWORK), bench_opts),
    }
    docker("network", "rm", NETWORK)
    rows = []
    for phase in ("sequential", "concurrent"):
        base, ours = results["dockerspawner"][phase], results["benchspawner"][phase]
        for q in (50, 95):
            b, o = pct(base, q), pct(ours, q)
            rows.append(f"| {phase} ({len(ours)}) | p{q} | {b:.2f} s | {o:.2f} s | {o / b:.2f} |")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node()}, {platform.machine()}, {subprocess.getoutput('nproc')} cores"
    print(f"\nSpawn latency, request -> ready ({when}; {machine})\n")
    print("| spawns | percentile | DockerSpawner | BenchSpawner | ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "spawn_latency.json").write_text(json.dumps({"when": when, **results}, indent=1))


if __name__ == "__main__":
    main()
