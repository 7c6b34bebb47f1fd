"""Moving a stopped swarm workspace with 1 GiB of /data to another node, against the floor of a
plain copy of the same tree between the same two nodes, in one run.

One real hub with BenchSwarmSpawner on the test swarm (the configuration and the testbed of
:mod:`benchmarks.swarm_spawn`). Each of :data:`ROUNDS` rounds (``BENCHHUB_SWARM_MOVE_ROUNDS``,
default 2; a round takes ~1-2 min on 2 cores):

1. a ``swarm-tiny`` workspace starts and writes 1 GiB to /data (:data:`FILL`: 15 files of
   64 MiB and 1024 of 64 KiB, from /dev/urandom), then stops;
2. **move**: its node is drained and the workspace started again, timed from the REST request
   to the hub reporting it ready on the other node: the whole move (open the drained node,
   receiver placed, sender digest + stream, receiver extract + digest, digest compare,
   release of the old copy, node drained again) and the workspace's start there. The phases
   come from the hub's log line ``<service>: move phases {...}`` (bench_spawner/swarm/
   data_move.py); ``start`` is what the request took besides the move;
3. **floor**: the same tree, now on the new node, copied back to the first node into a fresh
   volume with no verification at all: two one-shot Swarm services in the workspace image
   (``restart_policy: none``, created through the manager's API as the movers are), a
   receiver pinned to the first node running ``python3 <accept one TCP connection> | tar -x``
   on a port published on its node (host mode), and a sender pinned to the second running
   ``tar -c . | python3 <connect, copy stdin>`` to that address: timed from the receiver's
   creation to both tasks complete (scheduling included, as for the move's movers);
4. the workspace is deleted (``delete_forever`` removes its volume) and the floor's volume
   removed.

A failed round of either side is recorded with its reason and the run goes on. Run with
``make bench`` or ``python -m benchmarks.swarm_move`` under the shared Docker lock (the
testbed is brought up if absent and removed at the end unless ``BENCHHUB_SWARM_KEEP=1``);
raw figures go to ``.cache/bench/swarm_move.json``, the hub's log to
``.cache/bench/swarm-move-hub.log``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import docker as docker_py
from docker.types import ContainerSpec, EndpointSpec, Mount, Placement, RestartPolicy, TaskTemplate

from benchmarks.bench_hub import start_bench_hub
from benchmarks.spawn_latency import stop_and_delete, timed_spawn
from benchmarks.swarm_spawn import (
    ENV,
    IMAGE,
    SWARM_CONFIG,
    USER,
    Testbed,
    remove_leftovers,
    remove_volumes,
    run_on_testbed,
)
from tests.support.docker_cli import cleanup, docker
from tests.support.hub_harness import HubProcess
from tests.support.waiting import WaitTimedOut, wait

ROUNDS = int(os.environ.get("BENCHHUB_SWARM_MOVE_ROUNDS", "2"))
PREFIX = "benchswarm-mv"  # "benchswarm-": the testbed's `down` removes what a run leaks
OPTIONS = {"resource_model": "swarm-tiny", "storage_gb": 1}
FILL = (
    "set -e; for i in $(seq 15); do head -c 64M /dev/urandom > /data/part-$i; done; "
    "mkdir /data/small; head -c 64M /dev/urandom | split -b 64K -a 4 - /data/small/f-; "
    "du -sb /data"
)
GIB = 1024**3
FLOOR_PORT = 7071
FLOOR_VOLUME = f"{PREFIX}-floor"
# python3 as netcat (the image has no nc): the receiver accepts one connection and writes it
# to stdout; the sender connects (retrying until the receiver listens) and sends stdin
NETCAT_IN = (
    "import shutil, socket, sys\n"
    f"server = socket.create_server(('0.0.0.0', {FLOOR_PORT}))\n"
    "conn, _ = server.accept()\n"
    "shutil.copyfileobj(conn.makefile('rb'), sys.stdout.buffer, 1 << 20)\n"
)
NETCAT_OUT = (
    "import os, shutil, socket, sys, time\n"
    "while True:\n"
    "    try:\n"
    f"        conn = socket.create_connection((os.environ['PEER'], {FLOOR_PORT}))\n"
    "        break\n"
    "    except OSError:\n"
    "        time.sleep(0.2)\n"
    "out = conn.makefile('wb')\n"
    "shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)\n"
    "out.close()\n"
    "conn.close()\n"
)
MOVE_CONFIG = "c.BenchSwarmSpawner.start_timeout = 900  # the move is part of the start\n"


def task_node(bed: Testbed, service: str) -> tuple[str, str]:
    """(node hostname, container id) of the service's newest task."""
    ids = bed.manager("service", "ps", "-q", "--no-trunc", service).split()
    task = max(json.loads(bed.manager("inspect", *ids)), key=lambda t: t["Version"]["Index"])
    node = bed.manager("node", "inspect", "-f", "{{.Description.Hostname}}", task["NodeID"])
    return node.strip(), task["Status"]["ContainerStatus"]["ContainerID"]


