"""Spawn on a swarm vs one host: BenchSwarmSpawner against single-host BenchSpawner and against
dockerspawner's plain SwarmSpawner, in one run, interleaved; then the placement of 30 workspaces.

Three real hubs (JupyterHub + configurable-http-proxy, the repository's configuration) run side
by side on this machine:

- **single**: BenchSpawner on this host's engine, as ``make run`` starts it;
- **swarm**: BenchSwarmSpawner on the test swarm (scripts/swarm-testbed.sh: a manager and two
  worker engines, Docker-in-Docker on this machine), configured as docs/swarm.md says;
- **plain**: dockerspawner's ``SwarmSpawner`` on the same swarm, the same image, the same
  workers, configured as a site minimally would: the image, the manager's API, the hub's
  address, the workers as placement, the command (the manager has no copy of the image to read
  it from), and the port published on the task's node with dockerspawner's documented
  ``get_ip_and_port`` override (Swarm's routing mesh needs IPVS, which this kernel lacks).

After one warm-up start each, :data:`ROUNDS` rounds (``BENCHHUB_SWARM_BENCH_ROUNDS``,
default 10; the whole run takes ~6 min, ~7 with the testbed's bring-up) start one workspace
on each hub, one after the other (the order rotates, so no side always goes first), each
timed from the REST request to the hub reporting the server ready, then stopped and deleted.
The bench sides use ``standard-small`` (2 CPUs, 8 GB: a whole node here, no tighter than the
plain side's unlimited container). For each start the engine's own timestamps split the time
into phases (service or container created, container started, Swarm task running, ready;
:mod:`benchmarks.swarm_figures`). Then :data:`PLACED` users start a ``swarm-tiny`` workspace
(0.1 CPU, 0.5 GB: the harness's smallest model, 0.5 CPU, lets only 8 fit on two 2-CPU
workers) at once on the swarm hub; the benchmark counts the running tasks per worker (every
second while they start) and stops them all.
A failed start on any side is recorded with the hub's reason and the run goes on.

The test swarm is brought up if absent (it says so; ~60 s) and removed at the end unless
``BENCHHUB_SWARM_KEEP=1``; a testbed with a node not ready is made again. Run with ``make bench``
or ``python -m benchmarks.swarm_spawn`` under the shared Docker lock; raw figures go to
``.cache/bench/swarm_spawn.json``, the hubs' logs to ``.cache/bench/swarm-*-hub.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_hub import REPO, start_bench_hub
from benchmarks.machine import describe, now
from benchmarks.spawn_latency import stop_and_delete, timed_spawn
from benchmarks.swarm_figures import (
    docker_time,
    failures,
    latency_table,
    phase_table,
    ready_seconds,
    spread,
)
from tests.support.docker_cli import cleanup, docker
from tests.support.hub_harness import HubProcess
from tests.support.swarm_testbed import run_testbed

NODE_IMAGE = "benchhub/swarm-node:latest"
IMAGE = "benchhub/jupyterlab:latest"
WORKERS = ("benchswarm-worker-1", "benchswarm-worker-2")
ROUNDS = int(os.environ.get("BENCHHUB_SWARM_BENCH_ROUNDS", "10"))
PLACED = 30
USER = "bench"
LATENCY_OPTIONS = {"resource_model": "standard-small", "storage_gb": 1}
TINY_OPTIONS = {"resource_model": "swarm-tiny", "storage_gb": 1}
LABELS = {
    "single": "single-host BenchSpawner",
    "swarm": "BenchSwarmSpawner",
    "plain": "plain SwarmSpawner",
}
# "benchswarm-" names: the testbed's `down` also removes whatever they leave on this host
PREFIXES = {"single": "benchsws-single", "swarm": "benchswarm-bsw", "plain": "benchswarm-psw"}
ENV = {"BENCHHUB_LIFECYCLE_INTERVAL": "60", "BENCHHUB_EGRESS_INTERVAL": "10"}  # production

SWARM_CONFIG = """
import os
from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.unsupported import drop_unsupported_services
c.BenchSpawner.resource_models["swarm-tiny"] = {{"cpus": 0.1, "memory_gb": 0.5}}
c.JupyterHub.spawner_class = BenchSwarmSpawner
drop_unsupported_services(c)
c.BenchSwarmSpawner.client_kwargs = {{"base_url": {docker_host!r}}}
c.BenchSwarmSpawner.hub_connect_url = "http://{gateway}:" + os.environ["BENCHHUB_HUB_PORT"]
BenchSwarmSpawner.check_config(c)
"""
PLAIN_CONFIG = """
import os
from dockerspawner import SwarmSpawner
from bench_spawner.swarm.unsupported import drop_unsupported_services


