"""The mounts service's Prometheus metrics on a real hub: what an operator's scraper sees
before anything happened, after a real fast mount and its deletion, and after real refusals.

Hub "benchmntm" runs with ``BENCHHUB_METRICS_TOKEN`` (a hub service holding only
``read:metrics``, as docs/metrics.md tells an operator to set up); alice's workspace "lab" is in
project "genomics" with read-write project data (the project is a JupyterHub group with
BenchHub's property, as in test_mounts.py). Scrapes are parsed with prometheus_client's parser.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.docker_cli import cleanup, exec_in
from support.hub_harness import HubProcess
from support.waiting import wait

from benchhub.projects import PROPERTY
from hub_services.mounts.metrics import REFUSAL_REASONS

PREFIX = "benchmntm"
PROJECT = "genomics"
METRICS_TOKEN = "benchhub-test-mount-metrics-token-1a2b3c4d5e6f"
CONTRIBUTOR = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
READ_WRITE = {"upload": True, "download": True, "project_data": "contributor"}
CREATED, DELETED = "benchhub_mounts_created_total", "benchhub_mounts_deleted_total"
REFUSED, FAILED = "benchhub_mounts_refused_total", "benchhub_mounts_failed_total"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    h = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            "BENCHHUB_METRICS_TOKEN": METRICS_TOKEN,
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
        },
    )
    cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


@pytest.fixture(scope="module")
def workspace(hub):
    """alice/lab running in the project, with /data/project/refs/genome.fa."""
    for user in ("alice", "bob", "carol"):
        hub.ensure_user(user)
    r = hub.api("POST", f"/groups/{PROJECT}", {"users": ["alice"]})
    assert r.status_code == 201, r.text
    settings = {PROPERTY: {"owner": "carol", "storage_gb": 1, "members": {"alice": CONTRIBUTOR}}}
    r = hub.api("PUT", f"/groups/{PROJECT}/properties", settings)
    assert r.ok, r.text
    options = {"resource_model": "test-small", "project": PROJECT, "permissions": READ_WRITE}
    hub.start_workspace("alice", "lab", options)
    made = exec_in(
        hub.container_name("alice", "lab"),
        "mkdir -p /data/project/refs && printf '>chr1' > /data/project/refs/genome.fa",
        user="1000",
    )
    assert made.returncode == 0, made.stderr
    return "alice/lab"


def token(hub, user: str) -> str:
    r = hub.api("POST", f"/users/{user}/tokens", {"expires_in": 900})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def mounts_api(hub, method: str, user_token: str, path="alice/lab", **kwargs):
    return requests.request(
        method,
        f"{hub.url}/services/mounts/api/mounts/{path}",
        headers={"Authorization": f"token {user_token}"},
        timeout=120,
        **kwargs,
    )


def scrape(hub) -> dict[tuple[str, tuple], float]:
    r = requests.get(
        f"{hub.url}/services/mounts/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_mount_series_is_there_at_zero_before_anything_happened(hub):
    s = scrape(hub)
    assert value(s, CREATED) == 0 and value(s, DELETED) == 0
    for reason in REFUSAL_REASONS:
        assert value(s, REFUSED, reason=reason) == 0
    for operation in ("create", "delete"):
        assert value(s, FAILED, operation=operation) == 0


def test_the_mount_metrics_are_refused_without_a_token_or_with_one_lacking_read_metrics(hub):
    hub.ensure_user("mia")
    for refused in ({}, {"Authorization": f"token {token(hub, 'mia')}"}):
        r = requests.get(f"{hub.url}/services/mounts/metrics", headers=refused, timeout=30)
        assert r.status_code == 403 and "benchhub_" not in r.text, r.text[:200]


def test_a_real_mount_and_its_deletion_are_counted_once_each(hub, workspace):
    alice = token(hub, "alice")
    before = scrape(hub)
    body = {"mount_path": "/data/mounts/refs", "source": "/data/project/refs"}
    r = mounts_api(hub, "POST", alice, json=body)
    assert r.status_code == 201, r.text
    seen = exec_in(hub.container_name("alice", "lab"), "cat /data/mounts/refs/genome.fa")
    assert seen.stdout == ">chr1"  # the mount is real
    assert value(scrape(hub), CREATED) == value(before, CREATED) + 1
    r = mounts_api(hub, "DELETE", alice, params={"mount_path": "/data/mounts/refs"})
    assert r.status_code == 200 and r.json()["was_mounted"], r.text
    again = mounts_api(hub, "DELETE", alice, params={"mount_path": "/data/mounts/refs"})
    assert again.status_code == 200 and not again.json()["was_mounted"]  # nothing to remove
    after = scrape(hub)
    assert value(after, DELETED) == value(before, DELETED) + 1
    assert all(
        value(after, REFUSED, reason=reason) == value(before, REFUSED, reason=reason)
        for reason in REFUSAL_REASONS
    )


def test_real_refusals_are_counted_by_reason_and_change_nothing(hub, workspace):
    alice, bob = token(hub, "alice"), token(hub, "bob")
    before = scrape(hub)
    body = {"mount_path": "/data/mounts/refs", "source": "/data/project/refs"}
    cases = [
        ("forbidden", bob, "alice/lab", body, 403),  # another user's token
        ("invalid", alice, "alice/lab", {**body, "mount_path": "/etc/refs"}, 400),
        ("not_running", alice, "alice/never", body, 409),  # no such running workspace
    ]
    for reason, caller, path, sent, status in cases:
        r = mounts_api(hub, "POST", caller, path, json=sent)
        assert r.status_code == status, (reason, r.text)
    assert mounts_api(hub, "POST", alice, json=body).status_code == 201
    taken = mounts_api(hub, "POST", alice, json={**body, "mode": "read-only"})
    assert taken.status_code == 409 and taken.json()["field"] == "mount_path", taken.text

    def counted():
        s = scrape(hub)
        grew = {
            r: value(s, REFUSED, reason=r) - value(before, REFUSED, reason=r)
            for r in REFUSAL_REASONS
        }
        return grew if grew == {r: 0 for r in REFUSAL_REASONS} | {
            "forbidden": 1, "invalid": 1, "not_running": 1, "path_taken": 1,
        } else None  # fmt: skip

    assert wait(counted, 10, "each refusal is counted under its reason")
    listed = mounts_api(hub, "GET", alice).json()["mounts"]
    assert [m["mount_path"] for m in listed] == ["/data/mounts/refs"]  # the refusals made none
    assert mounts_api(hub, "DELETE", alice, params={"mount_path": "/data/mounts/refs"}).ok
