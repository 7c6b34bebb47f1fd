"""Lifecycle decisions without Docker: when a workspace is stopped, restarted or reminded of.

Time never comes from the clock here: every case passes ``now`` to ``decide``.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_services.lifecycle import policy as lifecycle
from hub_services.lifecycle.policy import (
    Activity,
    Policy,
    PolicyUnreadable,
    carry_over,
    decide,
    next_trigger,
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
S, MIN, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
DEFAULTS = Policy("none", None)


def after_start(after: timedelta, **changes) -> Policy:
    return Policy("after_start", after, reminders=(), **changes)


def idle(after: timedelta, **changes) -> Policy:
    return Policy("idle", after, reminders=(), **changes)


def quiet(**changes) -> Activity:
    """A workspace started at T0 whose container sits idle: no signal since start."""
    return Activity(started=T0, cpu_share=0.01, **changes)


# --- automatic shutdown after start ----------------------------------------------------------


@pytest.mark.parametrize(
    "elapsed, action",
    [(24 * H - S, "none"), (24 * H, "stop"), (24 * H + S, "stop"), (29 * D, "stop")],
)
def test_after_start_shutdown_happens_exactly_at_the_configured_run_time(elapsed, action):
    decision = decide(after_start(24 * H), quiet(), T0 + elapsed)
    assert decision.action == action
    assert decision.next_event == "shutdown"
    assert decision.next_event_at == T0 + 24 * H
    assert decision.remaining == max(24 * H - elapsed, timedelta(0))
    if action == "stop":
        assert decision.reason == "automatic shutdown: ran 24 h since start"
        assert decision.event_id == f"stop:shutdown:{(T0 + 24 * H).isoformat()}"


def test_after_start_ignores_activity_and_busy_kernels():
    busy = Activity(
        started=T0,
        last_request=T0 + 23 * H,
        last_terminal_input=T0 + 23 * H,
        kernels_busy=True,
        cpu_share=0.99,
        last_access=T0 + 23 * H,
    )
    assert decide(after_start(24 * H), busy, T0 + 24 * H).action == "stop"


def test_no_automatic_shutdown_shows_the_restart_as_next_event():
    decision = decide(Policy("none", None, reminders=()), quiet(), T0 + 29 * D)
    assert decision.action == "none"
    assert (decision.next_event, decision.next_event_at) == ("restart", T0 + 30 * D)
    assert decision.remaining == D


# --- idle shutdown ---------------------------------------------------------------------------

IDLE_NOW = T0 + 5 * H
IDLE_BASE = Activity(
    started=T0,
    last_request=T0 + H,
    last_terminal_input=T0 + 30 * MIN,
    kernels_busy=False,
    cpu_share=0.01,
    last_access=T0 + H,
)


@pytest.mark.parametrize(
    "changes, action, why",
    [
        ({}, "stop", "idle since the last request 4 h ago"),
        (
            {"last_request": None, "last_terminal_input": None},
            "stop",
            "no signal: idle since start",
        ),
        ({"kernels_busy": True}, "none", "a busy kernel"),
        ({"last_terminal_input": IDLE_NOW - H}, "none", "terminal input 1 h ago"),
        ({"last_request": IDLE_NOW - H}, "none", "a request 1 h ago"),
        ({"cpu_share": 0.20}, "none", "CPU above the share"),
        ({"cpu_share": 0.05}, "none", "CPU exactly at the share is not under it"),
        ({"cpu_share": None}, "none", "unknown CPU"),
    ],
)
def test_idle_means_no_kernel_terminal_request_or_cpu(changes, action, why):
    decision = decide(idle(2 * H), replace(IDLE_BASE, **changes), IDLE_NOW)
    assert decision.action == action, why
    if action == "stop":
        assert decision.reason == "idle for 2 h"


def test_idle_shutdown_counts_from_the_latest_signal():
    activity = replace(IDLE_BASE, last_request=T0 + H, last_terminal_input=T0 + 2 * H)
    assert decide(idle(2 * H), activity, T0 + 4 * H - S).action == "none"
    decision = decide(idle(2 * H), activity, T0 + 4 * H)
    assert (decision.action, decision.next_event_at) == ("stop", T0 + 4 * H)


def test_an_idle_period_counts_from_the_end_of_the_last_computation():
    """A kernel busy until T0+5h (last seen busy then) makes a 2 h idle rule stop at T0+7h,
    not right away when the computation ends."""
    policy, activity = idle(2 * H), quiet(last_busy=T0 + 5 * H)
    assert decide(policy, activity, T0 + 7 * H - S).action == "none"
    assert decide(policy, activity, T0 + 7 * H).action == "stop"


def test_a_three_hour_cpu_bound_kernel_without_a_browser_is_not_idle():
    crunching = Activity(started=T0, last_request=T0 + MIN, kernels_busy=True, cpu_share=0.97)
    decision = decide(idle(H), crunching, T0 + 3 * H)
    assert decision.action == "none"
    assert decision.next_event == "restart"
    # A job started from a terminal keeps no kernel busy, but the CPU still shows the work.
    background = replace(crunching, kernels_busy=False)
    assert decide(idle(H), background, T0 + 3 * H).action == "none"


# --- keep_until --------------------------------------------------------------------------------


def test_keep_until_postpones_the_shutdown():
    policy = after_start(24 * H, keep_until=T0 + 48 * H)
    waiting = decide(policy, quiet(), T0 + 30 * H)
    assert waiting.action == "none"
    assert (waiting.next_event, waiting.next_event_at) == ("shutdown", T0 + 48 * H)
    assert waiting.remaining == 18 * H
    stopped = decide(policy, quiet(), T0 + 48 * H)
    assert stopped.action == "stop" and "kept running until" in stopped.reason


def test_keep_until_postpones_idle_and_not_accessed_shutdowns_too():
    policy = idle(H, keep_until=T0 + 10 * D)
    assert decide(policy, quiet(last_access=T0), T0 + 9 * D).action == "none"
    assert decide(policy, quiet(last_access=T0), T0 + 10 * D).action == "stop"


def test_keep_until_does_not_postpone_the_security_restart():
    policy = after_start(60 * D, keep_until=T0 + 45 * D)
    decision = decide(policy, quiet(), T0 + 30 * D)
    assert decision.action == "restart"
    assert decision.reason == "security restart: 30 days since start"


def test_keep_until_earlier_than_the_shutdown_changes_nothing():
    policy = after_start(24 * H, keep_until=T0 + H)
    assert decide(policy, quiet(), T0 + 24 * H).reason == "automatic shutdown: ran 24 h since start"


# --- the 30-day security restart and carry-over -----------------------------------------------


def test_restart_after_30_days_even_when_shutdown_is_set_longer():
    policy = after_start(40 * D)
    assert decide(policy, quiet(), T0 + 30 * D - S).action == "none"
    decision = decide(policy, quiet(), T0 + 30 * D)
    assert decision.action == "restart"
    assert decision.event_id == f"restart:{T0.isoformat()}"
    assert (decision.next_event, decision.remaining) == ("restart", timedelta(0))


def test_a_40_day_setting_restarts_at_day_30_then_stops_10_days_into_the_next_cycle():
    policy = after_start(40 * D)
    first = quiet()
    assert decide(policy, first, T0 + D).next_event_at == T0 + 30 * D
    assert decide(policy, first, T0 + 30 * D).action == "restart"

    restarted_at = T0 + 30 * D
    second = Activity(started=restarted_at, carried_over=carry_over(policy, first, restarted_at))
    assert second.carried_over == 30 * D
    shown = decide(policy, second, restarted_at + H)
    assert (shown.next_event, shown.next_event_at) == ("shutdown", T0 + 40 * D)
    assert decide(policy, second, T0 + 40 * D - S).action == "none"
    stopped = decide(policy, second, T0 + 40 * D)
    assert (
        stopped.action == "stop" and stopped.reason == "automatic shutdown: ran 40 days since start"
    )


def test_a_late_restart_still_stops_at_the_configured_total_run_time():
    policy = after_start(40 * D)
    restarted_at = T0 + 30 * D + 2 * H
    carried = carry_over(policy, quiet(), restarted_at)
    assert carried == 30 * D + 2 * H
    second = Activity(started=restarted_at, carried_over=carried)
    assert decide(policy, second, T0 + 40 * D).action == "stop"


def test_carry_over_adds_up_over_cycles_and_never_counts_negative_time():
    policy = after_start(70 * D)
    second = Activity(started=T0 + 30 * D, carried_over=30 * D)
    assert carry_over(policy, second, T0 + 60 * D) == 60 * D
    assert carry_over(policy, second, T0) == 30 * D
    third = Activity(started=T0 + 60 * D, carried_over=60 * D)
    assert decide(policy, third, T0 + 70 * D).action == "stop"


# --- not accessed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, action", [(T0 + 8 * D - S, "none"), (T0 + 8 * D, "stop"), (T0 + 9 * D, "stop")]
)
def test_not_accessed_for_7_days_stops_the_workspace(now, action):
    decision = decide(Policy("none", None, reminders=()), quiet(last_access=T0 + D), now)
    assert decision.action == action
    assert decision.next_event == "shutdown"
    if action == "stop":
        assert decision.reason == "not accessed for 7 days"


def test_unknown_last_access_never_stops_the_workspace():
    decision = decide(Policy("none", None, reminders=()), quiet(), T0 + 20 * D)
    assert decision.action == "none" and decision.next_event == "restart"


# --- priorities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, activity, now, reason",
    [
        (after_start(30 * D), quiet(), T0 + 30 * D, "automatic shutdown: ran 30 days since start"),
        (after_start(31 * D), quiet(), T0 + 32 * D, "automatic shutdown: ran 31 days since start"),
        (
            Policy("none", None),
            quiet(last_access=T0 + 23 * D),
            T0 + 30 * D,
            "not accessed for 7 days",
        ),
        (idle(H), quiet(), T0 + 31 * D, "idle for 1 h"),
    ],
)
def test_when_a_stop_and_the_restart_are_both_due_the_workspace_is_stopped(
    policy, activity, now, reason
):
    decision = decide(policy, activity, now)
    assert (decision.action, decision.reason) == ("stop", reason)


def test_the_earliest_due_stop_gives_the_reason():
    policy = after_start(10 * D)
    decision = decide(policy, quiet(last_access=T0 + D), T0 + 12 * D)
    assert decision.reason == "not accessed for 7 days"
    assert decision.next_event_at == T0 + 8 * D


# --- reminders --------------------------------------------------------------------------------

REMINDING = Policy("after_start", 48 * H)  # reminders 24 h and 1 h before
SHUTDOWN_AT = T0 + 48 * H


def remind_id(kind: str, at: datetime, lead: timedelta) -> str:
    return f"remind:{kind}:{at.isoformat()}:{int(lead.total_seconds())}s"


def test_one_reminder_per_lead_and_never_repeated():
    day_before = remind_id("shutdown", SHUTDOWN_AT, 24 * H)
    hour_before = remind_id("shutdown", SHUTDOWN_AT, H)
    assert decide(REMINDING, quiet(), SHUTDOWN_AT - 24 * H - S).action == "none"

    first = decide(REMINDING, quiet(), SHUTDOWN_AT - 23 * H)
    assert (first.action, first.event_id) == ("remind", day_before)
    assert first.reason == "shutdown in 23 h (automatic shutdown: ran 2 days since start)"
    assert first.remaining == 23 * H
    sent = quiet(reminders_sent=frozenset({day_before}))
    assert decide(REMINDING, sent, SHUTDOWN_AT - 2 * H).action == "none"

    second = decide(REMINDING, sent, SHUTDOWN_AT - 30 * MIN)
    assert (second.action, second.event_id) == ("remind", hour_before)
    both = quiet(reminders_sent=frozenset({day_before, hour_before}))
    assert decide(REMINDING, both, SHUTDOWN_AT - MIN).action == "none"


def test_a_late_check_sends_only_the_tightest_reminder():
    late = decide(REMINDING, quiet(), SHUTDOWN_AT - 30 * MIN)
    assert late.event_id == remind_id("shutdown", SHUTDOWN_AT, H)
    sent = quiet(reminders_sent=frozenset({late.event_id}))
    assert decide(REMINDING, sent, SHUTDOWN_AT - MIN).action == "none"


def test_no_reminder_once_the_event_is_due():
    assert decide(REMINDING, quiet(), SHUTDOWN_AT).action == "stop"


def test_the_restart_is_reminded_of_too():
    restart_at = T0 + 30 * D
    decision = decide(Policy("none", None), quiet(), restart_at - 30 * MIN)
    assert decision.action == "remind"
    assert decision.event_id == remind_id("restart", restart_at, H)
    assert decision.reason == "restart in 30 min (security restart: 30 days since start)"


def test_a_later_event_is_reminded_of_when_the_earlier_one_already_was():
    policy = Policy("after_start", 30 * D + 30 * MIN, reminders=(H,))
    restart_at = T0 + 30 * D
    sent = quiet(reminders_sent=frozenset({remind_id("restart", restart_at, H)}))
    decision = decide(policy, sent, restart_at - 10 * MIN)
    assert decision.action == "remind" and decision.next_event == "shutdown"
    assert decision.event_id == remind_id("shutdown", restart_at + 30 * MIN, H)


def test_new_activity_moves_an_idle_shutdown_and_its_reminder():
    policy = Policy("idle", 4 * H, reminders=(H,))
    before = decide(policy, quiet(last_request=T0), T0 + 3 * H + MIN)
    after = decide(policy, quiet(last_request=T0 + 2 * H), T0 + 5 * H + MIN)
    assert before.action == after.action == "remind"
    assert before.event_id != after.event_id


# --- never twice ------------------------------------------------------------------------------


def test_a_restart_already_done_is_not_repeated():
    policy = Policy("none", None)
    done = quiet(actions_done=frozenset({f"restart:{T0.isoformat()}"}))
    decision = decide(policy, done, T0 + 30 * D + H)
    assert decision.action == "none" and decision.event_id == ""
    assert decision.remaining == timedelta(0)


def test_a_stop_already_done_is_not_repeated_nor_turned_into_a_restart():
    policy = after_start(24 * H)
    stop_id = decide(policy, quiet(), T0 + 24 * H).event_id
    done = quiet(actions_done=frozenset({stop_id}))
    assert decide(policy, done, T0 + 24 * H).action == "none"
    assert decide(policy, done, T0 + 31 * D).action == "none"


def test_a_new_cycle_gets_a_new_restart():
    policy = Policy("none", None, reminders=())
    second = Activity(started=T0 + 30 * D, actions_done=frozenset({f"restart:{T0.isoformat()}"}))
    decision = decide(policy, second, T0 + 60 * D)
    assert decision.action == "restart"
    assert decision.event_id == f"restart:{(T0 + 30 * D).isoformat()}"


def test_ids_name_the_same_instant_the_same_way_in_any_timezone():
    paris = T0.astimezone(datetime.fromisoformat("2025-01-01T00:00:00+01:00").tzinfo)
    decision = decide(Policy("none", None), Activity(started=paris), T0 + 30 * D)
    assert decision.event_id == f"restart:{T0.isoformat()}"


# --- reading the policy from workspace options ------------------------------------------------


@pytest.mark.parametrize(
    "options, mode, after",
    [
        ({"auto_shutdown_hours": 0}, "none", None),
        ({"auto_shutdown_hours": 24, "image": "jupyterlab"}, "after_start", 24 * H),
        ({"auto_shutdown_hours": "8"}, "after_start", 8 * H),
        ({"auto_shutdown_hours": 2, "shutdown_mode": "idle"}, "idle", 2 * H),
        ({"auto_shutdown_hours": 0, "shutdown_mode": "idle"}, "none", None),
        ({"shutdown_mode": "idle"}, "none", None),  # the schema's default: 0 hours
        ({}, "none", None),
        (None, "none", None),
    ],
)
def test_options_give_the_shutdown_setting(options, mode, after):
    policy = Policy.from_options(options, DEFAULTS)
    assert (policy.shutdown_mode, policy.shutdown_after) == (mode, after)
    assert policy.restart_every == 30 * D and policy.not_accessed_limit == 7 * D
    assert policy.keep_until is None


def test_options_left_out_take_the_schemas_defaults_and_the_rest_comes_from_the_service():
    """What the hub started the workspace with: a missing option means the schema's default
    (no automatic shutdown, after_start, reminders 24 h and 1 h before); restart, the
    not-accessed limit and the CPU share are the service's own settings."""
    service = Policy("idle", 3 * H, restart_every=14 * D, reminders=(H,), idle_cpu_share=0.1)
    assert Policy.from_options({}, service) == replace(
        service, shutdown_mode="none", shutdown_after=None, reminders=(24 * H, H)
    )
    policy = Policy.from_options({"auto_shutdown_hours": 6}, service)
    assert policy == replace(
        service, shutdown_mode="after_start", shutdown_after=6 * H, reminders=(24 * H, H)
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-03-02T18:00:00Z", datetime(2025, 3, 2, 18, tzinfo=UTC)),
        ("2025-03-02T20:00:00+02:00", datetime(2025, 3, 2, 18, tzinfo=UTC)),
        ("", None),
    ],
)
def test_keep_until_is_read_as_a_utc_time(text, expected):
    policy = Policy.from_options({"auto_shutdown_hours": 4, "keep_until": text}, DEFAULTS)
    assert policy.keep_until == expected