class NodePortSwarmSpawner(SwarmSpawner):
    # Swarm's routing mesh needs IPVS, which this machine's kernel lacks (the published port
    # never answers): publish on the node that runs the task instead and connect there, the
    # get_ip_and_port override dockerspawner's own docstring tells such a site to write
    async def get_ip_and_port(self):
        task = await self.get_task()
        node = await self.docker("inspect_node", task["NodeID"])
        ports = task["Status"]["PortStatus"]["Ports"]
        port = next(p["PublishedPort"] for p in ports if p["TargetPort"] == self.port)
        return node["Status"]["Addr"], port


c.JupyterHub.spawner_class = NodePortSwarmSpawner
drop_unsupported_services(c)  # as on the swarm hub: the same services run beside both
c.SwarmSpawner.image = {image!r}
c.SwarmSpawner.prefix = {prefix!r}
c.SwarmSpawner.client_kwargs = {{"base_url": {docker_host!r}}}
c.SwarmSpawner.hub_connect_url = "http://{gateway}:" + os.environ["BENCHHUB_HUB_PORT"]
c.SwarmSpawner.use_internal_ip = False  # the hub is not on the swarm: a published port
c.SwarmSpawner.extra_endpoint_spec = {{"ports": {{None: (8888, "tcp", "host")}}}}
c.SwarmSpawner.cmd = ["jupyterhub-singleuser"]  # the manager has no copy of the image to read
c.SwarmSpawner.extra_placement_spec = {{"constraints": ["node.role==worker"]}}
"""


@dataclass
class Testbed:
    """The test swarm as this run found or made it."""

    docker_host: str
    gateway: str
    brought_up: bool  # absent (or broken) before this run
    up_seconds: float

    def manager(self, *args: str, check: bool = True) -> str:
        """The docker CLI against the manager's engine API."""
        return docker("-H", self.docker_host, *args, check=check)


def unusable_testbed_reason(status: str) -> str | None:
    """Why the output of ``swarm-testbed.sh status`` shows a testbed that cannot be reused
    ("down" is absent, not broken: None), e.g. ``"2 of 3 nodes Ready and Active"``."""
    if status.strip() == "down":
        return None
    if "(not running)" in status:
        return "a worker container is not running"
    fine = [line for line in status.splitlines() if " Ready " in line and " Active " in line]
    return None if len(fine) >= 3 else f"{len(fine)} of 3 nodes Ready and Active"


def bring_up() -> Testbed:
    if subprocess.run(["docker", "image", "inspect", NODE_IMAGE], capture_output=True).returncode:
        raise SystemExit(f"{NODE_IMAGE} missing; build it: images/build.sh swarm-node")
    status = run_testbed("status")
    problem = unusable_testbed_reason(status)
    absent = status.strip() == "down"
    if problem:
        print(f"The test swarm is broken ({problem}): removing it and bringing it up again")
        run_testbed("down")
    elif absent:
        print("No test swarm running: bringing it up (scripts/swarm-testbed.sh up, ~60 s)")
    else:
        print("Reusing the running test swarm")
    started = time.monotonic()
    out = run_testbed("up")
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("BENCHHUB_"))
    gateway = docker(
        "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "benchswarm-net"
    ).strip()
    return Testbed(
        env["BENCHHUB_SWARM_DOCKER_HOST"],
        gateway,
        absent or bool(problem),
        time.monotonic() - started,
    )


# ---- what the engines say about one start ---------------------------------------------------


def host_marks(hub: HubProcess, name: str) -> dict[str, float]:
    found = json.loads(docker("inspect", hub.container_name(USER, name)))[0]
    return {
        "created": docker_time(found["Created"]),
        "container_started": docker_time(found["State"]["StartedAt"]),
    }


def swarm_marks(bed: Testbed, hub: HubProcess, name: str) -> dict[str, float]:
    service = hub.container_name(USER, name)  # both swarm spawners name services so
    created = json.loads(bed.manager("service", "inspect", service))[0]["CreatedAt"]
    ids = bed.manager("service", "ps", "-q", "--no-trunc", service).split()
    task = max(json.loads(bed.manager("inspect", *ids)), key=lambda t: t["Version"]["Index"])
    marks = {"created": docker_time(created)}
    if task["Status"]["State"] == "running":
        marks["task_running"] = docker_time(task["Status"]["Timestamp"])
        node = bed.manager("node", "inspect", "-f", "{{.Description.Hostname}}", task["NodeID"])
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        started = docker(
            "exec", node.strip(), "docker", "inspect", "-f", "{{.State.StartedAt}}", container
        )
        marks["container_started"] = docker_time(started)
    return marks


