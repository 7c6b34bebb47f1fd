"""The hub's BenchHub metrics without a hub: what each start, stop and exit is counted as, and
that every series an operator graphs is there at zero before anything happened.

The spawners here are stand-ins with only what the metrics read (the real ones are scraped on
a real hub in tests/integration/test_metrics.py); the classifications run on the real
exceptions and sentences the spawner produces.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tornado import web
from traitlets.config import Config

from bench_spawner.actors import ActionRequest
from bench_spawner.checkpointing import WorkspaceCheckpointing
from bench_spawner.hub_metrics import HubMetrics, spawn_outcome
from bench_spawner.spawn_metrics import SpawnMetrics, metered_start
from bench_spawner.spawner import BenchSpawner
from bench_spawner.workspace_status import exit_reason
from benchhub.stop_reasons import STOP_REASONS, exit_stop_reason, requested_stop_reason
from benchhub.writable_layer import LayerUsage, over_limit_reason
from hub_services.lifecycle.policy import Activity, Policy, decide

CATALOGUE = (("small", "large"), ("jupyterlab", "vscode"))
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def scrape(metrics: HubMetrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape, through the text format."""
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


# ---- what a start's outcome is counted as ------------------------------------------------------


def test_each_start_failure_is_counted_under_the_reason_a_user_was_shown():
    oom = SpawnException(exit_reason({"OOMKilled": True, "ExitCode": 137}, 0.5), reason="exit")
    crashed = SpawnException(exit_reason({"ExitCode": 3}, 0.5), reason="exit")
    missing = SpawnException("image missing: benchhub/x:0 is not on this host", reason="image")
    assert spawn_outcome(None) == "success"
    assert spawn_outcome(missing) == "image_missing"
    assert spawn_outcome(oom) == "out_of_memory"
    assert spawn_outcome(crashed) == "other_error"
    assert spawn_outcome(TimeoutError("server did not answer")) == "timeout"
    assert spawn_outcome(asyncio.CancelledError()) == "timeout"  # JupyterHub's start_timeout
    assert spawn_outcome(web.HTTPError(400, "storage_gb: at most 10")) == "refused"
    assert spawn_outcome(web.HTTPError(403, "project: not a member")) == "refused"
    assert spawn_outcome(web.HTTPError(500)) == "other_error"
    assert spawn_outcome(RuntimeError("docker said no")) == "other_error"


class FakeSpawner:
    def __init__(self, options, error=None):
        self.user_options, self.error = options, error

    @metered_start
    async def start(self):
        if self.error is not None:
            raise self.error
        return "http://10.0.0.2:8888"


@pytest.fixture
def metrics(monkeypatch):
    hub = HubMetrics(catalogue=lambda: CATALOGUE, spawners=list)
    monkeypatch.setattr("bench_spawner.spawn_metrics.HUB_METRICS", hub)
    return hub


async def test_a_start_is_timed_under_its_model_template_and_outcome_whether_it_works_or_not(
    metrics,
):
    ok = FakeSpawner({"resource_model": "small", "image": "vscode"})
    assert await ok.start() == "http://10.0.0.2:8888"
    failing = FakeSpawner({"resource_model": "large", "image": "jupyterlab"}, TimeoutError())
    with pytest.raises(TimeoutError):
        await failing.start()
    s = scrape(metrics)
    name = "benchhub_workspace_spawn_duration_seconds_count"
    assert count(s, name, resource_model="small", template="vscode", outcome="success") == 1
    assert count(s, name, resource_model="large", template="jupyterlab", outcome="timeout") == 1
    assert count(s, name, resource_model="small", template="vscode", outcome="timeout") == 0