@pytest.mark.parametrize(
    "options, field",
    [
        ("auto_shutdown_hours=4", "options"),
        (["auto_shutdown_hours", 4], "options"),
        ({"auto_shutdown_hours": -1}, "auto_shutdown_hours"),
        ({"auto_shutdown_hours": 2.5}, "auto_shutdown_hours"),
        ({"auto_shutdown_hours": True}, "auto_shutdown_hours"),
        ({"auto_shutdown_hours": "a day"}, "auto_shutdown_hours"),
        ({"auto_shutdown_hours": None}, "auto_shutdown_hours"),
        ({"auto_shutdown_hours": 4, "shutdown_mode": "sometimes"}, "shutdown_mode"),
        ({"auto_shutdown_hours": 5, "shutdown_mode": "none"}, "shutdown_mode"),  # 0 hours is
        ({"auto_shutdown_hours": 8761}, "auto_shutdown_hours"),  # how to say none; a year max
        ({"auto_shutdown_hours": 4, "keep_until": "tomorrow"}, "keep_until"),
        ({"auto_shutdown_hours": 4, "keep_until": "2025-03-02T18:00:00"}, "with a timezone"),
        ({"auto_shutdown_hours": 4, "keep_until": 1740938400}, "keep_until"),
    ],
)
def test_malformed_options_make_the_policy_unreadable(options, field):
    with pytest.raises(PolicyUnreadable, match=field) as caught:
        Policy.from_options(options, DEFAULTS)
    assert isinstance(caught.value, ValueError) and field in caught.value.reason


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"shutdown_mode": "after_start", "shutdown_after": None}, "shutdown_after"),
        ({"shutdown_mode": "idle", "shutdown_after": timedelta(0)}, "shutdown_after"),
        ({"shutdown_mode": "off", "shutdown_after": None}, "shutdown_mode"),
        ({"shutdown_mode": "none", "shutdown_after": None, "restart_every": -D}, "restart_every"),
        ({"shutdown_mode": "none", "shutdown_after": None, "reminders": [H]}, "reminders"),
        ({"shutdown_mode": "none", "shutdown_after": None, "idle_cpu_share": 0}, "idle_cpu_share"),
        (
            {"shutdown_mode": "none", "shutdown_after": None, "keep_until": datetime(2025, 1, 1)},
            "keep_until",
        ),
    ],
)
def test_a_bad_policy_cannot_be_built(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Policy(**kwargs)


def test_utcnow_is_timezone_aware_utc():
    now = lifecycle.utcnow()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


# --- properties over random policies, activities and times ------------------------------------

durations = st.integers(min_value=1, max_value=45 * 24 * 60).map(lambda m: m * MIN)
moments = st.integers(min_value=-2 * 24 * 60, max_value=70 * 24 * 60).map(lambda m: T0 + m * MIN)


@st.composite
def policies(draw) -> Policy:
    mode = draw(st.sampled_from(["none", "after_start", "idle"]))
    return Policy(
        shutdown_mode=mode,
        shutdown_after=None if mode == "none" else draw(durations),
        restart_every=draw(durations),
        not_accessed_limit=draw(durations),
        reminders=tuple(draw(st.lists(durations, max_size=3))),
        keep_until=draw(st.none() | moments),
        idle_cpu_share=draw(st.floats(min_value=0.001, max_value=1.0)),
    )


@st.composite
def activities(draw) -> Activity:
    return Activity(
        started=draw(moments),
        carried_over=draw(st.just(timedelta(0)) | durations),
        last_request=draw(st.none() | moments),
        last_terminal_input=draw(st.none() | moments),
        last_busy=draw(st.none() | moments),
        kernels_busy=draw(st.booleans()),
        cpu_share=draw(st.none() | st.floats(min_value=0.0, max_value=1.0)),
        last_access=draw(st.none() | moments),
    )


@settings(max_examples=400, deadline=None)
@given(policies(), activities(), moments)
def test_decisions_are_deterministic_and_never_show_negative_time(policy, activity, now):
    decision = decide(policy, activity, now)
    assert decide(policy, activity, now) == decision
    assert decision.action in ("none", "stop", "restart", "remind")
    assert decision.next_event in ("shutdown", "restart")
    assert decision.remaining is not None and decision.remaining >= timedelta(0)
    assert decision.remaining == max(decision.next_event_at - now, timedelta(0))


@settings(max_examples=400, deadline=None)
@given(policies(), activities(), moments)
def test_nothing_done_or_sent_is_ever_returned_again(policy, activity, now):
    seen: set[str] = set()
    for _ in range(12):
        decision = decide(policy, activity, now)
        if decision.action == "none":
            break
        assert decision.event_id not in seen
        assert decision.event_id not in activity.actions_done | activity.reminders_sent
        seen.add(decision.event_id)
        if decision.action == "remind":
            activity = replace(
                activity, reminders_sent=activity.reminders_sent | {decision.event_id}
            )
        else:
            activity = replace(activity, actions_done=activity.actions_done | {decision.event_id})
    else:
        pytest.fail(f"decisions never settled: {sorted(seen)}")


@settings(max_examples=400, deadline=None)
@given(policies(), activities(), moments, durations)
def test_a_due_stop_stays_due_as_time_passes(policy, activity, now, later):
    if decide(policy, activity, now).action == "stop":
        assert decide(policy, activity, now + later).action == "stop"


@settings(max_examples=600, deadline=None)
@given(policies(), activities(), moments)
def test_nothing_happens_before_the_next_trigger(policy, activity, now):
    """The service skips asking servers until shortly before next_trigger: safe only if
    decide() cannot act or remind any earlier."""
    trigger = next_trigger(policy, activity)
    if trigger is None or now < trigger:
        assert decide(policy, activity, now).action == "none"


def test_next_trigger_moves_to_the_next_reminder_once_one_is_sent():
    policy = Policy("idle", 8 * H, reminders=(24 * H, H))
    activity = quiet()
    assert next_trigger(policy, activity) == T0 + 8 * H - 24 * H  # the 24 h one: already due
    first = decide(policy, activity, T0)
    assert first.action == "remind"
    sent = replace(activity, reminders_sent=frozenset({first.event_id}))
    assert next_trigger(policy, sent) == T0 + 7 * H
    assert next_trigger(after_start(H), quiet()) == T0 + H


def test_reminder_hours_and_a_shorter_hour_come_from_the_options():
    minute = timedelta(minutes=1)
    options = {"auto_shutdown_hours": 3, "shutdown_mode": "idle", "reminder_hours": [2, 1]}
    policy = Policy.from_options(options, DEFAULTS, hour=minute)
    assert policy.shutdown_after == 3 * minute
    assert policy.reminders == (2 * minute, minute)
    assert Policy.from_options({"reminder_hours": []}, DEFAULTS).reminders == ()
    with pytest.raises(PolicyUnreadable, match="reminder_hours"):
        Policy.from_options({"reminder_hours": [0]}, DEFAULTS)