def one_spawn(hub: HubProcess, name: str, options: dict | None, marks_of) -> dict:
    """A timed start and stop of ``name``; with the engine's marks of a start that succeeded."""
    requested = time.time()
    result = timed_spawn(hub, USER, name, options)
    if "seconds" in result:
        try:
            marks = marks_of(hub, name)
            result["marks"] = {
                **marks,
                "requested": requested,
                "ready": requested + result["seconds"],
            }
        except (AssertionError, KeyError, ValueError, IndexError) as e:
            result["marks_error"] = str(e)[:300]
    stop_and_delete(hub, USER, name)
    return result


# ---- the run ------------------------------------------------------------------------------------


def start_hubs(tmp: Path, bed: Testbed) -> dict[str, HubProcess]:
    configs = {
        "single": "",
        "swarm": SWARM_CONFIG.format(docker_host=bed.docker_host, gateway=bed.gateway),
        "plain": PLAIN_CONFIG.format(
            image=IMAGE,
            prefix=PREFIXES["plain"],
            docker_host=bed.docker_host,
            gateway=bed.gateway,
        ),
    }
    hubs = {}
    for side, config in configs.items():
        (tmp / side).mkdir()
        hubs[side] = start_bench_hub(tmp / side, PREFIXES[side], config, f"swarm-{side}", ENV)
        hubs[side].ensure_user(USER)
    return hubs


def latency_rounds(hubs: dict[str, HubProcess], bed: Testbed) -> dict:
    marks_of = {
        "single": host_marks,
        "swarm": lambda hub, name: swarm_marks(bed, hub, name),
        "plain": lambda hub, name: swarm_marks(bed, hub, name),
    }
    options = {"single": LATENCY_OPTIONS, "swarm": LATENCY_OPTIONS, "plain": None}
    results: dict = {side: {"warmup": None, "rounds": []} for side in hubs}
    for side, hub in hubs.items():
        results[side]["warmup"] = one_spawn(hub, "warmup", options[side], marks_of[side])
    sides = list(hubs)
    for i in range(ROUNDS):
        order = sides[i % 3 :] + sides[: i % 3]
        for side in order:
            spawn = one_spawn(hubs[side], f"r{i}", options[side], marks_of[side])
            results[side]["rounds"].append({"round": i, **spawn})
            shown = (
                f"{spawn['seconds']:.2f} s" if "seconds" in spawn else f"failed: {spawn['failed']}"
            )
            print(f"  round {i + 1}/{ROUNDS} {side}: {shown}", flush=True)
    return results


class PlacementWatch(threading.Thread):
    """Counts, every second, the placement's tasks Swarm runs on each node, keeping the count
    with the most of them: where the workspaces landed, read while they run (a workspace whose
    server then misses the hub's HTTP timeout is stopped again)."""

    def __init__(self, bed: Testbed, name_start: str):
        super().__init__(daemon=True)
        self.bed, self.name_start = bed, name_start
        self.stopping = threading.Event()
        self.best: dict[str, int] = {}

    def count(self) -> dict[str, int]:
        placed = {}
        for node in self.bed.manager("node", "ls", "--format", "{{.Hostname}}").split():
            tasks = self.bed.manager(
                "node",
                "ps",
                node,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Name}} {{.CurrentState}}",
            ).splitlines()
            placed[node] = sum(
                t.startswith(self.name_start) and " Running " in f"{t} " for t in tasks
            )
        return placed

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                placed = self.count()
            except AssertionError:  # the manager did not answer this time
                continue
            if sum(placed.values()) > sum(self.best.values()):
                self.best = placed


def placement(hub: HubProcess, bed: Testbed) -> dict:
    """:data:`PLACED` users start a tiny workspace at once; the running tasks per node."""
    users = [f"place{i}" for i in range(PLACED)]
    for user in users:
        hub.ensure_user(user)
    watch = PlacementWatch(bed, f"{PREFIXES['swarm']}-place")
    watch.start()
    began = time.perf_counter()
    with ThreadPoolExecutor(PLACED) as pool:
        spawns = list(pool.map(lambda u: timed_spawn(hub, u, "ws", TINY_OPTIONS), users))
    all_done_s = time.perf_counter() - began
    watch.stopping.set()
    watch.join()
    placed = {node: n for node, n in watch.best.items() if n or node in WORKERS}
    counts, even = spread(placed, list(WORKERS))
    print(f"  placement: {counts}, within one of even: {even}", flush=True)
    with ThreadPoolExecutor(PLACED) as pool:
        list(pool.map(lambda u: stop_and_delete(hub, u, "ws"), users))
    return {"spawns": spawns, "all_done_s": all_done_s, "per_node": counts, "within_one": even}


