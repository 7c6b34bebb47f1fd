"""Project data and fast mounts vs ``/data``, one run, one running workspace.

A workspace of a project (its ``/data/project`` read-write) on a real hub reads, in turns,
the same amount of data from three places, with the host's page cache dropped before each
read (``echo 3 > /proc/sys/vm/drop_caches``, so every read comes from the disk):

1. ``/data`` — the workspace's own volume (the plain alternative: copy the data in);
2. ``/data/project`` — the project's shared data (a bind mount of its volume);
3. ``/data/mounts/bench`` — a fast mount of ``/data/project/bench`` made with
   ``workspace-ctl data create-mount`` while the workspace runs.

Each read is ``dd bs=4M`` of a :data:`SIZE_MB` MB file of random bytes to ``/dev/null`` as the
workspace user; throughput in MB/s, ratios against ``/data`` (target >= 0.9). Then the time from
``create-mount`` to the mount being visible in the workspace (its mount table lists it), measured
inside the workspace (``workspace-ctl`` started, the hub's relay, the service, the mount made),
:data:`MOUNTS` times, p50 and max. A step that fails is recorded as a row with its reason and the
run goes on. Prints a Markdown table for docs/benchmarks.md; raw figures go to
``.cache/bench/project_data.json``. Run with ``make bench``.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchhub.projects import PROPERTY
from benchmarks.machine import describe, now
from tests.support.docker_cli import cleanup, exec_in
from tests.support.hub_harness import HubProcess, free_port

REPO = Path(__file__).resolve().parent.parent
PREFIX = "benchmnt"
PROJECT = "benchdata"
SIZE_MB = 512
ROUNDS = 15
MOUNTS = 10
PLACES = {
    "/data": "/data/bench.bin",
    "/data/project": "/data/project/bench/bench.bin",
    "fast mount": "/data/mounts/bench/bench.bin",
}
MEMBER = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
OPTIONS = {
    "resource_model": "test-medium",
    "storage_gb": 2,
    "project": PROJECT,
    "permissions": {"upload": True, "download": True, "project_data": "contributor"},
}
# runs in the workspace: create-mount, then watch the mount table until it lists the mount
LATENCY = r"""
import json, subprocess, sys, time
results = []
for i in range(int(sys.argv[1])):
    path = f"/data/mounts/lat{i}"
    start = time.monotonic()
    made = subprocess.run(["workspace-ctl", "data", "create-mount", "--mount-path", path,
                           "--source", "/data/project/bench"], capture_output=True, text=True)
    if made.returncode != 0:
        results.append({"failed": made.stderr.strip()[-300:]})
        continue
    while f" {path} " not in open("/proc/self/mountinfo").read():
        if time.monotonic() - start > 60:
            break
        time.sleep(0.005)
    visible = time.monotonic() - start
    start = time.monotonic()
    gone = subprocess.run(["workspace-ctl", "data", "delete-mount", "--mount-path", path],
                          capture_output=True, text=True)
    results.append({"visible_s": visible, "delete_s": time.monotonic() - start,
                    "deleted": gone.returncode == 0})
