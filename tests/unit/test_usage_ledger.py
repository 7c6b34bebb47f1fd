"""The usage ledger's store (hub_services.lifecycle.ledger) on a real SQLite file, and the
evidence rules (run_evidence): a run is one row however often and in whatever order it is
observed, its first recorded end stays, and a run that ended unseen is closed by the best
evidence left (the container's FinishedAt, the activity log, the last time it was seen)."""

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchhub.labels import RESOURCE_MODEL, USER, WORKSPACE, cluster_label
from hub_services.lifecycle.activity_log import ActivityLog
from hub_services.lifecycle.ledger import Ledger, ObservedRun, OpenRun, to_us
from hub_services.lifecycle.run_evidence import (
    belongs,
    docker_time_us,
    event_time_us,
    observed_run,
    run_end,
)

S = 1_000_000  # a second in microseconds
T0 = to_us(datetime(2025, 3, 1, 8, 0, tzinfo=UTC).timestamp())


def docker_time(us: int) -> str:
    return datetime.fromtimestamp(us / S, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'lifecycle.sqlite'}"


@pytest.fixture
def ledger(db_url):
    store = Ledger(db_url)
    yield store
    store.close()


def observed(container="c1", start=T0, kind="workspace", workspace="ws1"):
    return ObservedRun(
        container,
        f"bench-alice--{workspace}",
        kind,
        "alice",
        workspace,
        "small" if kind == "workspace" else "",
        2.0,
        8.0,
        0,
        start,
    )


def test_the_same_run_observed_twice_is_one_row_and_its_project_follows_the_hub(ledger):
    assert ledger.open_run(observed(), "", T0 + S)
    assert not ledger.open_run(observed(), "genomics", T0 + 5 * S)
    [row] = ledger.run_rows()
    assert (row["project"], row["seen_us"], row["stop_us"]) == ("genomics", T0 + 5 * S, None)


def test_two_service_processes_recording_the_same_run_make_one_row(db_url):
    first, second = Ledger(db_url), Ledger(db_url)
    first.open_run(observed(), "", T0)
    second.open_run(observed(), "", T0)
    assert len(first.run_rows()) == 1


def test_the_first_recorded_end_stays_and_a_later_report_changes_nothing(ledger):
    ledger.open_run(observed(), "", T0)
    assert ledger.close_run("c1", T0 + 60 * S, "event") == 1
    assert ledger.close_run("c1", T0 + 90 * S, "journal") == 0
    [row] = ledger.run_rows()
    assert (row["stop_us"], row["stop_source"]) == (T0 + 60 * S, "event")


def test_an_end_before_the_start_is_clamped_to_the_start(ledger):
    ledger.open_run(observed(), "", T0)
    ledger.close_run("c1", T0 - 5 * S, "inspect")
    assert ledger.run_rows()[0]["stop_us"] == T0


def test_a_restarted_container_has_two_runs_and_the_first_ends_where_the_second_began(ledger):
    ledger.open_run(observed(start=T0), "", T0)
    ledger.open_run(observed(start=T0 + 100 * S), "", T0 + 100 * S)
    rows = sorted(ledger.run_rows(), key=lambda r: r["start_us"])
    assert [(r["stop_us"], r["stop_source"]) for r in rows] == [
        (T0 + 100 * S, "restarted"),
        (None, ""),
    ]


def test_a_run_closed_by_an_event_is_not_reopened_by_a_late_reconciliation(ledger):
    ledger.open_run(observed(), "", T0)
    ledger.close_run("c1", T0 + 10 * S, "event")
    assert not ledger.open_run(observed(), "", T0 + 20 * S)  # inspected before it died
    assert ledger.open_runs() == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.permutations(["open-a", "open-a-late", "die-a", "open-b", "die-b", "die-b-late"]))
def test_evidence_in_any_order_records_each_run_once_with_its_first_end(tmp_path_factory, order):
    """Two runs of one container (a, then a restart b): events and reconciliations that
    report them in any order never make a third row or a second end."""
    path = tmp_path_factory.mktemp("ledger") / "l.sqlite"
    store = Ledger(f"sqlite:///{path}")
    a, b = T0, T0 + 1000 * S
    steps = {
        "open-a": lambda: store.open_run(observed(start=a), "", a),
        "open-a-late": lambda: store.open_run(observed(start=a), "", a + 500 * S),
        "die-a": lambda: store.close_run("c1", a + 600 * S, "event"),
        "open-b": lambda: store.open_run(observed(start=b), "", b),
        "die-b": lambda: store.close_run("c1", b + 50 * S, "event"),
        "die-b-late": lambda: store.close_run("c1", b + 70 * S, "inspect"),
    }
    for step in order:
        steps[step]()
    rows = store.run_rows()
    assert len({(r["container_id"], r["start_us"]) for r in rows}) == len(rows) <= 2
    for row in rows:
        assert row["stop_us"] is None or row["stop_us"] >= row["start_us"]
    store.close()


