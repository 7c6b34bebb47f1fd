"""Packages at creation vs ``docker build``, one run: 10 pip packages on the JupyterLab template.

The plain alternative to BenchHub's ``packages`` option is an image with the packages baked
in: ``docker build`` of ``FROM benchhub/jupyterlab`` + ``RUN pip install <the same 10>`` (no
build cache), which a site would then still have to start as a workspace. In each round, on
one real hub (with configurable-http-proxy) and the same engine:

1. **build**: ``docker build --no-cache`` of that Dockerfile (the same pip, options and
   packages as BenchHub's install step), timed to the built image;
2. **packages**: a new workspace with ``packages.pip`` = the 10, REST request -> ready (the
   server answers and the packages are installed); the install step's own duration is read
   from the start's progress events;
3. **restart**: the same workspace stopped (checkpoint on stop) and started again, request ->
   ready: the checkpoint brings the packages back, nothing is installed;
4. **plain**: a new workspace without packages, and its restart, as the baseline of 2 and 3.

Ratios: packages / build (how much longer a ready workspace with the packages takes than only
building an image with them) and restart with packages / restart without. A step that fails
(a refused request, a start that errors, a build that fails) is recorded with its reason and
the run goes on. pip downloads from the machine's package index each time (``--no-cache-dir``
on both sides). Prints a Markdown table for docs/benchmarks.md; raw figures go to
``.cache/bench/packages.json``. Run with ``make bench``.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchhub.package_commands import install_commands
from benchhub.package_spec import PackageSpec
from benchmarks.bench_hub import start_bench_hub
from benchmarks.machine import describe, now
from benchmarks.spawn_latency import failure_reason, stop_and_delete, timed_spawn
from tests.support.docker_cli import cleanup, docker
from tests.support.hub_harness import HubProcess
from tests.support.waiting import WaitTimedOut, wait

REPO = Path(__file__).resolve().parent.parent
IMAGE = "benchhub/jupyterlab:latest"
PREFIX = "benchpkg"
PIP = "/opt/venv/bin/pip"
ROUNDS = 3
# Small to medium, pure Python and with wheels, none of them in the JupyterLab image; with
# their dependencies (markdown-it-py, mdurl, et-xmlfile) pip installs 13 distributions.
PACKAGES = (
    "tabulate",
    "termcolor",
    "colorama",
    "rich",
    "click",
    "toolz",
    "tqdm",
    "humanize",
    "networkx",
    "openpyxl",
)
HUB_CONFIG = """
c.BenchSpawner.default_resource_model = "standard-small"
"""


def timed_build(tag: str) -> dict:
    """``docker build --no-cache`` of the template + the 10 packages: ``{"seconds"}`` or
    ``{"failed", "after_s"}``. The RUN line is BenchHub's own pip command line."""
    [pip] = install_commands(PackageSpec(pip=PACKAGES), PIP)
    dockerfile = f"FROM {IMAGE}\nUSER 1000\nRUN {json.dumps(list(pip.argv))}\n"
    with tempfile.TemporaryDirectory(prefix="bench-pkg-build-") as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        t0 = time.perf_counter()
        built = subprocess.run(
            ["docker", "build", "--no-cache", "-q", "-t", tag, context],
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.perf_counter() - t0
    docker("rmi", "-f", tag, check=False)
    if built.returncode != 0:
        tail = (built.stderr or built.stdout).strip().splitlines()[-3:]
        return {"failed": f"docker build: {' / '.join(tail)}", "after_s": took}
    return {"seconds": took}


def log_size(hub: HubProcess) -> int:
    return hub.log_path.stat().st_size if hub.log_path.exists() else 0


def step_seconds(hub: HubProcess, since: int, name: str, doing: str) -> float | None:
    """How long workspace ``name`` took for the step ``doing`` (a regular expression) in the
    hub's log after byte ``since``, as the spawner logged it with the start's progress
    ("<user>:<name>: <doing> took 1.23 s"); None when it had no such step."""
    with open(hub.log_path, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    found = re.findall(rf"bench:{re.escape(name)}: {doing} took ([0-9.]+) s", text)
    return float(found[-1]) if found else None


INSTALL_STEP = r"Installing \d+ pip packages? \(.*\)"
RESTORE_STEP = r"Restoring checkpoint \S+"


def stop(hub: HubProcess, user: str, name: str) -> dict | None:
    """Stop a workspace (its checkpoint is taken on stop); a failure as a row."""
    hub.api("DELETE", f"/users/{user}/servers/{name}")
    try:
        wait(
            lambda: hub.workspaces(user)[name]["status"],
            120,
            f"{user}/{name} stopped",
            step=0.1,
            until=lambda status: status in ("stopped", "errored"),
        )
    except WaitTimedOut as e:
        return {"failed": str(e), "after_s": 120}
    return None


def start_and_restart(hub: HubProcess, name: str, options: dict) -> tuple[dict, dict]:
    """A new workspace's first start and, after a stop, its second (each request -> ready)."""
    since = log_size(hub)
    first = timed_spawn(hub, "bench", name, options)
    if "failed" in first:
        first["failed"] = first["failed"] or failure_reason(hub, "bench", name)
        stop_and_delete(hub, "bench", name)
        return first, {"failed": "not run: the first start failed", "after_s": 0}
    first["install_s"] = step_seconds(hub, since, name, INSTALL_STEP)
    stopped = stop(hub, "bench", name)
    since = log_size(hub)
    second = stopped or timed_spawn(hub, "bench", name, None)
    if "seconds" in second:
        second["restore_s"] = step_seconds(hub, since, name, RESTORE_STEP)
        second["install_s"] = step_seconds(hub, since, name, INSTALL_STEP)
    stop_and_delete(hub, "bench", name)
    return first, second


def run_rounds() -> list[dict]:
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-pkg-") as tmp:
        hub = start_bench_hub(Path(tmp), PREFIX, HUB_CONFIG, "packages")
        try:
            hub.ensure_user("bench")
            warmup = timed_spawn(hub, "bench", "warmup", {"storage_gb": 1})  # caches, imports
            stop_and_delete(hub, "bench", "warmup")
            for i in range(ROUNDS):
                row: dict = {"warmup": warmup} if i == 0 else {}
                row["build"] = timed_build(f"{PREFIX}-build:{i}")
                packages = {"storage_gb": 1, "packages": {"pip": list(PACKAGES)}}
                row["packages"], row["restart_packages"] = start_and_restart(
                    hub, f"pkg{i}", packages
                )
                row["plain"], row["restart_plain"] = start_and_restart(
                    hub, f"plain{i}", {"storage_gb": 1}
                )
                rounds.append(row)
                print(f"round {i + 1}: {json.dumps(row)}", flush=True)
        finally:
            hub.stop()
            cleanup(PREFIX, hub.storage_root)
    return rounds


def median(rounds: list[dict], key: str, field: str = "seconds") -> float | None:
    values = [r[key][field] for r in rounds if r[key].get(field) is not None]
    return statistics.median(values) if values else None


def table(rounds: list[dict]) -> list[str]:
    def cell(value: float | None) -> str:
        return f"{value:.1f} s" if value is not None else "—"

    def ok(key: str) -> str:
        good = sum("seconds" in r[key] for r in rounds)
        return f"{good} / {len(rounds) - good}"

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a and b else "—"

    build, packages = median(rounds, "build"), median(rounds, "packages")
    install = median(rounds, "packages", "install_s")
    restart_pkg, restart_plain = median(rounds, "restart_packages"), median(rounds, "restart_plain")
    restore_pkg = median(rounds, "restart_packages", "restore_s")
    restore_plain = median(rounds, "restart_plain", "restore_s")
    reinstalled = sum(bool(r["restart_packages"].get("install_s")) for r in rounds)
    plain = median(rounds, "plain")
    built_and_started = build + plain if build and plain else None
    return [
        "| what (median of rounds) | time | against | ratio | ok / failed |",
        "|---|---|---|---|---|",
        f"| docker build --no-cache, FROM the template + RUN pip install (10) | {cell(build)} "
        f"| | | {ok('build')} |",
        f"| new workspace with packages.pip (10), request -> ready | {cell(packages)} "
        f"| docker build | {ratio(packages, build)} | {ok('packages')} |",
        f"| … of which the pip install step | {cell(install)} | docker build "
        f"| {ratio(install, build)} | |",
        f"| new workspace with packages.pip (10), request -> ready | {cell(packages)} "
        f"| docker build, then a start without packages ({cell(built_and_started)}, the sum) "
        f"| {ratio(packages, built_and_started)} | |",
        f"| new workspace without packages, request -> ready | {cell(plain)} | | | {ok('plain')} |",
        f"| second start with the 10 packages (nothing installed) | {cell(restart_pkg)} "
        f"| second start without packages | {ratio(restart_pkg, restart_plain)} "
        f"| {ok('restart_packages')} |",
        f"| … of which restoring the checkpoint (the installed packages) | {cell(restore_pkg)} "
        f"| | | reinstalled in {reinstalled} of {len(rounds)} |",
        f"| second start without packages | {cell(restart_plain)} | | | {ok('restart_plain')} |",
        f"| … of which restoring the checkpoint | {cell(restore_plain)} | | | |",
    ]


def failure_lines(rounds: list[dict]) -> list[str]:
    return [
        f"- round {i + 1}, {key}: after {value['after_s']:.1f} s: {value['failed']}"
        for i, row in enumerate(rounds)
        for key, value in row.items()
        if isinstance(value, dict) and "failed" in value
    ]


def main() -> None:
    when, machine = now(), describe()
    rounds = run_rounds()
    print(f"\nPackages at creation vs docker build ({when}; {machine})")
    print(f"pip packages: {', '.join(PACKAGES)}; {ROUNDS} rounds\n")
    print("\n".join(table(rounds)))
    print("\nFailed steps (not in the medians):\n" + ("\n".join(failure_lines(rounds)) or "- none"))
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"when": when, "machine": machine, "packages": PACKAGES, "rounds": rounds}
    (out / "packages.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
