"""The usage arithmetic (hub_services.lifecycle.usage) and the report around it
(usage_report): clipping, day and month splits that never change a total, open runs counted
until now, rates, storage in GB-months, and the query's checks and access rule."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_services.lifecycle.usage import (
    DAY,
    GROUPS,
    Rates,
    Run,
    StoragePeriod,
    month_starts,
    usage,
)
from hub_services.lifecycle.usage_report import (
    UsageRefused,
    chart_bars,
    day_labels,
    parse_usage_query,
    rows,
    scope_usage_query,
    to_csv,
)

H = 3600.0
T0 = datetime(2025, 1, 30, tzinfo=UTC).timestamp()  # months of 31, 28 and 31 days follow
FAR = T0 + 400 * DAY


def run(start, stop, user="alice", workspace="ws1", project="", model="small", cpus=2.0):
    return Run(user, workspace, project, model, cpus, 8.0, 0, start, stop)


def hours(totals, field="cpu_hours"):
    return sum(getattr(t, field) for t in totals.values())


def test_a_run_counts_cpus_times_hours_within_the_period_only():
    r = run(T0 - 2 * H, T0 + 3 * H)
    found = usage([r], [], T0, T0 + DAY, FAR, Rates(), "user")
    assert found[("alice",)].hours == pytest.approx(3)
    assert found[("alice",)].cpu_hours == pytest.approx(6)
    assert found[("alice",)].memory_gb_hours == pytest.approx(24)
    assert found[("alice",)].charge == pytest.approx(6)  # CPU-hours by default


def test_a_running_workspace_counts_until_now_and_not_beyond():
    found = usage([run(T0, None)], [], T0, T0 + DAY, T0 + 5 * H, Rates(), "workspace")
    assert found[("alice", "ws1")].hours == pytest.approx(5)


def test_a_run_across_midnight_is_split_between_the_two_days():
    midnight = datetime(2025, 2, 3, tzinfo=UTC).timestamp()
    found = usage([run(midnight - H, midnight + 2 * H)], [], T0, FAR, FAR, Rates(), "day")
    assert {k: v.hours for k, v in found.items()} == {
        ("2025-02-02",): pytest.approx(1),
        ("2025-02-03",): pytest.approx(2),
    }


def test_a_run_across_a_month_end_is_split_between_the_months():
    end = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    found = usage([run(end - 4 * H, end + H)], [], T0, FAR, FAR, Rates(), "month")
    assert found[("2025-02",)].hours == pytest.approx(4)
    assert found[("2025-03",)].hours == pytest.approx(1)


def test_a_resource_model_rate_prices_its_runs_and_others_pay_per_resource():
    rates = Rates(unit="credits", model_hour={"gpu": 12}, cpu_hour=0.5, memory_gb_hour=0.1)
    runs = [run(T0, T0 + H, model="gpu"), run(T0, T0 + H, workspace="ws2", model="")]
    found = usage(runs, [], T0, FAR, FAR, rates, "workspace")
    assert found[("alice", "ws1")].charge == pytest.approx(12)
    assert found[("alice", "ws2")].charge == pytest.approx(2 * 0.5 + 8 * 0.1)


def test_a_gb_held_for_a_whole_month_is_one_gb_month_whatever_the_month_length():
    feb = datetime(2025, 2, 1, tzinfo=UTC).timestamp()
    mar = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    apr = datetime(2025, 4, 1, tzinfo=UTC).timestamp()
    period = StoragePeriod("alice", "ws1", "", 10.0, feb, apr)
    found = usage([], [period], feb, apr, FAR, Rates(storage_gb_month=0.5), "month")
    assert found[("2025-02",)].storage_gb_months == pytest.approx(10)
    assert found[("2025-03",)].storage_gb_months == pytest.approx(10)
    assert found[("2025-03",)].charge == pytest.approx(5)
    half = usage([], [period], feb, feb + 14 * DAY, FAR, Rates(), "user")
    assert half[("alice",)].storage_gb_months == pytest.approx(5)  # 14 of February's 28 days
    assert mar > feb


def test_groups_by_project_put_personal_workspaces_under_the_empty_project():
    runs = [run(T0, T0 + H, project="genomics"), run(T0, T0 + H, workspace="mine")]
    found = usage(runs, [], T0, FAR, FAR, Rates(), "project")
    assert set(found) == {("genomics",), ("",)}


def test_month_starts_bound_every_month_touched():
    starts = month_starts(T0, T0 + 40 * DAY)
    labels = [datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d") for s in starts]
    assert labels == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]


def test_a_bad_grouping_or_reversed_period_is_refused():
    with pytest.raises(ValueError, match="group_by"):
        usage([], [], T0, FAR, FAR, Rates(), "week")
    with pytest.raises(ValueError, match="until"):
        usage([], [], FAR, T0, FAR, Rates(), "user")


# ---- properties ---------------------------------------------------------------------------------

offsets = st.floats(min_value=0, max_value=120 * DAY, allow_nan=False)
durations = st.one_of(st.none(), st.floats(min_value=0, max_value=40 * DAY, allow_nan=False))


@st.composite
def ledgers(draw):
    runs = []
    for i in range(draw(st.integers(0, 8))):
        start = T0 + draw(offsets)
        length = draw(durations)
        cpus = draw(st.sampled_from([0.5, 1.0, 2.0, 16.0]))
        runs.append(run(start, None if length is None else start + length, f"u{i % 3}", cpus=cpus))
    storage = []
    for i in range(draw(st.integers(0, 3))):
        start = T0 + draw(offsets)
        length = draw(durations)
        gb = draw(st.sampled_from([1.0, 10.0, 500.0]))
        storage.append(
            StoragePeriod(f"u{i}", "ws", "", gb, start, None if length is None else start + length)
        )
    return runs, storage


RATES = Rates(model_hour={"small": 3.0}, storage_gb_month=0.25)
FIELDS = ("hours", "cpu_hours", "storage_gb_months", "charge")


@settings(max_examples=200, deadline=None)
@given(ledgers(), offsets, offsets, offsets)
def test_every_grouping_gives_the_same_total(ledger, a, b, now):
    runs, storage = ledger
    since, until = sorted((T0 + a, T0 + b))
    now = T0 + now
    totals = {g: usage(runs, storage, since, until, now, RATES, g) for g in GROUPS}
    for field in FIELDS:
        expected = hours(totals["user"], field)
        for group in GROUPS:
            assert hours(totals[group], field) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(ledgers(), offsets, offsets, offsets, offsets)
def test_two_adjacent_periods_add_up_to_the_whole(ledger, a, b, c, now):
    runs, storage = ledger
    first, middle, last = sorted((T0 + a, T0 + b, T0 + c))
    now = T0 + now
    whole = usage(runs, storage, first, last, now, RATES, "day")
    parts = [
        usage(runs, storage, first, middle, now, RATES, "day"),
        usage(runs, storage, middle, last, now, RATES, "day"),
    ]
    for field in FIELDS:
        assert sum(hours(p, field) for p in parts) == pytest.approx(
            hours(whole, field), rel=1e-9, abs=1e-6
        )


@settings(max_examples=200, deadline=None)
@given(ledgers(), offsets)
def test_runs_count_exactly_their_clipped_length_and_open_ones_until_now(ledger, now):
    runs, _ = ledger
    now = T0 + now
    since, until = T0, T0 + 200 * DAY
    expected = sum(
        max(0.0, min(r.stop if r.stop is not None else now, until, now) - max(r.start, since))
        * r.cpus
        for r in runs
    )
    found = usage(runs, [], since, until, now, Rates(), "workspace")
    assert hours(found) * H == pytest.approx(expected, rel=1e-9, abs=1e-3)
    assert all(t.hours >= 0 for t in found.values())


# ---- the report --------------------------------------------------------------------------------

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
ALICE = {"kind": "user", "name": "alice", "admin": False, "scopes": [], "groups": ["genomics"]}
ADMIN = {"kind": "user", "name": "root", "admin": True, "scopes": [], "groups": []}


def args(**values):
    return {name: [value] for name, value in values.items()}


def test_the_default_period_is_this_month_until_now_per_workspace():
    query = parse_usage_query({}, NOW)
    assert query.since == datetime(2025, 3, 1, tzinfo=UTC)
    assert query.until == NOW
    assert query.group_by == "workspace"


@pytest.mark.parametrize(
    "given, field",
    [
        (args(group_by="week"), "group_by"),
        (args(**{"from": "yesterday"}), "from"),
        (args(to="2025-03-01T00:00:00"), "to"),  # no timezone
        (args(**{"from": "2025-03-02", "to": "2025-03-01"}), "to"),
        (args(format="xml"), "format"),
        (args(colour="red"), "colour"),
        ({"user": ["a", "b"]}, "user"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(given, field):
    with pytest.raises(UsageRefused) as refused:
        parse_usage_query(given, NOW)
    assert refused.value.status == 400
    assert refused.value.message.startswith(f"{field}:")


def test_a_person_sees_their_own_usage_and_their_projects_but_not_another_users():
    query = parse_usage_query({}, NOW)
    assert scope_usage_query(query, ALICE).user == "alice"
    project = parse_usage_query(args(project="genomics"), NOW)
    assert scope_usage_query(project, ALICE).project == "genomics"
    for refused in (args(user="bob"), args(project="physics")):
        with pytest.raises(UsageRefused) as error:
            scope_usage_query(parse_usage_query(refused, NOW), ALICE)
        assert error.value.status == 403


def test_an_admin_sees_everyones_usage():
    assert scope_usage_query(parse_usage_query({}, NOW), ADMIN).user is None
    assert scope_usage_query(parse_usage_query(args(user="bob"), NOW), ADMIN).user == "bob"


def test_csv_has_a_header_with_the_unit_and_defuses_formula_cells():
    found = usage([run(T0, T0 + H, user="=cmd()")], [], T0, FAR, FAR, Rates(), "user")
    text = to_csv(rows(found, "user"), "user", "credits")
    header, line = text.splitlines()
    assert header.endswith("charge (credits)")
    assert line.startswith("'=cmd()") and line.endswith(",2.000000")


def test_the_chart_has_one_bar_per_day_and_the_busiest_day_is_full_height():
    since, until = datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 2, 4, tzinfo=UTC)
    start = since.timestamp() + DAY
    found = usage([run(start, start + 2 * H)], [], since.timestamp(), FAR, FAR, Rates(), "day")
    labels = day_labels(since, until)
    bars, top = chart_bars(found, labels)
    assert [b.label for b in bars] == ["2025-02-01", "2025-02-02", "2025-02-03"]
    assert top == pytest.approx(4)
    assert [round(b.height) for b in bars] == [0, 160, 0]