def test_the_activity_log_gives_the_first_stop_of_a_workspace_after_a_run_began(db_url, ledger):
    log = ActivityLog(db_url)

    def entry(action, seconds, workspace="ws1"):
        return {
            "uid": uuid.uuid4().hex,
            "at": datetime.fromtimestamp((T0 + seconds * S) / S, UTC),
            "user": "alice",
            "workspace": workspace,
            "actor": "alice",
            "action": action,
            "description": action,
            "fields": {},
        }

    log.append_many(
        [
            entry("stopped", -50),
            entry("started", 1),
            entry("stopped", 70, "other"),
            entry("errored", 90),
            entry("stopped", 120),
        ]
    )
    assert ledger.journal_time("alice", "ws1", ("stopped", "errored"), T0) == T0 + 90 * S
    assert ledger.journal_time("alice", "ws1", ("stopped",), T0 + 200 * S) is None
    log.close()


def test_storage_periods_change_only_when_the_size_or_project_does(ledger):
    assert ledger.set_storage("alice", "ws1", "", 10.0, T0)
    assert not ledger.set_storage("alice", "ws1", "", 10.0, T0 + S)
    assert ledger.set_storage("alice", "ws1", "", 20.0, T0 + 100 * S)
    ledger.end_storage("alice", "ws1", T0 + 200 * S)
    periods = sorted(ledger.storage(0, T0 + 1000 * S), key=lambda p: p.start)
    assert [(p.gb, p.start, p.stop) for p in periods] == [
        (10.0, T0 / S, T0 / S + 100),
        (20.0, T0 / S + 100, T0 / S + 200),
    ]
    assert ledger.storage_now() == {}


def test_queries_return_only_runs_overlapping_the_period_for_the_named_user(ledger):
    ledger.open_run(observed("c1", T0), "", T0)
    ledger.close_run("c1", T0 + 10 * S, "event")
    ledger.open_run(observed("c2", T0 + 100 * S), "", T0)
    assert len(ledger.runs(T0 + 20 * S, T0 + 200 * S)) == 1  # c1 ended before
    assert len(ledger.runs(0, T0 + 200 * S, user="alice")) == 2
    assert ledger.runs(0, T0 + 200 * S, user="bob") == []


# ---- what the engine shows ----------------------------------------------------------------------


def inspect(running=True, started=T0, finished=None, labels=None, host=None):
    return {
        "Id": "c1",
        "Name": "/bench-alice--ws1",
        "State": {
            "Running": running,
            "StartedAt": docker_time(started),
            "FinishedAt": docker_time(finished) if finished else "0001-01-01T00:00:00Z",
        },
        "Config": {
            "Labels": labels or {USER: "alice", WORKSPACE: "ws1", RESOURCE_MODEL: "standard-small"}
        },
        "HostConfig": host
        or {"CpuQuota": 200_000, "CpuPeriod": 100_000, "Memory": 8 * 1024**3, "NanoCpus": 0},
    }


def test_a_workspace_run_carries_its_model_and_its_container_limits():
    run = observed_run(inspect())
    assert (run.kind, run.user, run.workspace, run.resource_model) == (
        "workspace",
        "alice",
        "ws1",
        "standard-small",
    )
    assert (run.cpus, run.memory_gb, run.gpus, run.start_us) == (2.0, 8.0, 0, T0)


def test_a_cluster_member_is_attributed_to_its_workspace_with_its_gpus():
    labels = {
        cluster_label("prefix"): "bench",
        cluster_label("id"): "k3x9",
        cluster_label("user"): "alice",
        cluster_label("workspace"): "ws1",
        cluster_label("role"): "member",
    }
    host = {
        "NanoCpus": 4_000_000_000,
        "Memory": 16 * 1024**3,
        "DeviceRequests": [{"Count": 2, "Capabilities": [["gpu"]]}],
    }
    run = observed_run(inspect(labels=labels, host=host))
    assert (run.kind, run.user, run.workspace, run.resource_model) == (
        "cluster-member",
        "alice",
        "ws1",
        "",
    )
    assert (run.cpus, run.memory_gb, run.gpus) == (4.0, 16.0, 2)
    assert belongs(labels, ["/bench-cluster-k3x9-m1"], "bench")
    assert not belongs(labels, ["/bench-cluster-k3x9-m1"], "other")


