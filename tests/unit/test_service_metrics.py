"""Each hub service's ``/metrics``, served by its real app (``make_app``) on a real tornado
server, and the events each service counts.

Only the hub's answer about a token is stubbed: ``MetricsHandler.hub_auth`` resolves the
``Authorization`` header from a fixed table instead of asking the hub (JupyterHub's own
``HubOAuthenticated.check_hub_user`` then applies the scope rule as in production; the real
hub answers in tests/integration/test_metrics.py).
"""

from __future__ import annotations

import json
import os

import pytest
from jupyterhub.services.auth import check_scopes
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tornado import httpserver
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.testing import bind_unused_port

from benchhub.checkpoint_metrics import CheckpointMetrics, failure_reason, stored_bytes
from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.errors import CheckpointCorrupt
from benchhub.checkpoints.store import CheckpointStore
from benchhub.hub_client import HubClient
from benchhub.service_metrics import MetricsHandler, zeroed
from hub_services.checkpoints.service import CheckpointService, NamedQuotaExceeded, NotRunning
from hub_services.checkpoints.web import make_app as checkpoints_app
from hub_services.clusters.metrics import ClusterMetrics
from hub_services.clusters.service import ClusterController
from hub_services.clusters.state import ClusterRecord, MemberRecord
from hub_services.clusters.web import make_app as clusters_app
from hub_services.egress.metrics import EgressMetrics
from hub_services.egress.service import EgressService
from hub_services.egress.web import make_app as egress_app
from hub_services.lifecycle.activity_log import ActivityLog
from hub_services.lifecycle.cycles import CycleStore
from hub_services.lifecycle.service import LifecycleService
from hub_services.lifecycle.web import make_app as lifecycle_app

TOKENS = {
    "scraper": {"kind": "service", "name": "prometheus", "scopes": ["read:metrics"]},
    # a person who may use the service (its access scope) but not read metrics
    "person": {
        "kind": "user",
        "name": "ann",
        "admin": False,
        "groups": [],
        "scopes": ["access:services", "read:users!user=ann"],
    },
}


class TableHubAuth:
    """What HubAuth answers about a token, from :data:`TOKENS` (no hub asked)."""

    login_url = ""
    access_scopes: set[str] = set()

    def get_user(self, handler):
        header = handler.request.headers.get("Authorization", "")
        model = TOKENS.get(header.removeprefix("token ").strip())
        return dict(model) if model else None

    def _persist_url_token_if_set(self, handler):
        pass

    def check_scopes(self, required, user):
        return check_scopes(required, set(user["scopes"]))


@pytest.fixture(autouse=True)
def _stubbed_hub(monkeypatch):
    monkeypatch.setattr(MetricsHandler, "_hub_auth", TableHubAuth())


def _lifecycle(tmp_path):
    url = f"sqlite:///{tmp_path / 'lifecycle.sqlite'}"
    service = LifecycleService(activity_log=ActivityLog(url), cycles=CycleStore(url))
    return service, lifecycle_app(service, "/services/lifecycle/", b"0" * 32)


def _checkpoints(tmp_path):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"))
    service = CheckpointService(
        store=store, storage_root=str(tmp_path / "root"), hub=HubClient("http://127.0.0.1:1", "x")
    )
    return service, checkpoints_app(service, "/services/checkpoints/", b"0" * 32)


def _egress(tmp_path):
    service = EgressService(config_dir=str(tmp_path / "egress"))
    return service, egress_app(service, "/services/egress/", b"0" * 32)


def _clusters(tmp_path):
    controller = ClusterController(state_dir=str(tmp_path / "clusters"), network_mtu=1400)
    metrics = ClusterMetrics(controller)
    app = clusters_app(
        controller, "/services/clusters/", b"0" * 32, "standard-small", metrics.registry
    )
    return controller, app