def stop(hub: HubProcess, name: str) -> None:
    hub.api("DELETE", f"/users/{USER}/servers/{name}")
    wait(
        lambda: hub.api("GET", f"/users/{USER}").json()["servers"].get(name),
        60,
        f"{name} stops",
        until=lambda s: s is None,
    )


def move_phases(hub: HubProcess, service: str) -> dict[str, float]:
    """The last ``<service>: move phases {...}`` the hub logged, or {}."""
    marker = f"{service}: move phases "
    found = {}
    for line in hub.log_path.read_text(errors="replace").splitlines():
        if marker in line:
            found = json.loads(line.split(marker, 1)[1])
    return found


# ---- the floor: tar | tar between the two nodes, no verification --------------------------


def floor_copy(api: docker_py.APIClient, bed: Testbed, source: str, volume: str, target: str):
    """Copy volume ``volume`` on node ``source`` into :data:`FLOOR_VOLUME` on ``target`` with
    two one-shot services: the seconds from the receiver's creation to both complete."""
    address = bed.manager("node", "inspect", "-f", "{{.Status.Addr}}", target).strip()

    def one_shot(name, node, mount, script, env, ports=None):
        spec = ContainerSpec(
            image=IMAGE,
            command=["sh", "-c", script],
            env=env,
            user="0",
            mounts=[Mount(target="/data", **mount)],
        )
        task = TaskTemplate(
            container_spec=spec,
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=[f"node.hostname=={node}"]),
        )
        endpoint = EndpointSpec(ports=ports) if ports else None
        return api.create_service(task, name=name, endpoint_spec=endpoint)["ID"]

    began = time.perf_counter()
    services = []
    try:
        services.append(
            one_shot(
                f"{PREFIX}-floor-in",
                target,
                {"source": FLOOR_VOLUME, "type": "volume"},
                'python3 -c "$NETCAT" | tar -C /data -xf -',
                {"NETCAT": NETCAT_IN},
                {FLOOR_PORT: (FLOOR_PORT, "tcp", "host")},
            )
        )
        services.append(
            one_shot(
                f"{PREFIX}-floor-out",
                source,
                {"source": volume, "type": "volume", "read_only": True},
                'tar -C /data -cf - . | python3 -c "$NETCAT"',
                {"NETCAT": NETCAT_OUT, "PEER": address},
            )
        )
        for service in services:
            state = wait(
                lambda s=service: task_state(api, s),
                600,
                "a floor copier completes",
                step=0.1,
                until=lambda st: st in ("complete", "failed", "rejected", "shutdown"),
            )
            if state != "complete":
                raise RuntimeError(f"a floor copier ended {state}")
        return time.perf_counter() - began
    finally:
        for service in services:
            api.remove_service(service)


def task_state(api: docker_py.APIClient, service: str) -> str:
    tasks = api.tasks(filters={"service": service})
    if not tasks:
        return "new"
    newest = max(tasks, key=lambda t: t["Version"]["Index"])
    return newest["Status"]["State"]


# ---- a round ------------------------------------------------------------------------------------


def one_round(hub: HubProcess, bed: Testbed, api: docker_py.APIClient, i: int) -> dict:
    name = f"m{i}"
    service = hub.container_name(USER, name)
    result: dict = {"round": i}
    setup = timed_spawn(hub, USER, name, OPTIONS)
    if "seconds" not in setup:
        return {**result, "setup_failed": setup["failed"]}
    source, container = task_node(bed, service)
    filled = docker("exec", source, "docker", "exec", container, "sh", "-c", FILL)
    result["bytes"] = int(filled.split()[0])
    stop(hub, name)
    bed.manager("node", "update", "--availability", "drain", source)
    try:
        move = timed_spawn(hub, USER, name, {})
    finally:
        bed.manager("node", "update", "--availability", "active", source)
    if "seconds" in move:
        target, _ = task_node(bed, service)
        phases = move_phases(hub, service)
        moved = sum(v for k, v in phases.items() if "." not in k)
        result["move"] = {
            "seconds": move["seconds"],
            "from": source,
            "to": target,
            "phases": phases,
            "start_s": move["seconds"] - moved,
        }
        stop(hub, name)
        try:
            result["floor"] = {"seconds": floor_copy(api, bed, target, f"{service}-data", source)}
        except (RuntimeError, WaitTimedOut, docker_py.errors.APIError) as e:
            result["floor"] = {"failed": str(e)[:300]}
        remove_volumes(source, FLOOR_VOLUME)
    else:
        result["move"] = {"failed": move["failed"]}
        result["floor"] = {"failed": "not run: the move failed"}
    stop_and_delete(hub, USER, name)
    return result