def test_only_this_hubs_workspaces_belong():
    labels = {USER: "alice", WORKSPACE: "ws1"}
    assert belongs(labels, ["/bench-alice--ws1"], "bench")
    assert not belongs(labels, ["/benchtest-alice--ws1"], "bench")
    assert not belongs({}, ["/bench-anything"], "bench")


def test_docker_times_keep_microseconds_and_the_zero_time_is_none():
    assert docker_time_us("2025-03-01T08:00:00.123456789Z") == T0 + 123_456
    assert docker_time_us("0001-01-01T00:00:00Z") is None
    assert event_time_us({"timeNano": (T0 + 5) * 1000 + 999}) == T0 + 5
    assert event_time_us({"time": T0 // S}) == T0


OPEN = OpenRun("c1", T0, T0 + 300 * S, "workspace", "alice", "ws1", "")


def test_a_running_container_has_not_ended():
    assert run_end(OPEN, inspect(), None) is None


def test_a_stopped_container_ended_at_its_finished_time():
    assert run_end(OPEN, inspect(False, finished=T0 + 400 * S), T0 + 999 * S) == (
        T0 + 400 * S,
        "inspect",
    )


def test_a_container_restarted_unseen_ended_its_old_run_when_it_finished_then():
    restarted = inspect(started=T0 + 500 * S, finished=T0 + 498 * S)
    assert run_end(OPEN, restarted, None) == (T0 + 498 * S, "restarted")
    odd = inspect(started=T0 + 500 * S, finished=None)
    assert run_end(OPEN, odd, None) == (T0 + 500 * S, "restarted")


def test_a_removed_workspace_container_ended_when_the_activity_log_says_it_stopped():
    assert run_end(OPEN, None, T0 + 450 * S) == (T0 + 450 * S, "journal")


def test_a_removed_container_without_a_log_entry_ended_when_last_seen_running():
    assert run_end(OPEN, None, None) == (T0 + 300 * S, "last-seen")
    member = OpenRun("c1", T0, T0 + 300 * S, "cluster-member", "alice", "ws1", "")
    assert run_end(member, None, T0 + 450 * S) == (T0 + 300 * S, "last-seen")


# ---- the query summed in the database equals the arithmetic over every run -----------------------

DAY_S = 86_400


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 90 * DAY_S),  # start, seconds after T0
            st.one_of(st.none(), st.integers(1, 20 * DAY_S)),  # length (None: running)
            st.sampled_from(["small", "gpu", ""]),
            st.sampled_from(["alice", "bob"]),
        ),
        max_size=12,
    ),
    st.integers(0, 100 * DAY_S),
    st.integers(0, 100 * DAY_S),
    st.integers(0, 120 * DAY_S),
    st.sampled_from(["user", "workspace", "project", "day", "month"]),
)
def test_the_query_summed_in_the_database_equals_the_arithmetic_over_every_run(
    tmp_path_factory, runs, a, b, now, group_by
):
    from hub_services.lifecycle.usage import Rates, usage
    from hub_services.lifecycle.usage_api import compute
    from hub_services.lifecycle.usage_report import UsageQuery

    path = tmp_path_factory.mktemp("ledger") / "l.sqlite"
    store = Ledger(f"sqlite:///{path}")
    t0 = T0 // S
    for i, (start, length, model, user) in enumerate(runs):
        run = ObservedRun(
            f"c{i}",
            "n",
            "workspace",
            user,
            f"ws{i % 3}",
            model,
            2.0,
            8.0,
            1 if model == "gpu" else 0,
            (t0 + start) * S,
        )
        store.open_run(run, "p" if i % 2 else "", (t0 + start) * S)
        if length is not None:
            store.close_run(f"c{i}", (t0 + start + length) * S, "event")
    store.set_storage("alice", "ws0", "", 10.0, T0)
    since, until = sorted((t0 + a, t0 + b + 1))
    rates = Rates(model_hour={"gpu": 7.0}, memory_gb_hour=0.25, storage_gb_month=0.5)
    query = UsageQuery(
        datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC), group_by
    )
    fast = compute(store, rates, query, t0 + now)
    slow = usage(
        store.runs(0, 2**62), store.storage(0, 2**62), since, until, t0 + now, rates, group_by
    )
    assert set(fast) == set(slow)
    for key, found in slow.items():
        for field, value in vars(found).items():
            assert getattr(fast[key], field) == pytest.approx(value, rel=1e-9, abs=1e-6), key
    store.close()
