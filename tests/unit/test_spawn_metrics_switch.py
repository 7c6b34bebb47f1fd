"""``c.BenchSpawner.metrics_enabled = False``: the spawner counts nothing (starts, run ends,
stop checkpoints) and behaves otherwise the same; the series stay, at 0. What the spawn
overhead benchmark (benchmarks/spawn_overhead.py) compares against."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from bench_spawner.hub_metrics import HubMetrics
from bench_spawner.spawn_metrics import SpawnMetrics, metered_start
from bench_spawner.spawner import BenchSpawner

SPAWNS = "benchhub_workspace_spawn_duration_seconds_count"
STOPS = "benchhub_workspace_stops_total"


class Journal:
    """The parts of the spawner the mixin relies on: a journal and a checkpoint that keep
    what they were asked to do."""

    action_request = None
    checkpoints_enabled = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.journal: list[str] = []
        self.checkpoints = 0

    async def record_activity(self, action, description, fields=None, actor=None):
        self.journal.append(action)

    async def _checkpoint_on_stop(self, obj):
        self.checkpoints += 1


class Workspace(SpawnMetrics, Journal):
    user_options = {"resource_model": "small", "image": "jupyterlab"}

    @metered_start
    async def start(self):
        return "http://10.0.0.2:8888"


@pytest.fixture
def metrics(monkeypatch):
    hub = HubMetrics(catalogue=lambda: (("small",), ("jupyterlab",)), spawners=list)
    monkeypatch.setattr("bench_spawner.spawn_metrics.HUB_METRICS", hub)
    return hub


def totals(metrics: HubMetrics) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            found[s.name] = found.get(s.name, 0.0) + s.value
    return found


async def run_once(ws: Workspace) -> None:
    assert await ws.start() == "http://10.0.0.2:8888"
    await ws.record_activity("started", "started by ann")
    await ws._checkpoint_on_stop({})
    await ws.record_activity("errored", "out of memory: limit 0.5 GB")


async def test_with_metrics_off_a_run_is_journalled_and_checkpointed_but_not_counted(metrics):
    ws = Workspace(metrics_enabled=False)
    await run_once(ws)
    assert ws.journal == ["started", "errored"] and ws.checkpoints == 1
    found = totals(metrics)
    assert found[SPAWNS] == 0 and found[STOPS] == 0
    assert found["benchhub_checkpoint_duration_seconds_count"] == 0


async def test_with_metrics_on_by_default_the_same_run_is_counted(metrics):
    ws = Workspace()
    await run_once(ws)
    found = totals(metrics)
    assert found[SPAWNS] == 1 and found[STOPS] == 1
    assert found["benchhub_checkpoint_duration_seconds_count"] == 1


def test_the_switch_is_a_setting_of_the_bench_spawner():
    config = Config({"BenchSpawner": {"metrics_enabled": False}})
    assert BenchSpawner(config=config).metrics_enabled is False
