"""The figures of ``benchmarks/swarm_spawn.py``, computed from what it recorded: pure, no Docker.

A spawn is recorded as ``{"seconds": s, "marks": {...}}`` when its server became ready, or
``{"failed": reason, "after_s": s}`` (the shape of :func:`benchmarks.spawn_latency.timed_spawn`).
``marks`` are wall-clock times (seconds since the epoch) of the steps of one start, read back
from the engine that ran it: ``requested`` (the REST request), ``created`` (the Swarm service,
or the container on one host), ``container_started`` (the container's ``State.StartedAt`` on
the node that runs it), ``task_running`` (Swarm recorded its task ``running``: the node's agent
reported the start to the manager; swarm only) and ``ready`` (the hub reported the server
ready). Every engine here runs on one kernel, so the clocks agree.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import datetime

from benchmarks.spawn_latency import pct

# the steps of a start, in order; a phase is the time from one mark to the next one present
MARKS = ("requested", "created", "container_started", "task_running", "ready")


def docker_time(text: str) -> float:
    """Seconds since the epoch of a Docker API timestamp, e.g.
    ``2026-12-01T00:12:03.123456789Z`` (nanoseconds, as the engine writes them; Python parses
    at most microseconds, so the rest is dropped)."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, zone = text.partition("+")
    if "." in main:
        whole, fraction = main.split(".", 1)
        main = f"{whole}.{fraction[:6].ljust(6, '0')}"
    return datetime.fromisoformat(f"{main}+{zone or '00:00'}").timestamp()


def phases(marks: dict[str, float]) -> dict[str, float]:
    """The seconds between consecutive marks that are present, keyed ``"a → b"``, e.g.
    ``{"requested → created": 0.31, "created → task_running": 1.2, ...}``. A missing mark
    (a single-host start has no task) is skipped, so the phases always add up to the whole."""
    present = [m for m in MARKS if m in marks]
    return {f"{a} → {b}": marks[b] - marks[a] for a, b in zip(present, present[1:], strict=False)}


def ready_seconds(spawns: list[dict]) -> list[float]:
    """The request → ready seconds of the spawns that succeeded."""
    return [s["seconds"] for s in spawns if "seconds" in s]


def failures(spawns: list[dict]) -> list[tuple[str, int]]:
    """``(reason, count)`` of the failed spawns, most frequent first; the server's URL in a
    reason is replaced by ``<server>`` (it differs per spawn: the reasons would not group)."""
    reasons = (re.sub(r"https?://\S+", "<server>", s["failed"]) for s in spawns if "failed" in s)
    return Counter(reasons).most_common()


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def median_phases(spawns: list[dict]) -> dict[str, float]:
    """Per phase, the median over the successful spawns that have it."""
    by_phase: dict[str, list[float]] = {}
    for spawn in spawns:
        if "seconds" in spawn and spawn.get("marks"):
            for name, seconds in phases(spawn["marks"]).items():
                by_phase.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in by_phase.items()}


def spread(placed: dict[str, int], workers: list[str]) -> tuple[dict[str, int], bool]:
    """How many workspaces each worker runs (every worker listed, 0 for one that got none,
    anything placed elsewhere kept under its own name) and whether the workers' counts are
    within one of even (largest minus smallest <= 1)."""
    counts = {worker: placed.get(worker, 0) for worker in workers}
    counts.update({node: n for node, n in placed.items() if node not in counts})
    on_workers = [counts[w] for w in workers]
    return counts, bool(on_workers) and max(on_workers) - min(on_workers) <= 1


def _cell(seconds: float | None) -> str:
    return f"{seconds:.2f} s" if seconds is not None else "—"


def _ratio_cell(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def latency_table(results: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """Markdown rows: per percentile, each side's request → ready time and the ratios of
    ``swarm`` to ``single`` and to ``plain``; then each side's ok / failed counts."""
    ok = {side: ready_seconds(results[side]) for side in labels}
    header = " | ".join(labels[side] for side in labels)
    lines = [
        f"| percentile | {header} | swarm / single-host | swarm / plain SwarmSpawner |",
        "|---" * (len(labels) + 3) + "|",
    ]
    for q in (50, 95):
        at = {side: pct(ok[side], q) for side in labels}
        cells = " | ".join(_cell(at[side]) for side in labels)
        lines.append(
            f"| p{q} | {cells} | {_ratio_cell(ratio(at.get('swarm'), at.get('single')))} "
            f"| {_ratio_cell(ratio(at.get('swarm'), at.get('plain')))} |"
        )
    counts = " | ".join(
        f"{len(ok[side])} / {len(results[side]) - len(ok[side])}" for side in labels
    )
    lines.append(f"| ok / failed | {counts} | | |")
    return lines


def phase_table(results: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """Markdown rows: the median seconds of each phase of a start, per side."""
    medians = {side: median_phases(results[side]) for side in labels}
    names = [f"{a} → {b}" for a, b in zip(MARKS, MARKS[1:], strict=False)]
    names += [n for side in labels for n in medians[side] if n not in names]
    header = " | ".join(labels[side] for side in labels)
    lines = [f"| phase (median) | {header} |", "|---" * (len(labels) + 1) + "|"]
    for name in dict.fromkeys(names):
        if any(name in medians[side] for side in labels):
            cells = " | ".join(_cell(medians[side].get(name)) for side in labels)
            lines.append(f"| {name} | {cells} |")
    return lines