# every series each service's operator graphs, present before anything happened
ZEROS = {
    "lifecycle": (
        _lifecycle,
        {
            ("benchhub_lifecycle_stops_requested_total", (("reason", r),))
            for r in ("idle", "shutdown_timer", "not_accessed", "scheduled_restart", "other")
        },
    ),
    "checkpoints": (
        _checkpoints,
        {
            ("benchhub_checkpoint_duration_seconds_count", (("kind", k),))
            for k in ("periodic", "on_request", "named")
        }
        | {
            ("benchhub_checkpoint_failures_total", (("kind", "periodic"), ("reason", r)))
            for r in ("quota", "corrupt", "io", "store", "other")
        }
        | {("benchhub_checkpoint_store_bytes", ())},
    ),
    "egress": (
        _egress,
        {("benchhub_egress_refusals_total", (("protocol", p),)) for p in ("https", "http")},
    ),
    "clusters": (
        _clusters,
        {
            ("benchhub_cluster_scaler_decisions_total", (("decision", d),))
            for d in ("up", "down", "hold")
        }
        | {
            ("benchhub_cluster_members", (("state", s),))
            for s in ("starting", "idle", "busy", "draining", "unreachable")
        }
        | {
            ("benchhub_clusters", (("status", s),))
            for s in ("starting", "running", "stopping", "errored")
        },
    ),
}


async def get(url: str, token: str | None = None):
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        return await AsyncHTTPClient().fetch(url, headers=headers, follow_redirects=False)
    except HTTPClientError as error:
        return error.response


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(params=sorted(ZEROS))
async def served(request, tmp_path):
    """``(service name, service object, metrics URL)`` of one service's app on a real server."""
    name = request.param
    service, app = ZEROS[name][0](tmp_path)
    sock, port = bind_unused_port()
    http = httpserver.HTTPServer(app)
    http.add_sockets([sock])
    yield name, service, f"http://127.0.0.1:{port}/services/{name}/metrics"
    http.stop()
    await http.close_all_connections()


async def test_every_services_metrics_are_all_there_at_zero_for_a_monitoring_token(served):
    name, _, url = served
    response = await get(url, "scraper")
    assert response.code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST  # as /hub/metrics
    found = samples(response.body.decode())
    expected = ZEROS[name][1]
    assert expected <= set(found), expected - set(found)
    assert all(found[key] == 0 for key in expected)


async def test_metrics_without_credentials_are_a_403_saying_what_to_send(served):
    _, _, url = served
    response = await get(url)
    assert response.code == 403
    assert "no credentials" in json.loads(response.body)["message"]
    assert b"benchhub_" not in response.body


async def test_a_person_allowed_to_use_the_service_may_not_read_its_metrics(served):
    _, _, url = served
    response = await get(url, "person")
    assert response.code == 403
    message = json.loads(response.body)["message"]
    assert "user ann may not use this service: it needs read:metrics" == message
    assert b"benchhub_" not in response.body


# ---- what each service counts ------------------------------------------------------------------


def test_lifecycle_counts_the_stops_it_asks_for_by_rule(tmp_path):
    service, _ = _lifecycle(tmp_path)
    service.metrics.stop_requested("policy: idle for 2 h")
    service.metrics.stop_requested("security restart: 30 days since start")
    service.metrics.stop_requested("something new")
    counter = service.metrics.stops_requested
    assert counter.labels("idle")._value.get() == 1
    assert counter.labels("scheduled_restart")._value.get() == 1
    assert counter.labels("other")._value.get() == 1


async def test_a_requested_checkpoint_is_timed_and_a_refusal_is_not_a_failure():
    metrics = CheckpointMetrics()

    async def taken():
        return {"new_stored_bytes": 4096}

    async def refused():
        raise NotRunning("workspace 'lab' is not running")

    async def over_quota():
        raise NamedQuotaExceeded("ann's named checkpoints would keep 21 GB; the quota is 20 GB")

    assert await metrics.measure("on_request", taken(), (NotRunning,)) == {"new_stored_bytes": 4096}
    with pytest.raises(NotRunning):
        await metrics.measure("on_request", refused(), (NotRunning,))
    with pytest.raises(NamedQuotaExceeded):
        await metrics.measure("named", over_quota(), (NotRunning,))
    text = samples(generate(metrics))
    assert text[("benchhub_checkpoint_duration_seconds_count", (("kind", "on_request"),))] == 1
    assert (
        text[("benchhub_checkpoint_failures_total", (("kind", "named"), ("reason", "quota")))] == 1
    )
    assert sum(v for (n, _), v in text.items() if n == "benchhub_checkpoint_failures_total") == 1
    assert text[("benchhub_checkpoint_store_bytes", ())] == 4096


