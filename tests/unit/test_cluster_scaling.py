"""The auto scaler's decision without Docker or Grid Engine: tables of situations a user of a
dynamic cluster meets, then properties checked over generated clusters (hypothesis).

Time never comes from the clock: every case passes ``now``.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_services.clusters.scaling import (
    ACTIONS,
    Capacity,
    Decision,
    Member,
    Request,
    ScalingPolicy,
    decide,
    pack,
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)
GIB = 1024**3
CAP = Capacity(4, 16 * GIB)  # one member: 4 cores, 16 GiB


def policy(low=0, high=10, **changes) -> ScalingPolicy:
    return ScalingPolicy(low, high, CAP, **changes)


def task(job="1", tasks=1, cores=1, gib=2) -> Request:
    return Request(job, tasks, Capacity(cores, gib * GIB))


def member(name="m1", age=600, **changes) -> Member:
    """A joined, idle member started ``age`` seconds before T0."""
    return Member(name, T0 - age * S, **changes)


def run(pol, requests=(), members=(), now=T0, last=None) -> Decision:
    return decide(pol, list(requests), list(members), now, last)


# --- growing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requests, count, needed",
    [
        ([task(tasks=1)], 1, 1),
        ([task(tasks=4)], 1, 1),  # 4 x 1 core fill exactly one 4-core member
        ([task(tasks=5)], 2, 2),
        ([task(tasks=10)], 3, 3),
        ([task(cores=3), task("2", cores=3), task("3", tasks=2)], 2, 2),  # 3+1, 3+1
        ([task(tasks=3, gib=10)], 3, 3),  # memory, not cores, is the limit
        ([task(tasks=100_000)], 10, 25_000),  # capped at max_members
        ([Request("1", 3, Capacity(0, 0))], 1, 1),  # asks for nothing, still needs a member
    ],
)
def test_pending_work_is_bin_packed_into_new_members(requests, count, needed):
    decision = run(policy(0, 10), requests)
    assert decision.action == "scale_up"
    assert decision.count == count
    assert decision.members_needed == needed


def test_scale_up_reason_says_how_much_work_and_how_many_members():
    decision = run(policy(0, 10), [task(tasks=10)])
    assert decision.reason == "10 pending tasks need 3 more members"


def test_scale_up_beyond_the_maximum_adds_up_to_the_maximum_and_says_so():
    decision = run(policy(0, 3), [task(tasks=40)], [member("m1", running_jobs=4)])
    assert (decision.action, decision.count) == ("scale_up", 2)
    assert decision.reason == "40 pending tasks need 10 more members; adding up to the maximum of 3"


def test_at_the_maximum_pending_work_waits_and_the_reason_says_why():
    members = [member(f"m{i}", running_jobs=4) for i in range(3)]
    decision = run(policy(0, 3), [task(tasks=8)], members)
    assert decision.action == "none"
    assert decision.members_needed == 2
    assert (
        decision.reason
        == "8 pending tasks need 2 more members, but the cluster is at its maximum of 3"
    )


def test_below_the_minimum_the_cluster_grows_to_it_without_work():
    decision = run(policy(2, 5))
    assert (decision.action, decision.count) == ("scale_up", 2)
    assert decision.reason == "0 members is below the minimum of 2"


def test_work_that_fits_on_free_members_starts_nothing():
    members = [member("m1", running_jobs=1, free=Capacity(3, 14 * GIB))]
    decision = run(policy(0, 10), [task(tasks=3)], members)
    assert decision.action == "none"
    assert decision.reason == "pending work fits on the current members"


def test_free_capacity_is_used_before_new_members_are_counted():
    members = [member("m1", running_jobs=1, free=Capacity(3, 14 * GIB))]
    decision = run(policy(0, 10), [task(tasks=7)], members)
    assert (decision.action, decision.count) == ("scale_up", 1)


def test_a_busy_member_of_unknown_free_capacity_counts_as_full():
    decision = run(policy(0, 10), [task()], [member("m1", running_jobs=2)])
    assert (decision.action, decision.count) == ("scale_up", 1)


def test_a_draining_member_offers_no_capacity():
    members = [member("m1", running_jobs=1, draining=True, free=Capacity(3, 14 * GIB))]
    decision = run(policy(0, 10), [task()], members)
    assert (decision.action, decision.count) == ("scale_up", 1)


# --- unsatisfiable requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cores, gib, asks",
    [(5, 2, "5 cores, 2 GiB"), (1, 17, "1 core, 17 GiB"), (8, 64, "8 cores, 64 GiB")],
)
def test_a_request_larger_than_a_member_is_unsatisfiable_and_starts_nothing(cores, gib, asks):
    decision = run(policy(0, 10), [task("42", cores=cores, gib=gib)])
    assert decision.action == "none"
    assert decision.members_needed == 0
    [unsatisfiable] = decision.unsatisfiable
    assert unsatisfiable.job_id == "42"
    assert unsatisfiable.reason == (
        f"job 42 asks for {asks} per task, more than one member offers (4 cores, 16 GiB); "
        "it waits until the cluster uses a larger member resource model"
    )


def test_unsatisfiable_requests_do_not_add_to_satisfiable_ones():
    requests = [task("1", tasks=2), task("2", cores=9, tasks=1000)]
    decision = run(policy(0, 10), requests)
    assert (decision.action, decision.count) == ("scale_up", 1)
    assert [u.job_id for u in decision.unsatisfiable] == ["2"]


def test_unsatisfiable_work_alone_lets_idle_members_go():
    decision = run(policy(0, 10), [task("7", cores=64)], [member("m1")])
    assert (decision.action, decision.member) == ("drain", "m1")


# --- one operation at a time -----------------------------------------------------------------


@pytest.mark.parametrize("elapsed, action", [(0, "none"), (59, "none"), (60, "drain")])
def test_no_member_is_drained_until_the_last_operation_is_stabilised(elapsed, action):
    pol = policy(0, 10, stabilisation=60 * S)
    decision = run(pol, [], [member("m1")], now=T0, last=T0 - elapsed * S)
    assert decision.action == action
    if action == "none":
        started = (T0 - elapsed * S).strftime("%H:%M:%S")
        ready = (T0 + (60 - elapsed) * S).strftime("%H:%M:%S")
        assert decision.reason == (
            f"stabilising after the scale operation at {started}; a scale-down can start at {ready}"
        )


@pytest.mark.parametrize("elapsed", [0, 59, 60])
def test_more_pending_work_scales_up_at_once_even_while_stabilising(elapsed):
    pol = policy(0, 10, stabilisation=60 * S)
    decision = run(pol, [task(tasks=9)], now=T0, last=T0 - elapsed * S)
    assert (decision.action, decision.count) == ("scale_up", 3)


def test_no_member_is_drained_while_another_is_still_joining():
    members = [member("m2", age=5, joined=False), member("m1", age=9000)]
    decision = run(policy(0, 10), [], members)
    assert decision.action == "none"
    assert decision.reason == "waiting for member m2 to join before a scale-down"


def test_work_beyond_what_joining_members_hold_adds_members_without_waiting_for_them():
    # a burst seen half-submitted: m2 joins for the first 4 tasks, the next 16 need 4 more
    members = [member("m2", age=1, joined=False)]
    decision = run(policy(0, 10), [task(tasks=20)], members)
    assert (decision.action, decision.count) == ("scale_up", 4)


def test_work_that_joining_members_hold_adds_none():
    members = [member("m2", age=1, joined=False), member("m3", age=1, joined=False)]
    decision = run(policy(0, 10), [task(tasks=8)], members)
    assert decision.action == "none" and decision.members_needed == 0


def test_a_joining_member_counts_as_capacity_for_the_pending_work():
    members = [member("m2", age=5, joined=False)]
    decision = run(policy(0, 10), [task(tasks=6)], members)
    assert decision.members_needed == 1


# --- shrinking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age, action", [(0, "none"), (299, "none"), (300, "drain"), (9000, "drain")]
)
def test_an_idle_member_is_drained_only_after_its_minimum_lifetime(age, action):
    decision = run(policy(0, 10), members=[member("m1", age=age)])
    assert decision.action == action
    if action == "none":
        assert decision.reason == (
            "no pending work, but no member is idle and older than the minimum lifetime of 300 s"
        )
    else:
        assert decision.member == "m1"
        assert decision.reason == f"no pending work: draining idle member m1 (up {age} s)"


def test_a_member_with_running_jobs_is_never_drained():
    decision = run(policy(0, 10), members=[member("m1", running_jobs=1, age=9000)])
    assert decision.action == "none"


def test_a_joining_member_is_never_drained():
    decision = run(policy(0, 10), members=[member("m1", age=9000, joined=False)])
    assert decision.action == "none"


def test_the_minimum_is_kept_when_idle():
    members = [member("m1"), member("m2")]
    decision = run(policy(2, 10), members=members)
    assert decision.action == "none"
    assert decision.reason == "no pending work; 2 members is the minimum"


def test_pending_work_keeps_idle_members():
    members = [member("m1"), member("m2", running_jobs=4)]
    decision = run(policy(0, 10), [task()], members)
    assert decision.action == "none"


def test_drain_prefers_preemptible_then_the_youngest_member():
    members = [
        member("old", age=5000),
        member("young", age=400),
        member("spot", age=9000, preemptible=True),
    ]
    assert run(policy(0, 10), members=members).member == "spot"
    assert run(policy(0, 10), members=members[:2]).member == "young"


def test_only_one_member_drains_at_a_time():
    members = [member("m1", draining=True, running_jobs=1), member("m2")]
    decision = run(policy(0, 10), members=members)
    assert decision.action == "none"
    assert decision.reason == "member m1 still runs jobs while draining; waiting for it"


def test_a_drained_member_without_jobs_is_removed_even_while_stabilising():
    members = [member("m1", draining=True), member("m2")]
    decision = run(policy(0, 10), members=members, last=T0 - S)
    assert (decision.action, decision.member) == ("remove", "m1")
    assert decision.reason == "member m1 is drained and runs no job: removing it"


def test_a_draining_member_with_jobs_is_kept():
    decision = run(policy(0, 10), members=[member("m1", draining=True, running_jobs=1)])
    assert decision.action == "none"


def test_pending_work_grows_the_cluster_while_a_busy_member_drains():
    members = [member("m1", draining=True, running_jobs=1)]
    decision = run(policy(0, 10), [task()], members)
    assert (decision.action, decision.count) == ("scale_up", 1)


def test_above_a_lowered_maximum_members_are_drained_fewest_jobs_first():
    members = [member("a", running_jobs=3), member("b", running_jobs=1, age=10)]
    decision = run(policy(0, 1), [task(tasks=50)], members)
    assert (decision.action, decision.member) == ("drain", "b")
    assert (
        decision.reason
        == "2 members is above the maximum of 1: draining b (1 running jobs finish first)"
    )


# --- policy and packing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, message",
    [
        (-1, 3, "0 <= min_members <= max_members <= 50"),
        (4, 3, "got min_members=4, max_members=3"),
        (0, 51, "max_members=51"),
    ],
)
def test_policy_bounds_are_checked(low, high, message):
    with pytest.raises(ValueError, match=message):
        ScalingPolicy(low, high, CAP)


def test_policy_refuses_negative_pacing():
    with pytest.raises(ValueError, match="stabilisation must not be negative"):
        ScalingPolicy(0, 1, CAP, stabilisation=-S)


def test_packing_a_huge_array_is_fast_and_exact():
    assert pack([task(tasks=1_000_003)], [], CAP) == 250_001


def test_packing_fills_free_members_first_largest_tasks_first():
    free = [Capacity(3, 16 * GIB), Capacity(1, 16 * GIB)]
    assert pack([task("a", cores=1, tasks=1), task("b", cores=3)], free, CAP) == 0
    assert pack([task("a", cores=2, tasks=2)], free, CAP) == 1


# --- properties ------------------------------------------------------------------------------

capacities = st.builds(Capacity, st.integers(1, 8), st.integers(1, 32).map(lambda g: g * GIB))
requests = st.lists(
    st.builds(
        Request,
        st.integers(1, 10**6).map(str),
        st.integers(1, 300),
        st.builds(Capacity, st.integers(0, 10), st.integers(0, 40).map(lambda g: g * GIB)),
    ),
    max_size=8,
)
members = st.lists(
    st.builds(
        Member,
        st.uuids().map(lambda u: u.hex[:8]),
        st.integers(0, 2000).map(lambda s: T0 - s * S),
        running_jobs=st.integers(0, 3),
        draining=st.integers(0, 9).map(lambda i: i == 0),  # rare, as in a real cluster
        preemptible=st.booleans(),
        joined=st.integers(0, 9).map(lambda i: i != 0),
        free=st.none() | capacities,
    ),
    max_size=55,
    unique_by=lambda m: m.name,
)


@st.composite
def policies(draw):
    low = draw(st.integers(0, 3) | st.integers(0, 50))  # small minimums are the common case
    high = draw(st.integers(low, 50))
    return ScalingPolicy(
        low,
        high,
        draw(capacities),
        stabilisation=draw(st.integers(0, 120)) * S,
        min_lifetime=draw(st.integers(0, 600)) * S,
    )


lasts = st.none() | st.integers(-300, 0).map(lambda s: T0 + s * S)


def _active(ms):
    return [m for m in ms if not m.draining]


@settings(max_examples=400)
@given(policies(), requests, members, lasts)
def test_property_bounds_are_always_respected(pol, reqs, ms, last):
    decision = run(pol, reqs, ms, last=last)
    assert decision.action in ACTIONS
    n = len(_active(ms))
    if decision.action == "scale_up":
        assert decision.count >= 1
        assert n + decision.count <= pol.max_members
    if decision.action == "drain":
        assert n - 1 >= pol.min_members or n > pol.max_members


@settings(max_examples=400)
@given(policies(), requests, members, lasts)
def test_property_never_removes_or_drains_a_member_wrongly(pol, reqs, ms, last):
    decision = run(pol, reqs, ms, last=last)
    by_name = {m.name: m for m in ms}
    if decision.action == "remove":
        chosen = by_name[decision.member]
        assert chosen.draining and chosen.running_jobs == 0
    if decision.action == "drain" and len(_active(ms)) <= pol.max_members:
        chosen = by_name[decision.member]
        assert not chosen.draining and chosen.joined and chosen.running_jobs == 0
        assert T0 - chosen.started_at >= pol.min_lifetime
        assert not any(pol.capacity.holds(r.need) for r in reqs)


@settings(max_examples=400)
@given(policies(), requests, members, lasts)
def test_property_never_scales_down_while_an_operation_is_in_flight(pol, reqs, ms, last):
    decision = run(pol, reqs, ms, last=last)
    stabilising = last is not None and T0 < last + pol.stabilisation
    if stabilising or not all(m.joined for m in ms):
        assert decision.action in ("none", "remove", "scale_up")


@settings(max_examples=400)
@given(policies(), requests, members, lasts)
def test_property_a_scale_up_adds_only_what_the_members_there_and_joining_cannot_hold(
    pol, reqs, ms, last
):
    decision = run(pol, reqs, ms, last=last)
    if decision.action == "scale_up":
        active = len(_active(ms))
        assert decision.count <= max(decision.members_needed, pol.min_members - active)
        assert active + decision.count <= pol.max_members


@settings(max_examples=400)
@given(policies(), requests, members, lasts)
def test_property_unsatisfiable_requests_never_cause_a_scale_up(pol, reqs, ms, last):
    decision = run(pol, reqs, ms, last=last)
    satisfiable = [r for r in reqs if pol.capacity.holds(r.need)]
    without = run(pol, satisfiable, ms, last=last)
    assert (decision.action, decision.count, decision.member) == (
        without.action,
        without.count,
        without.member,
    )
    assert {u.job_id for u in decision.unsatisfiable} == {
        r.job_id for r in reqs if not pol.capacity.holds(r.need)
    }


def _simulate(pol, reqs, ms, steps=120):
    """Carry out decisions the way the cluster service would: new members join one step
    after they are added, drained members are idle, and time moves past the stabilisation
    window and the minimum lifetime. Returns the members and the last decision."""
    now, last, decision = T0, None, None
    for i in range(steps):
        ms = [replace(m, joined=True) for m in ms]
        decision = decide(pol, reqs, ms, now, last)
        if decision.action == "scale_up":
            ms += [Member(f"new{i}-{k}", now, joined=False) for k in range(decision.count)]
            last = now
        elif decision.action == "drain":
            ms = [
                replace(m, draining=True, running_jobs=0) if m.name == decision.member else m
                for m in ms
            ]
            last = now
        elif decision.action == "remove":
            ms = [m for m in ms if m.name != decision.member]
        now += pol.stabilisation + pol.min_lifetime + S
    return ms, decision


@settings(max_examples=150, deadline=None)
@given(policies(), requests, members.map(lambda ms: [replace(m, running_jobs=0) for m in ms]))
def test_property_satisfiable_demand_eventually_gets_enough_capacity(pol, reqs, ms):
    ms, decision = _simulate(pol, reqs, ms)
    active = _active(ms)
    assert pol.min_members <= len(active) <= pol.max_members
    satisfiable = [r for r in reqs if pol.capacity.holds(r.need)]
    free = [m.free or pol.capacity for m in active]
    assert pack(satisfiable, free, pol.capacity) == 0 or len(active) == pol.max_members
    assert decision.action == "none"  # settled: no flapping


@settings(max_examples=150, deadline=None)
@given(policies(), members.map(lambda ms: [replace(m, running_jobs=0) for m in ms]))
def test_property_without_work_an_idle_cluster_shrinks_to_its_minimum(pol, ms):
    ms, decision = _simulate(pol, [], ms)
    assert len(ms) == pol.min_members
    assert decision.action == "none"