def run(bed: Testbed) -> dict:
    """``{"rounds": [...]}``: each round's figures or the reason it failed."""
    rounds = []
    api = docker_py.APIClient(base_url=bed.docker_host, timeout=120)
    config = SWARM_CONFIG.format(docker_host=bed.docker_host, gateway=bed.gateway) + MOVE_CONFIG
    with tempfile.TemporaryDirectory(prefix="bench-swarm-move-") as tmp:
        hub = None
        try:
            hub = start_bench_hub(Path(tmp), PREFIX, config, "swarm-move", ENV)
            hub.ensure_user(USER)
            for i in range(ROUNDS):
                r = one_round(hub, bed, api, i)
                rounds.append(r)
                print(f"  round {i + 1}/{ROUNDS}: {summary(r)}", flush=True)
        finally:
            if hub is not None:
                hub.stop()
                cleanup(PREFIX, hub.storage_root)
            remove_leftovers(bed, (PREFIX,))
    return {"rounds": rounds}


def summary(r: dict) -> str:
    if "setup_failed" in r:
        return f"setup failed: {r['setup_failed']}"
    move, floor = r["move"], r["floor"]
    shown = [
        f"move {move['seconds']:.1f} s" if "seconds" in move else f"move failed: {move['failed']}",
        f"floor {floor['seconds']:.1f} s"
        if "seconds" in floor
        else f"floor failed: {floor['failed']}",
    ]
    return ", ".join(shown)


# ---- the report -------------------------------------------------------------------------------


def report(results: dict, bed: Testbed, when: str, machine: str) -> None:
    rounds = results["rounds"]
    moves = [r["move"] for r in rounds if "seconds" in r.get("move", {})]
    floors = [r["floor"] for r in rounds if "seconds" in r.get("floor", {})]
    size = max((r.get("bytes", 0) for r in rounds), default=0)
    print(f"\nMoving a stopped swarm workspace with {size / GIB:.2f} GiB /data ({when}; {machine})")
    print(
        f"Test swarm: {'brought up by this run' if bed.brought_up else 'reused'}; {ROUNDS} rounds\n"
    )
    print("| side | ok | median s | min s | max s |\n|---|---|---|---|---|")
    for label, done in (("move + start (BenchSwarmSpawner)", moves), ("floor: tar | tar", floors)):
        seconds = [d["seconds"] for d in done]
        if seconds:
            print(
                f"| {label} | {len(seconds)}/{ROUNDS} | {statistics.median(seconds):.1f} | "
                f"{min(seconds):.1f} | {max(seconds):.1f} |"
            )
        else:
            print(f"| {label} | 0/{ROUNDS} | - | - | - |")
    if moves and floors:
        ratio = statistics.median(m["seconds"] for m in moves) / statistics.median(
            f["seconds"] for f in floors
        )
        moved = statistics.median(m["seconds"] - m["start_s"] for m in moves)
        floor = statistics.median(f["seconds"] for f in floors)
        print(f"\nRatio move + start / floor (medians): {ratio:.2f}x")
        print(f"Ratio move alone (its phases, no start) / floor: {moved / floor:.2f}x")
    if moves:
        keys = list(dict.fromkeys(k for m in moves for k in m["phases"])) + ["start_s"]
        print("\nMove phases, median seconds (hub log; dotted: the movers' own step times):")
        for key in keys:
            values = [m["phases"].get(key, m.get(key)) for m in moves]
            values = [v for v in values if v is not None]
            if values:
                print(f"- {key}: {statistics.median(values):.2f}")
    failed = []
    for r in rounds:
        for side in ("setup_failed",):
            if side in r:
                failed.append(f"- round {r['round']}: setup failed: {r[side]}")
        for side in ("move", "floor"):
            if "failed" in r.get(side, {}):
                failed.append(f"- round {r['round']}: {side} failed: {r[side]['failed']}")
    print("\nFailed (not in the figures):\n" + ("\n".join(failed) or "- none"))


def main() -> None:
    run_on_testbed("swarm_move", run, report)


if __name__ == "__main__":
    main()