def remove_leftovers(bed: Testbed, prefixes: tuple[str, ...] = ()) -> None:
    """The services and volumes whose names start with one of ``prefixes`` (default: this
    benchmark's swarm sides) that a run left on the swarm (a kept testbed is reused)."""
    for prefix in prefixes or (PREFIXES["swarm"], PREFIXES["plain"]):
        names = bed.manager(
            "service", "ls", "-q", "--filter", f"name={prefix}-", check=False
        ).split()
        if names:
            bed.manager("service", "rm", *names, check=False)
        for worker in WORKERS:
            remove_volumes(worker, f"{prefix}-")


def remove_volumes(worker: str, name_start: str) -> None:
    """Remove the volumes named ``name_start...`` on node container ``worker``."""
    volumes = docker(
        "exec",
        worker,
        "docker",
        "volume",
        "ls",
        "-q",
        "--filter",
        f"name={name_start}",
        check=False,
    ).split()
    for _ in range(20):  # a removed service's container lets go of its volume a moment later
        if not volumes:
            break
        out = subprocess.run(
            ["docker", "exec", worker, "docker", "volume", "rm", *volumes],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            break
        time.sleep(0.5)


def run(bed: Testbed) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        hubs: dict[str, HubProcess] = {}
        try:
            hubs = start_hubs(Path(tmp), bed)
            results["latency"] = latency_rounds(hubs, bed)
            for side in ("single", "plain"):  # idle now: not beside the 30 boots
                hubs[side].stop()
            results["placement"] = placement(hubs["swarm"], bed)
        finally:
            for side, hub in hubs.items():
                hub.stop()
                cleanup(PREFIXES[side], hub.storage_root)
            remove_leftovers(bed)
    return results


def report(results: dict, bed: Testbed, when: str, machine: str) -> None:
    rounds = {side: results["latency"][side]["rounds"] for side in LABELS}
    print(f"\nSpawn on a swarm vs one host, request -> ready ({when}; {machine})")
    print(
        f"Test swarm: {'brought up by this run' if bed.brought_up else 'reused'} "
        f"({bed.up_seconds:.0f} s); {ROUNDS} rounds, interleaved\n"
    )
    print("\n".join(latency_table(rounds, LABELS)))
    print("\nWhere a start's time goes (engine timestamps):\n")
    print("\n".join(phase_table(rounds, LABELS)))
    place = results.get("placement")
    if place:
        ok = ready_seconds(place["spawns"])
        print(
            f"\nPlacement of {PLACED} swarm-tiny workspaces started at once: {place['per_node']} "
            f"(within one of even: {place['within_one']}); {len(ok)} ready, "
            f"{len(place['spawns']) - len(ok)} failed; all answered in {place['all_done_s']:.1f} s"
        )
    lines = []
    for side in LABELS:
        spawns = [results["latency"][side]["warmup"], *rounds[side]]
        lines += [
            f"- {LABELS[side]}: {n} failed: {why}" for why, n in failures([s for s in spawns if s])
        ]
    if place:
        lines += [f"- placement: {n} failed: {why}" for why, n in failures(place["spawns"])]
    print("\nFailed spawns (not in the percentiles):\n" + ("\n".join(lines) or "- none"))


def run_on_testbed(name: str, run, report, fields: dict | None = None) -> None:
    """A swarm benchmark's frame: the testbed brought up (:func:`bring_up`), ``run(bed)``
    (a dict of results), the testbed removed unless ``BENCHHUB_SWARM_KEEP=1``, then
    ``report(results, bed, when, machine)`` and the raw figures, with ``fields``, written to
    ``.cache/bench/<name>.json``."""
    when, machine = now(), describe()
    bed = bring_up()
    try:
        results = run(bed)
    finally:
        if os.environ.get("BENCHHUB_SWARM_KEEP") == "1":
            print("BENCHHUB_SWARM_KEEP=1: the test swarm stays up (scripts/swarm-testbed.sh down)")
        else:
            run_testbed("down")
            print("The test swarm is removed")
    report(results, bed, when, machine)
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"when": when, "machine": machine, **(fields or {}), "testbed": bed.__dict__, **results}
    (out / f"{name}.json").write_text(json.dumps(raw, indent=1))


def main() -> None:
    run_on_testbed("swarm_spawn", run, report, {"rounds": ROUNDS})


if __name__ == "__main__":
    main()
