"""Spawn latency per image template against the plain JupyterLab template, and image sizes.

One hub offers the catalogue ``jupyterhub_config.py`` ships. In rounds, each template is
spawned over REST (without a resource model: each template's own is used) and stopped again,
templates taking turns so that none profits from a warmer machine. Two times per spawn, both
from the POST: *ready*, when the hub's REST API reports the server ready (what the spawner
controls), and *app answers*, when the workspace's link (``/user/<u>/<w>/``, followed through
its redirects with an admin token) returns the page of the template's app: JupyterLab's, or
for VS Code code-server's, which the server starts on that first request. Ratios are each
template's p50 over the JupyterLab template's p50 in the same run. A failed spawn (refused,
gone, not ready in time, or the app not answering) is recorded with its reason and the run goes
on; a template whose image is missing is a row saying so.

Prints a Markdown table for docs/benchmarks.md; raw figures go to .cache/bench/templates.json.
Run with ``make bench`` (needs ``make images-all`` and a running Docker Engine).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from benchhub.image_templates import load_image_templates
from benchmarks.bench_hub import start_bench_hub
from benchmarks.machine import describe, now
from benchmarks.spawn_latency import pct, stop_and_delete, timed_spawn
from tests.support.catalogue import shipped_catalogue
from tests.support.docker_cli import cleanup, docker
from tests.support.hub_harness import TOKEN, HubProcess

REPO = Path(__file__).resolve().parent.parent
PREFIX = "benchtplm"
BASELINE = "jupyterlab"
ROUNDS = int(os.environ.get("BENCHHUB_BENCH_TEMPLATE_ROUNDS", "5"))
APP_WITHIN_S = 180


def image_size(image: str) -> int | None:
    """The image's size in bytes, None when it is not on this host."""
    out = docker("image", "inspect", "-f", "{{.Size}}", image, check=False).strip()
    return int(out) if out.isdigit() else None


def app_answers(hub: HubProcess, user: str, name: str, app_url: str) -> str | None:
    """None when the workspace's link ends, after its redirects, with a 200 from the template's
    app (a URL under the server's ``app_url``); else what happened instead."""
    server = f"{hub.url}/user/{user}/{name}"
    try:
        r = requests.get(
            f"{server}/",
            headers={"Authorization": f"token {TOKEN}"},
            timeout=APP_WITHIN_S,
        )
    except requests.RequestException as e:
        return f"the app did not answer: {e}"
    if r.status_code != 200 or not r.url.startswith(server + app_url.rstrip("/")):
        return f"the link ended at {r.url} with {r.status_code}"
    return None


def spawn_once(hub: HubProcess, user: str, name: str, key: str, app_url: str) -> dict:
    """One spawn of template ``key``: ``{"ready_s", "app_s"}`` or ``{"failed", "after_s"}``."""
    t0 = time.perf_counter()
    spawned = timed_spawn(hub, user, name, {"image": key, "storage_gb": 1})
    if "failed" in spawned:
        return spawned
    problem = app_answers(hub, user, name, app_url)
    if problem:
        return {"failed": problem, "after_s": time.perf_counter() - t0}
    return {"ready_s": spawned["seconds"], "app_s": time.perf_counter() - t0}


def run(catalogue: dict, present: list[str]) -> dict[str, list[dict]]:
    """Every spawn of every template whose image is present, by template key."""
    results: dict[str, list[dict]] = {key: [] for key in present}
    extra = (
        f"c.BenchSpawner.image_templates = {json.dumps(catalogue['image_templates'])}\n"
        f"c.BenchSpawner.default_image_template = {BASELINE!r}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-templates-") as tmp:
        hub = start_bench_hub(Path(tmp), PREFIX, extra, "templates")
        try:
            hub.ensure_user("bench")
            templates = load_image_templates(catalogue["image_templates"])
            urls = {key: t.app.default_url or "/lab" for key, t in templates.items()}
            for key in present:  # warm-up: caches, imports, the first checkpoint store writes
                spawn_once(hub, "bench", f"warm-{key}", key, urls[key])
                stop_and_delete(hub, "bench", f"warm-{key}")
            for i in range(ROUNDS):
                for key in present:
                    name = f"{key}-{i}"
                    results[key].append(spawn_once(hub, "bench", name, key, urls[key]))
                    stop_and_delete(hub, "bench", name)
        finally:
            hub.stop()
            cleanup(PREFIX, hub.storage_root)
    return results


def p50(spawns: list[dict], field: str) -> float | None:
    return pct([s[field] for s in spawns if field in s], 50)


def table(catalogue: dict, results: dict, sizes: dict) -> list[str]:
    """The Markdown rows: one per template (a missing image is a row that says so)."""
    base = results.get(BASELINE, [])
    base_ready, base_app = p50(base, "ready_s"), p50(base, "app_s")
    base_size = sizes.get(BASELINE)
    rows = []
    for key, template in catalogue["image_templates"].items():
        size = sizes.get(key)
        if size is None:
            rows.append(f"| {key} | {template['image']} | image missing (make images-all) |")
            continue
        spawns = results.get(key, [])
        ok = [s for s in spawns if "ready_s" in s]
        ready, app = p50(spawns, "ready_s"), p50(spawns, "app_s")
        extra = f"+{(size - base_size) / 1e9:.2f} GB" if base_size and key != BASELINE else "—"
        cells = [
            key,
            template["image"],
            f"{size / 1e9:.2f} GB",
            extra,
            f"{len(ok)} / {len(spawns) - len(ok)}",
            f"{ready:.2f} s" if ready is not None else "—",
            f"{ready / base_ready:.2f}" if ready and base_ready else "—",
            f"{app:.2f} s" if app is not None else "—",
            f"{app / base_app:.2f}" if app and base_app else "—",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def failure_lines(results: dict) -> list[str]:
    lines = []
    for key, spawns in results.items():
        failed = [s for s in spawns if "failed" in s]
        for reason, count in Counter(s["failed"] for s in failed).items():
            lines.append(f"- {key}: {count} failed: {reason}")
    return lines


def main() -> None:
    when, machine = now(), describe()
    catalogue = shipped_catalogue()
    sizes = {key: image_size(t["image"]) for key, t in catalogue["image_templates"].items()}
    present = [key for key, size in sizes.items() if size is not None]
    results = run(catalogue, present) if present else {}
    print(f"\nImage templates: spawn, request -> ready and -> the app answers ({when}; {machine})")
    print(f"{ROUNDS} spawns per template, templates in turn; ratios over the {BASELINE} template\n")
    print(
        "| template | image | image size | over JupyterLab | ok / failed | ready p50 | ratio "
        "| app answers p50 | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table(catalogue, results, sizes)))
    print(
        "\nFailed spawns (not in the percentiles):\n"
        + ("\n".join(failure_lines(results)) or "- none")
    )
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    raw = {"when": when, "machine": machine, "sizes": sizes, "results": results}
    (out / "templates.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
