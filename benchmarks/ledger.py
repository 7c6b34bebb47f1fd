"""A usage query over one year of the ledger: 1,000 workspaces, every working day.

A synthetic year in a real SQLite ledger (the lifecycle service's own store and query, not a
stand-in): 1,000 workspaces of 300 users in 20 projects, each run once on each of the year's
~250 working days for 1 to 9 hours with a model from the default catalogue's sizes, one
cluster member beside every tenth run, and each workspace's ``/data`` held all year (a size
change mid-year). Queries are what the REST API runs for an admin over the whole year
(``compute``: the ledger read and the arithmetic), grouped each way, and for one user and one
project. Reported: the median of ``REPEATS`` runs of each; the target is under 1 s.
Run with ``make bench`` or ``python -m benchmarks.ledger``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.machine import describe, now
from hub_services.lifecycle.ledger import Ledger, to_us
from hub_services.lifecycle.usage import DAY, Rates
from hub_services.lifecycle.usage_api import compute
from hub_services.lifecycle.usage_report import UsageQuery

WORKSPACES, USERS, PROJECTS, REPEATS = 1000, 300, 20, 3
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
SIZES = [(2, 8), (4, 16), (8, 32), (16, 64), (8, 61)]
RATES = Rates(unit="credits", model_hour={"standard-small": 2, "gpu-small": 12}, cpu_hour=0.5)


def synthetic_year(ledger: Ledger, seed: int = 15) -> int:
    """Fill ``ledger`` with the year; the number of runs."""
    rng = random.Random(seed)
    start = YEAR_START.timestamp()
    days = [d for d in range(365) if datetime.fromtimestamp(start + d * DAY, UTC).weekday() < 5]
    count = 0
    for w in range(WORKSPACES):
        user, project = f"user{w % USERS}", ("" if w % 3 == 0 else f"project{w % PROJECTS}")
        cpus, memory = SIZES[w % len(SIZES)]
        model = ["standard-small", "standard-medium", "standard-large", "gpu-small", ""][w % 5]
        rows = []
        for d in days:
            begin = start + d * DAY + rng.uniform(6, 12) * 3600
            end = begin + rng.uniform(1, 9) * 3600
            rows.append(
                _run(f"ws{w}-{d}", "workspace", user, w, project, model, cpus, memory, begin, end)
            )
            if d % 10 == w % 10:
                rows.append(
                    _run(
                        f"m{w}-{d}",
                        "cluster-member",
                        user,
                        w,
                        project,
                        "",
                        4,
                        16,
                        begin + 600,
                        end - 600,
                    )
                )
        ledger.insert_runs(rows)
        count += len(rows)
        ledger.set_storage(user, f"ws{w}", project, 100.0, to_us(start))
        ledger.set_storage(user, f"ws{w}", project, 250.0, to_us(start + 180 * DAY))
    return count


def _run(cid, kind, user, w, project, model, cpus, memory, begin, end) -> dict:
    return {
        "container_id": cid,
        "start_us": to_us(begin),
        "stop_us": to_us(end),
        "stop_source": "event",
        "seen_us": to_us(end),
        "kind": kind,
        "container_name": cid,
        "user": user,
        "workspace": f"ws{w}",
        "project": project,
        "resource_model": model,
        "cpus": float(cpus),
        "memory_gb": float(memory),
        "gpus": 1 if model == "gpu-small" else 0,
    }


def timed(ledger: Ledger, query: UsageQuery) -> tuple[float, int]:
    """The median seconds of the query and how many rows it gave."""
    times, groups = [], 0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        groups = len(compute(ledger, RATES, query, YEAR_END.timestamp()))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), groups


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'lifecycle.sqlite'}")
        t0 = time.perf_counter()
        runs = synthetic_year(ledger)
        print(f"{runs} runs of {WORKSPACES} workspaces in {time.perf_counter() - t0:.0f} s")
        print(f"\n{now()}; {describe()}\n")
        print("| query (a year, 2025) | groups | median time | target |")
        print("|---|---|---|---|")
        cases = [
            (f"everyone, per {g}", {"group_by": g})
            for g in ("user", "workspace", "project", "day", "month")
        ]
        cases += [
            ("one user, per day", {"group_by": "day", "user": "user7"}),
            ("one project, per workspace", {"group_by": "workspace", "project": "project4"}),
        ]
        for label, fields in cases:
            query = UsageQuery(YEAR_START, YEAR_END, **fields)
            seconds, groups = timed(ledger, query)
            verdict = "met" if seconds < 1 else "MISSED"
            print(f"| {label} | {groups} | {seconds:.2f} s | < 1 s: {verdict} |")
        ledger.close()


if __name__ == "__main__":
    main()
