"""The run-time policy options (automatic shutdown, keep-until, reminders) have one parser.

The hub's schema checks them when a workspace starts or is edited; the lifecycle service reads
them from the running workspace's options to decide when to stop it. Both go through
``benchhub.workspace_spec``'s field parsers, so an option the hub accepted means the same to the
service, and an option the hub refuses is one the service refuses to act on, in the same words.
"""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from benchhub.workspace_spec import (
    OptionsError,
    OptionsSchema,
    RunTimePolicy,
    parse_run_time_policy,
)
from hub_services.lifecycle.policy import Policy, PolicyUnreadable

H = timedelta(hours=1)
SCHEMA = OptionsSchema(
    resource_models=load_catalog(DEFAULT_RESOURCE_MODELS),
    image_templates={"jupyterlab": "JupyterLab"},
    default_image="jupyterlab",
)
SETTINGS = Policy("none", None)  # the service's own settings: restart, not-accessed, CPU share

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
hours = st.one_of(
    st.integers(-2, 9000),
    st.integers(0, 48).map(str),
    st.floats(allow_nan=True),
    st.sampled_from([None, True, "a day", " 8 ", 8.0, "+3", [4]]),
)
modes = st.sampled_from(["after_start", "idle", "none", "sometimes", "", 1, None])
times = st.one_of(
    st.datetimes(timezones=offsets).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # without a timezone
    st.sampled_from(["", None, "tomorrow", "2025-03-02T18:00:00Z", 1740938400]),
)
reminders = st.one_of(
    st.lists(st.one_of(st.integers(-1, 9000), st.sampled_from(["2", 1.5, True])), max_size=7),
    st.sampled_from(["1, 48,1", "", "soon", 24, None]),
)
policy_options = st.fixed_dictionaries(
    {},
    optional={
        "auto_shutdown_hours": hours,
        "shutdown_mode": modes,
        "keep_until": times,
        "reminder_hours": reminders,
    },
)


@given(policy_options)
def test_the_hub_and_the_lifecycle_service_read_every_policy_the_same_way(raw):
    try:
        spec = SCHEMA.parse(raw)
    except OptionsError as refused:
        with pytest.raises(PolicyUnreadable) as unreadable:
            Policy.from_options(raw, SETTINGS)
        assert unreadable.value.reason == str(refused)  # the same words as the hub's 400
        return
    policy = Policy.from_options(raw, SETTINGS)
    after = spec.auto_shutdown_hours * H if spec.auto_shutdown_hours else None
    assert policy.shutdown_after == after
    assert policy.shutdown_mode == (spec.shutdown_mode if after else "none")
    keep_until = datetime.fromisoformat(spec.keep_until) if spec.keep_until else None
    assert policy.keep_until == keep_until
    assert policy.reminders == tuple(h * H for h in spec.reminder_hours)
    # what the hub stores at start (the canonical options) reads as the same policy
    assert Policy.from_options(spec.to_user_options(), SETTINGS) == policy
    assert parse_run_time_policy(raw) == spec.run_time_policy


@given(policy_options)
def test_the_policy_parser_accepts_exactly_what_the_schema_accepts(raw):
    try:
        spec = SCHEMA.parse(raw)
    except OptionsError as refused:
        with pytest.raises(OptionsError) as also:
            parse_run_time_policy(raw)
        assert also.value.errors == refused.errors
        return
    assert parse_run_time_policy(raw) == spec.run_time_policy


def test_options_left_out_take_the_schemas_defaults():
    assert parse_run_time_policy({}) == RunTimePolicy(0, "after_start", "", (24, 1))
    assert parse_run_time_policy(None) == SCHEMA.parse({}).run_time_policy
    kept = RunTimePolicy(6, "idle", "", (2,))
    assert parse_run_time_policy({"auto_shutdown_hours": 3}, kept) == RunTimePolicy(
        3, "idle", "", (2,)
    )


def test_other_options_are_left_to_the_schema():
    policy = parse_run_time_policy({"auto_shutdown_hours": "8", "colour": "blue", "image": 7})
    assert policy.auto_shutdown_hours == 8


def test_keep_until_is_canonical_utc_to_the_second():
    policy = parse_run_time_policy({"keep_until": "2026-03-02T19:30:00.123456+01:00"})
    assert policy.keep_until == "2026-03-02T18:30:00+00:00"
    assert policy.keep_until_time == datetime(2026, 3, 2, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"shutdown_mode": "none"}, "shutdown_mode"),  # "0 hours" says no shutdown, not a mode
        ({"auto_shutdown_hours": 8761}, "auto_shutdown_hours"),
        ({"keep_until": "2026-03-02T18:00:00"}, "keep_until"),
        ("auto_shutdown_hours=4", "options"),
    ],
)
def test_a_bad_policy_names_the_field_and_what_is_allowed(raw, field):
    with pytest.raises(OptionsError) as refused:
        parse_run_time_policy(raw)
    assert [e.field for e in refused.value.errors] == [field]


def test_a_keep_until_outside_the_calendar_is_refused_not_a_crash():
    """0001-01-01 at +05:00 is before the first UTC day: converting it overflowed (a 500)."""
    with pytest.raises(OptionsError) as refused:
        parse_run_time_policy({"keep_until": "0001-01-01T00:00:00+05:00"})
    assert refused.value.errors[0].field == "keep_until"
    assert "2026-01-31T18:00:00+00:00" in refused.value.errors[0].message  # the one example