print(json.dumps(results))
"""


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def read_throughput(container: str, path: str) -> dict:
    """One cold sequential read of ``path`` in the workspace: MB/s, or why it failed."""
    drop_caches()
    out = exec_in(container, f"dd if={path} of=/dev/null bs=4M 2>&1", user="1000")
    found = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out.stdout)
    if out.returncode != 0 or not found:
        return {"failed": (out.stdout + out.stderr).strip()[-300:]}
    size, seconds = int(found.group(1)), float(found.group(2))
    return {"mb_s": size / seconds / 1e6, "seconds": seconds, "bytes": size}


def prepare(hub: HubProcess, container: str) -> str | None:
    """The project, the workspace, the files and the fast mount; the failure, or None."""
    for user in ("alice", "owner"):
        hub.ensure_user(user)
    r = hub.api("POST", f"/groups/{PROJECT}", {"users": ["alice"]})
    if r.status_code not in (201, 409):
        return f"project group: {r.status_code} {r.text[:200]}"
    properties = {PROPERTY: {"owner": "owner", "storage_gb": 2, "members": {"alice": MEMBER}}}
    r = hub.api("PUT", f"/groups/{PROJECT}/properties", properties)
    if not r.ok:
        return f"project settings: {r.status_code} {r.text[:200]}"
    hub.start_workspace("alice", "bench", OPTIONS)
    script = (
        f"mkdir -p /data/project/bench && head -c {SIZE_MB}M /dev/urandom > /data/bench.bin && "
        "cp /data/bench.bin /data/project/bench/bench.bin && sync && "
        "workspace-ctl data create-mount --mount-path /data/mounts/bench "
        "--source /data/project/bench"
    )
    out = exec_in(container, script, user="1000")
    return None if out.returncode == 0 else f"preparing: {out.stderr.strip()[-300:]}"


def run() -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-project-data-"))
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            "BENCHHUB_MOUNTS_PORT": str(free_port()),
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
        },
    )
    hub.log_path = REPO / ".cache" / "bench" / "project_data-hub.log"
    hub.log_path.parent.mkdir(parents=True, exist_ok=True)
    hub.log_path.unlink(missing_ok=True)
    cleanup(PREFIX, hub.storage_root)
    result: dict = {"reads": [], "latency": []}
    try:
        hub.start()
        container = hub.container_name("alice", "bench")
        failed = prepare(hub, container)
        if failed:
            result["failed"] = failed
            return result
        for i in range(ROUNDS):
            order = list(PLACES.items())
            order = order[i % len(order) :] + order[: i % len(order)]  # each place goes first
            for place, path in order:
                result["reads"].append({"place": place, **read_throughput(container, path)})
        out = subprocess.run(
            ["docker", "exec", "-u", "1000", container, "python3", "-c", LATENCY, str(MOUNTS)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            result["latency"] = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result["latency"] = [{"failed": (out.stdout + out.stderr).strip()[-300:]}]
    except Exception as e:  # recorded, never aborting the bench run
        result["failed"] = f"{type(e).__name__}: {e}"[:300]
    finally:
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
        for target in mounts.stdout.split():  # the project's volume
            if target.startswith(str(workdir)):
                subprocess.run(["umount", "-l", target], check=False)
    return result


def table(result: dict) -> list[str]:
    lines = [
        "| read from | MB/s (median) | min–max | runs (failed) | ratio vs /data |",
        "|---|---|---|---|---|",
    ]
    medians = {}
    for place in PLACES:
        reads = [r for r in result["reads"] if r["place"] == place]
        speeds = [r["mb_s"] for r in reads if "mb_s" in r]
        medians[place] = statistics.median(speeds) if speeds else None
        spread = f"{min(speeds):.0f}–{max(speeds):.0f}" if speeds else "—"
        counted = f"{len(reads)} ({len(reads) - len(speeds)})"
        base = medians.get("/data")
        speed = medians[place]
        ratio = f"{speed / base:.2f}" if speed and base else "—"
        shown = f"{speed:.0f}" if speed else "—"
        lines.append(f"| `{place}` | {shown} | {spread} | {counted} | {ratio} |")
    visible = [r["visible_s"] for r in result["latency"] if "visible_s" in r]
    deleted = [r["delete_s"] for r in result["latency"] if "delete_s" in r]
    lines += ["", "| fast mount | p50 | max | of |", "|---|---|---|---|"]
    for name, values in (("create-mount → visible", visible), ("delete-mount", deleted)):
        if values:
            lines.append(
                f"| {name} | {statistics.median(values):.2f} s | {max(values):.2f} s | "
                f"{len(values)} |"
            )
        else:
            lines.append(f"| {name} | — | — | 0 |")
    return lines


def failure_lines(result: dict) -> list[str]:
    lines = [f"- setup: {result['failed']}"] if result.get("failed") else []
    lines += [f"- read {r['place']}: {r['failed']}" for r in result["reads"] if "failed" in r]
    lines += [
        f"- mount {i}: {r['failed']}" for i, r in enumerate(result["latency"]) if "failed" in r
    ]
    return lines


def main() -> None:
    when, machine = now(), describe()
    result = run()
    print(f"\nProject data and fast mounts vs /data ({when}; {machine})")
    print(f"{SIZE_MB} MB file, cold reads (page cache dropped), {ROUNDS} rounds\n")
    print("\n".join(table(result)))
    print("\nFailed steps:\n" + ("\n".join(failure_lines(result)) or "- none"))
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"when": when, "machine": machine, **result}
    (out / "project_data.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