async def test_options_a_user_made_up_cannot_create_series(metrics):
    bogus = FakeSpawner({"resource_model": "x" * 60, "image": "<script>"}, web.HTTPError(400))
    with pytest.raises(web.HTTPError):
        await bogus.start()
    s = scrape(metrics)
    name = "benchhub_workspace_spawn_duration_seconds_count"
    assert count(s, name, resource_model="unknown", template="unknown", outcome="refused") == 1
    values = {v for (_, labels), _ in s.items() for _, v in labels}
    assert not any("x" * 60 in v or "<script>" in v for v in values)


def test_every_series_of_the_catalogue_is_at_zero_before_the_first_start():
    s = scrape(HubMetrics(catalogue=lambda: CATALOGUE, spawners=list))
    name = "benchhub_workspace_spawn_duration_seconds_count"
    for model in CATALOGUE[0]:
        for template in CATALOGUE[1]:
            for outcome in ("success", "refused", "image_missing", "out_of_memory", "timeout"):
                assert count(s, name, resource_model=model, template=template, outcome=outcome) == 0
            for mode in ("open", "restricted"):
                running = count(
                    s, "benchhub_workspaces_running", resource_model=model, access_mode=mode
                )
                assert running == 0
    for reason in STOP_REASONS:
        assert count(s, "benchhub_workspace_stops_total", reason=reason) == 0
    assert count(s, "benchhub_checkpoint_duration_seconds_count", kind="stop") == 0
    assert count(s, "benchhub_checkpoint_failures_total", kind="stop", reason="io") == 0


def test_the_catalogue_is_asked_for_again_while_the_hub_does_not_know_it_yet():
    answers = iter([None, CATALOGUE])
    metrics = HubMetrics(catalogue=lambda: next(answers), spawners=list)
    first = scrape(metrics)
    assert not [k for k in first if k[0] == "benchhub_workspace_spawn_duration_seconds_count"]
    second = scrape(metrics)
    assert [k for k in second if k[0] == "benchhub_workspace_spawn_duration_seconds_count"]


def test_the_catalogue_is_read_from_the_hubs_configuration():
    config = Config()
    config.BenchSpawner.resource_models = {"tiny": {"cpus": 0.5, "memory_gb": 1}}
    config.BenchSpawner.default_resource_model = "tiny"
    config.BenchSpawner.image_templates = {
        "jupyterlab": {"image": "benchhub/jupyterlab:latest"},
        "r": {"image": "benchhub/r:latest"},
    }
    assert BenchSpawner.metric_catalogue(config) == (("tiny",), ("jupyterlab", "r"))


def test_running_workspaces_are_counted_when_scraped_from_the_ready_ones():
    def ws(ready, model="small", mode="open"):
        return SimpleNamespace(
            ready=ready, user_options={"resource_model": model, "access_mode": mode}
        )

    spawners = [ws(True), ws(True, mode="restricted"), ws(True), ws(False), ws(True, "gone")]
    s = scrape(HubMetrics(catalogue=lambda: CATALOGUE, spawners=lambda: spawners))
    name = "benchhub_workspaces_running"
    assert count(s, name, resource_model="small", access_mode="open") == 2
    assert count(s, name, resource_model="small", access_mode="restricted") == 1
    assert count(s, name, resource_model="large", access_mode="open") == 0
    assert count(s, name, resource_model="unknown", access_mode="open") == 1  # model removed


# ---- why a run ended ---------------------------------------------------------------------------


def test_the_lifecycle_policys_own_reasons_are_counted_as_its_rules():
    """The reason texts come from the policy itself, as the service sends them to the hub
    ("policy: " before a stop's, nothing before a restart's)."""
    quiet = Activity(started=T0, cpu_share=0.01)
    hour, day = timedelta(hours=1), timedelta(days=1)
    cases = {
        "idle": (Policy("idle", 2 * hour, reminders=()), quiet, T0 + 3 * hour),
        "shutdown_timer": (Policy("after_start", 2 * hour, reminders=()), quiet, T0 + 3 * hour),
        "not_accessed": (
            Policy("none", None, reminders=(), not_accessed_limit=day),
            Activity(started=T0, cpu_share=0.5, last_access=T0),
            T0 + 2 * day,
        ),
        "scheduled_restart": (Policy("none", None, reminders=()), quiet, T0 + 31 * day),
    }
    for expected, (policy, activity, now) in cases.items():
        decision = decide(policy, activity, now)
        sent = ("" if decision.action == "restart" else "policy: ") + decision.reason
        assert requested_stop_reason("service:lifecycle", sent) == expected, sent