def generate(metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_checkpoint_failures_are_counted_by_what_went_wrong():
    assert (
        failure_reason(CheckpointCorrupt("ann.lab.aaaaaa", "1", "home/x", "ab12", "missing"))
        == "corrupt"
    )
    assert failure_reason(OSError(28, "No space left on device")) == "io"
    assert failure_reason(NamedQuotaExceeded("over")) == "quota"
    assert failure_reason(ValueError("?")) == "other"


def test_the_store_size_is_what_the_store_holds(tmp_path):
    backend = LocalDirectoryBackend(tmp_path / "store")
    backend.put("chunks/ab/cdef", b"x" * 1000)
    backend.put("manifests/ann.lab.aaaaaa/1.json", b"{}")
    assert stored_bytes(backend) == 1002


def test_egress_counts_the_refusals_squid_logs_across_a_rotation(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir()
    metrics = EgressMetrics(logs)
    log = logs / "access.log"
    log.write_text("1700000000.000 10.213.0.5 TCP_DENIED/403 CONNECT old.example:443\n")
    assert metrics.read_access_log() == 0  # a (re)started service starts at the end
    with open(log, "a") as f:
        f.write("1700000001.000 10.213.0.5 TCP_DENIED/403 CONNECT pypi.example:443\n")
        f.write("1700000002.000 10.213.0.5 TCP_TUNNEL/200 CONNECT allowed.example:443\n")
        f.write("1700000003.000 10.213.0.5 TCP_DENIED/403 GET http://x.example/a\n")
        f.write("1700000004.000 10.213.0.5 TCP_DENIED/403 CONNECT half")  # still being written
    assert metrics.read_access_log() == 2
    with open(log, "a") as f:
        f.write(".example:443\n")
    os.replace(log, logs / "access.log.0")  # squid rotates
    log.write_text("1700000005.000 10.213.0.6 TCP_DENIED/403 CONNECT new.example:443\n")
    assert metrics.read_access_log() == 2  # the rest of the rotated log, then the new one
    counter = metrics.refusals
    assert counter.labels("https")._value.get() == 3
    assert counter.labels("http")._value.get() == 1


def test_egress_does_not_follow_a_link_put_where_the_log_should_be(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("1700000001.000 10.213.0.5 TCP_DENIED/403 CONNECT x.example:443\n" * 5)
    metrics = EgressMetrics(logs)
    (logs / "access.log").symlink_to(secret)
    assert metrics.read_access_log() == 0
    assert metrics.read_access_log() == 0


def test_clusters_count_members_by_state_and_scaler_decisions(tmp_path):
    controller = ClusterController(state_dir=str(tmp_path / "clusters"), network_mtu=1400)
    metrics = ClusterMetrics(controller)
    rec = ClusterRecord(
        user="ida",
        workspace="ws",
        cluster_id="abc123",
        settings={"type": "static", "members": 2},
        subnet="10.231.0.0/26",
        workspace_container="c0ffee",
        workspace_address="10.231.0.3",
        internal=False,
        model={"name": "test-small"},
        data_dir=str(tmp_path),
        created_at="2026-01-31T18:00:00+00:00",
        status="running",
    )
    rec.members = {
        n: MemberRecord(n, "10.231.0.9", "2026-01-31T18:00:00+00:00") for n in ("m1", "m2")
    }
    controller.records[rec.key] = rec
    controller.views[rec.key] = {"members": [{"state": "busy"}, {"state": "starting"}]}
    for action in ("scale_up", "none", "none", "drain", "remove"):
        metrics.decided(action)
    found = samples(generate(metrics))
    assert found[("benchhub_cluster_members", (("state", "busy"),))] == 1
    assert found[("benchhub_cluster_members", (("state", "starting"),))] == 1
    assert found[("benchhub_cluster_members", (("state", "idle"),))] == 0
    assert found[("benchhub_clusters", (("status", "running"),))] == 1
    decisions = {
        d: found[("benchhub_cluster_scaler_decisions_total", (("decision", d),))]
        for d in ("up", "down", "hold")
    }
    assert decisions == {"up": 1, "down": 2, "hold": 2}


def test_zeroed_makes_every_combination():
    counter = zeroed(
        Counter("x_total", "x", ["a", "b"], registry=None), ("1", "2"), ("p", "q", "r")
    )
    assert len(list(counter.collect())[0].samples) == 2 * 3 * 2  # _total and _created each
