"""Prometheus metrics on a real hub: what an operator's scraper sees before and after real
starts, stops, refusals, an out-of-memory kill, a lifecycle timer stop and refused egress.

Hub "benchmetrics" runs with ``BENCHHUB_METRICS_TOKEN`` (jupyterhub_config.py then adds a hub
service holding that token and only the scope ``read:metrics``, as docs/metrics.md tells an
operator to do), an option "hour" of 4 s (so ``auto_shutdown_hours=1`` stops a workspace 4 s
after its start) and periodic checkpoints every 4 s. Counters are compared before and after
each action, so the tests do not depend on one another's order beyond the first one (which
needs a hub on which nothing happened yet).
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.docker_cli import cleanup, exec_in
from support.hub_harness import TEST_MODELS, HubProcess
from support.waiting import wait

PREFIX = "benchmetrics"
METRICS_TOKEN = "benchhub-test-metrics-token-8c7d6e5f4a3b2c1d"
HOUR_S = 4
TEMPLATES = ("jupyterlab", "missing")  # the harness's test catalogue
SERVICES = ("lifecycle", "checkpoints", "egress", "clusters")
SPAWNS = "benchhub_workspace_spawn_duration_seconds_count"
STOPS = "benchhub_workspace_stops_total"
RUNNING = "benchhub_workspaces_running"
STOP_CHECKPOINTS = "benchhub_checkpoint_duration_seconds_count"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    env = {
        "BENCHHUB_METRICS_TOKEN": METRICS_TOKEN,
        "BENCHHUB_LIFECYCLE_HOUR": str(HOUR_S),
        "BENCHHUB_CHECKPOINT_INTERVAL": "4",
        "BENCHHUB_CHECKPOINT_TICK": "1",
        "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
    }
    h = HubProcess(workdir, prefix=PREFIX, env_overrides=env)
    cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


def fetch(hub, path: str, token: str | None = METRICS_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{hub.url}{path}", headers=headers, timeout=30)


def scrape(hub, path: str = "/hub/metrics") -> dict[tuple[str, tuple], float]:
    """One scrape as Prometheus parses it: {(sample name, sorted labels): value}."""
    r = fetch(hub, path)
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def user_token(hub, user: str) -> str:
    hub.ensure_user(user)
    r = hub.api("POST", f"/users/{user}/tokens", {"expires_in": 900})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_every_series_is_there_at_zero_before_anything_happened(hub):
    s = scrape(hub)
    for model in TEST_MODELS:
        for template in TEMPLATES:
            for outcome in ("success", "refused", "image_missing", "out_of_memory", "timeout"):
                labels = {"resource_model": model, "template": template, "outcome": outcome}
                assert value(s, SPAWNS, **labels) == 0
        for mode in ("open", "restricted"):
            assert value(s, RUNNING, resource_model=model, access_mode=mode) == 0
    for reason in ("idle", "shutdown_timer", "out_of_memory", "admin", "user", "other"):
        assert value(s, STOPS, reason=reason) == 0
    assert value(s, STOP_CHECKPOINTS, kind="stop") == 0
    assert value(s, "jupyterhub_running_servers") == 0  # JupyterHub's own, on the same page
    expected = {
        "lifecycle": ("benchhub_lifecycle_stops_requested_total", {"reason": "shutdown_timer"}),
        "checkpoints": ("benchhub_checkpoint_failures_total", {"kind": "periodic", "reason": "io"}),
        "egress": ("benchhub_egress_refusals_total", {"protocol": "https"}),
        "clusters": ("benchhub_cluster_members", {"state": "busy"}),
    }
    for service, (name, labels) in expected.items():
        assert value(scrape(hub, f"/services/{service}/metrics"), name, **labels) == 0


def test_metrics_are_refused_without_a_token_or_with_one_lacking_read_metrics(hub):
    token = user_token(hub, "mia")  # a person's own token: uses every service, not metrics
    for path in ["/hub/metrics", *(f"/services/{s}/metrics" for s in SERVICES)]:
        for refused in (None, token):
            r = fetch(hub, path, refused)
            assert r.status_code == 403, (path, r.status_code, r.text[:200])
            assert "benchhub_" not in r.text
    assert "read:metrics" in fetch(hub, "/services/lifecycle/metrics", token).json()["message"]
    assert fetch(hub, "/services/lifecycle/api/activity", token).status_code == 200  # legit use


def test_a_start_and_the_owners_stop_are_counted_with_model_template_and_reason(hub):
    token = user_token(hub, "noa")
    labels = {"resource_model": "test-small", "template": "jupyterlab"}
    before = scrape(hub)
    hub.start_workspace("noa", "lab", {"resource_model": "test-small", "storage_gb": 1})
    running = scrape(hub)
    assert value(running, SPAWNS, **labels, outcome="success") == (
        value(before, SPAWNS, **labels, outcome="success") + 1
    )
    assert value(running, RUNNING, resource_model="test-small", access_mode="open") == 1
    r = requests.delete(
        f"{hub.url}/hub/api/users/noa/servers/lab",
        headers={"Authorization": f"token {token}"},  # the owner stops it
        timeout=60,
    )
    assert r.status_code in (202, 204), r.text
    hub.wait_for_stopped("noa", "lab")
    after = wait(
        lambda: scrape(hub),
        30,
        "the stop is counted",
        until=lambda s: value(s, STOPS, reason="user") == value(before, STOPS, reason="user") + 1,
    )
    assert value(after, RUNNING, resource_model="test-small", access_mode="open") == 0
    stop_checkpoints = value(before, STOP_CHECKPOINTS, kind="stop")
    assert value(after, STOP_CHECKPOINTS, kind="stop") == stop_checkpoints + 1
    others = [r for r in ("idle", "out_of_memory", "admin", "other", "exited")]
    assert all(value(after, STOPS, reason=r) == value(before, STOPS, reason=r) for r in others)


def spawn_counts(samples: dict) -> dict:
    return {k: v for k, v in samples.items() if k[0] == SPAWNS}


def test_options_refused_before_a_start_change_no_start_series(hub):
    hub.ensure_user("ole")
    before = spawn_counts(scrape(hub))
    for bad in ({"resource_model": "no-such-model"}, {"storage_gb": "lots"}, {"colour": "red"}):
        r = hub.api("POST", "/users/ole/servers/bad", {"user_options": bad})
        assert r.status_code == 400, r.text
    assert spawn_counts(scrape(hub)) == before  # nothing was started, nothing is counted


def test_a_template_whose_image_is_missing_is_counted_as_image_missing(hub):
    hub.ensure_user("pia")
    labels = {"resource_model": "test-small", "template": "missing", "outcome": "image_missing"}
    before = value(scrape(hub), SPAWNS, **labels)
    options = {"image": "missing", "resource_model": "test-small", "storage_gb": 1}
    r = hub.api("POST", "/users/pia/servers/nope", {"user_options": options})
    assert r.status_code in (201, 202, 400, 500), r.text
    ws = hub.wait_for_stopped("pia", "nope")
    assert ws["reason"].startswith("image missing"), ws
    wait(
        lambda: value(scrape(hub), SPAWNS, **labels),
        30,
        "the failed start is counted",
        until=lambda n: n == before + 1,
    )


def test_an_out_of_memory_kill_is_counted_as_an_out_of_memory_stop(hub):
    hub.ensure_user("oli")
    before = value(scrape(hub), STOPS, reason="out_of_memory")
    hub.start_workspace("oli", "oom", {"resource_model": "test-small", "storage_gb": 1})
    # as tests/integration/test_workspaces.py: the server volunteers as the OOM victim
    exec_in(
        hub.container_name("oli", "oom"),
        "for p in $(ps -o pid= --ppid 1); do echo 1000 > /proc/$p/oom_score_adj; done;"
        " python3 -c 'a = bytearray(900 * 1024 * 1024)'",
    )
    ws = hub.wait_for("oli", "oom", "errored", timeout=30)
    assert ws["reason"].startswith("out of memory")
    s = wait(
        lambda: scrape(hub),
        30,
        "the OOM stop is counted",
        until=lambda s: value(s, STOPS, reason="out_of_memory") == before + 1,
    )
    assert value(s, RUNNING, resource_model="test-small", access_mode="open") == 0


def test_the_lifecycle_timer_stop_is_counted_by_the_service_and_the_hub(hub):
    hub.ensure_user("tim")
    lifecycle = "/services/lifecycle/metrics"
    asked_before = value(
        scrape(hub, lifecycle), "benchhub_lifecycle_stops_requested_total", reason="shutdown_timer"
    )
    stops_before = value(scrape(hub), STOPS, reason="shutdown_timer")
    options = {"auto_shutdown_hours": 1, "reminder_hours": [], "storage_gb": 1}
    hub.start_workspace("tim", "timed", options)  # stopped HOUR_S seconds after its start
    hub.wait_for_stopped("tim", "timed", timeout=60)
    wait(
        lambda: value(scrape(hub), STOPS, reason="shutdown_timer"),
        30,
        "the hub counts the timer's stop",
        until=lambda n: n == stops_before + 1,
    )
    asked = value(
        scrape(hub, lifecycle), "benchhub_lifecycle_stops_requested_total", reason="shutdown_timer"
    )
    assert asked == asked_before + 1


def test_a_restricted_workspaces_refused_requests_and_checkpoints_are_counted(hub):
    hub.ensure_user("rex")
    egress = "/services/egress/metrics"
    refusals = "benchhub_egress_refusals_total"
    before = scrape(hub, egress)
    periodic_before = value(
        scrape(hub, "/services/checkpoints/metrics"), STOP_CHECKPOINTS, kind="periodic"
    )
    options = {"access_mode": "restricted", "whitelist": ["allowed.test"], "storage_gb": 1}
    hub.start_workspace("rex", "closed", options)
    s = scrape(hub)
    assert value(s, RUNNING, resource_model="test-small", access_mode="restricted") == 1
    name = hub.container_name("rex", "closed")
    for url in ("http://other.test/", "https://other.test/"):
        curl = exec_in(name, f'curl -sk -m 5 -o /dev/null -w "%{{http_code}}" {url}')
        assert curl.stdout.strip() in ("403", "000"), curl.stdout  # refused by the proxy
    counted = wait(
        lambda: scrape(hub, egress),
        30,
        "the egress service counts both refusals",
        until=lambda s: all(
            value(s, refusals, protocol=p) >= value(before, refusals, protocol=p) + 1
            for p in ("http", "https")
        ),
    )
    assert value(counted, refusals, protocol="http") == value(before, refusals, protocol="http") + 1
    wait(
        lambda: value(
            scrape(hub, "/services/checkpoints/metrics"), STOP_CHECKPOINTS, kind="periodic"
        ),
        60,
        "a periodic checkpoint of the running workspace is counted",
        until=lambda n: n > periodic_before,
    )
    hub.stop_workspace("rex", "closed")