def test_people_stopping_workspaces_are_told_apart_from_admins_and_the_hub():
    assert requested_stop_reason(ActionRequest.by(None, "ann").actor) == "other"  # "hub"
    assert requested_stop_reason("ann") == "user"
    assert requested_stop_reason("admin:root") == "admin"
    assert requested_stop_reason("service:checkpoints", "whatever it says") == "other"


def test_runs_that_ended_by_themselves_are_counted_by_the_sentence_the_user_sees():
    assert exit_stop_reason(exit_reason({"OOMKilled": True, "ExitCode": 137}, 8)) == "out_of_memory"
    assert exit_stop_reason(exit_reason({"ExitCode": 0}, 8)) == "exited"
    assert exit_stop_reason(exit_reason({"ExitCode": 137}, 8)) == "exited"  # not flagged OOM
    assert exit_stop_reason(exit_reason({"ExitCode": 2}, 8)) == "exited"
    over = LayerUsage(apparent_bytes=3 * 2**30, allocated_bytes=3 * 2**30, inodes=10)
    for ceiling in (2**30, 2 * 2**30):  # passed the limit; grew past the cleanup allowance
        assert exit_stop_reason(over_limit_reason(over, 2**30, ceiling)) == "disk_limit"
    assert exit_stop_reason("container vanished (removed outside BenchHub)") == "other"


class Journal:
    """The activity mixin's part the metrics rely on (a journal that keeps nothing)."""

    action_request = None

    async def record_activity(self, action, description, fields=None, actor=None):
        pass


class Workspace(SpawnMetrics, Journal):
    pass


async def test_each_run_end_is_counted_once_with_the_reason_of_the_request_or_the_exit(metrics):
    ws = Workspace()
    await ws.record_activity("started", "started by ann")
    ws.action_request = ActionRequest.by(
        SimpleNamespace(kind="service", name="lifecycle"), "ann", "policy: idle for 2 h"
    )
    await ws.record_activity("stopped", "stopped by service:lifecycle: policy: idle for 2 h")
    await ws.record_activity("started", "started by ann")
    await ws.record_activity("errored", "out of memory: limit 0.5 GB")
    # the checkpoint of that dead container failed too: still one run, one end
    await ws.record_activity("errored", "checkpoint on stop failed: disk full")
    await ws.record_activity("started", "started by ann")
    ws.action_request = ActionRequest("admin:root")
    await ws.record_activity("errored", "checkpoint on stop failed: disk full")
    s = scrape(metrics)
    stops = {r: count(s, "benchhub_workspace_stops_total", reason=r) for r in STOP_REASONS}
    assert stops == {r: 0 for r in STOP_REASONS} | {"idle": 1, "out_of_memory": 1, "admin": 1}


async def test_a_start_that_fails_is_a_failed_start_not_a_stop(metrics):
    ws = Workspace()
    ws._metered_starting = True
    await ws.record_activity("errored", "start failed: out of memory: limit 0.5 GB")
    s = scrape(metrics)
    assert sum(count(s, "benchhub_workspace_stops_total", reason=r) for r in STOP_REASONS) == 0


def test_the_stop_checkpoint_the_metrics_time_is_the_one_the_spawner_takes():
    assert SpawnMetrics._checkpoint_on_stop.__name__ in vars(WorkspaceCheckpointing)
    mro = BenchSpawner.__mro__
    assert mro.index(SpawnMetrics) < mro.index(WorkspaceCheckpointing)
