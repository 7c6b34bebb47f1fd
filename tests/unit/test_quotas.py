"""The pure quota rule (benchhub/quotas.py): which limits apply, and may a start or a cluster's
growth happen given what the user uses."""

from __future__ import annotations

import pytest

from benchhub.quotas import (
    LIMITS,
    Limit,
    LimitsError,
    Resources,
    Spend,
    Use,
    budget_refusal,
    container_resources,
    effective_limits,
    members_that_fit,
    parse_limits,
    start_refusal,
    storage_quota,
)

NONE = {name: Limit(None, "none set") for name in LIMITS}
SMALL = Resources(0.5, 0.5, 0)


def limits(**values) -> dict[str, Limit]:
    return {**NONE, **{k: Limit(v, "group free-tier") for k, v in values.items()}}


@pytest.mark.parametrize(
    "raw, field",
    [
        ([1], "limits"),
        ({"max_cpu": 2}, "max_cpu"),
        ({"max_cpus": -1}, "max_cpus"),
        ({"max_cpus": "4"}, "max_cpus"),
        ({"max_cpus": True}, "max_cpus"),
        ({"max_cpus": float("inf")}, "max_cpus"),
        ({"max_running_workspaces": 1.5}, "max_running_workspaces"),
        ({"max_gpus": 0.5}, "max_gpus"),
        ({"monthly_budget": -5}, "monthly_budget"),
        ({"monthly_budget": "12"}, "monthly_budget"),
        ({"monthly_budget": float("nan")}, "monthly_budget"),
        ({"monthly_budgets": 12}, "monthly_budgets"),
    ],
)
def test_a_bad_limits_document_is_refused_naming_the_field_and_what_is_allowed(raw, field):
    with pytest.raises(LimitsError) as e:
        parse_limits(raw)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ")
    assert "e.g." in str(e.value) or "the limits are" in str(e.value)


def test_a_good_document_is_kept_with_whole_numbers_as_int_and_null_as_no_limit():
    doc = parse_limits({"max_running_workspaces": 2.0, "max_cpus": 4, "max_memory_gb": None})
    assert doc == {"max_running_workspaces": 2, "max_cpus": 4.0, "max_memory_gb": None}
    assert isinstance(doc["max_running_workspaces"], int)


@pytest.mark.parametrize(
    "own, groups, default, expected",
    [
        ({}, {}, {}, {"max_cpus": Limit(None, "none set")}),
        ({}, {}, {"max_cpus": 8}, {"max_cpus": Limit(8, "site default")}),
        # a group is more specific than the site default, even when stricter
        ({}, {"free": {"max_cpus": 2}}, {"max_cpus": 8}, {"max_cpus": Limit(2, "group free")}),
        # several groups: the most generous; None (no limit) is the most generous of all
        (
            {},
            {"free": {"max_cpus": 2}, "lab": {"max_cpus": 16}},
            {},
            {"max_cpus": Limit(16, "group lab")},
        ),
        (
            {},
            {"free": {"max_cpus": 2}, "staff": {"max_cpus": None}},
            {},
            {"max_cpus": Limit(None, "group staff")},
        ),
        # the user's own value wins, more or less generous
        ({"max_cpus": 1}, {"lab": {"max_cpus": 16}}, {}, {"max_cpus": Limit(1, "user alice")}),
        ({"max_cpus": 32}, {"free": {"max_cpus": 2}}, {}, {"max_cpus": Limit(32, "user alice")}),
        # limit by limit: a group that does not set one leaves it to the next level
        (
            {},
            {"free": {"max_running_workspaces": 1}},
            {"max_cpus": 8},
            {
                "max_running_workspaces": Limit(1, "group free"),
                "max_cpus": Limit(8, "site default"),
            },
        ),
    ],
)
def test_limits_combine_user_over_most_generous_group_over_site_default(
    own, groups, default, expected
):
    found = effective_limits("alice", own, groups, default)
    for name, limit in expected.items():
        assert found[name] == limit


@pytest.mark.parametrize(
    "applied, use, asks, message",
    [
        # the free tier: one running workspace
        (
            {"max_running_workspaces": 1},
            Use({"alice/lab": SMALL}),
            SMALL,
            "max_running_workspaces: alice may run at most 1 workspace at a time (limit of "
            "group free-tier); 1 is running (alice/lab)",
        ),
        ({"max_running_workspaces": 1}, Use(), SMALL, None),
        (
            {"max_running_workspaces": 0},
            Use(),
            SMALL,
            "max_running_workspaces: alice may run at most 0 workspaces at a time (limit of "
            "group free-tier); 0 are running",
        ),
        ({"max_running_workspaces": 2}, Use({"alice/lab": SMALL}), SMALL, None),
        # CPUs over workspaces and cluster members together
        (
            {"max_cpus": 1},
            Use({"alice/lab": SMALL}, 1, Resources(0.25, 0.5)),
            SMALL,
            "max_cpus: alice may use at most 1 CPU at a time (limit of group free-tier); 0.75 "
            "CPUs in use (alice/lab and 1 cluster member) and alice/big needs 0.5 CPUs",
        ),
        ({"max_cpus": 1}, Use({"alice/lab": SMALL}), SMALL, None),  # exactly at the limit
        (
            {"max_memory_gb": 1},
            Use({"alice/lab": Resources(1, 1)}),
            SMALL,
            "max_memory_gb: alice may use at most 1 GB of memory at a time (limit of group "
            "free-tier); 1 GB of memory in use (alice/lab) and alice/big needs 0.5 GB of memory",
        ),
        (
            {"max_gpus": 0},
            Use(),
            Resources(1, 1, 1),
            "max_gpus: alice may use at most 0 GPUs at a time (limit of group free-tier); 0 GPUs "
            "in use (nothing) and alice/big needs 1 GPU",
        ),
        ({"max_gpus": 0}, Use(), SMALL, None),  # a start that needs no GPU is not refused
    ],
)
def test_a_start_is_refused_naming_the_limit_its_source_and_the_current_use(
    applied, use, asks, message
):
    assert start_refusal("alice", limits(**applied), use, "alice/big", asks) == message


def test_the_running_limit_is_checked_before_resources():
    refusal = start_refusal(
        "alice",
        limits(max_running_workspaces=1, max_cpus=0),
        Use({"alice/lab": SMALL}),
        "a/b",
        SMALL,
    )
    assert refusal.startswith("max_running_workspaces:")


@pytest.mark.parametrize(
    "applied, use, count, fit, names",
    [
        ({}, Use(), 5, 5, None),
        ({"max_cpus": 2}, Use({"alice/lab": SMALL}), 5, 3, "max_cpus"),
        ({"max_cpus": 2}, Use({"alice/lab": Resources(2, 1)}), 2, 0, "max_cpus"),
        ({"max_memory_gb": 1.5}, Use({"alice/lab": SMALL}), 4, 2, "max_memory_gb"),
        ({"max_cpus": 10}, Use(), 3, 3, None),
    ],
)
def test_a_cluster_grows_only_by_the_members_that_fit_the_limits(applied, use, count, fit, names):
    found, sentence = members_that_fit("alice", limits(**applied), use, SMALL, count)
    assert found == fit
    if names is None:
        assert sentence is None
    else:
        assert sentence.startswith(f"{names}: alice may use at most")
        assert "a new member needs" in sentence


def test_what_a_container_holds_is_read_from_its_host_config():
    gpu = [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]
    config = {"CpuQuota": 50000, "CpuPeriod": 100000, "Memory": 2 * 1024**3, "DeviceRequests": gpu}
    assert container_resources(config) == Resources(0.5, 2.0, 2)
    assert container_resources({"NanoCpus": 1_500_000_000}) == Resources(1.5, 0.0, 0)
    assert container_resources({"CpuQuota": -1, "CpuPeriod": 0, "Memory": 0}) == Resources()


def test_use_reports_totals_over_workspaces_and_members():
    use = Use({"alice/lab": Resources(1, 2), "alice/b": Resources(0.5, 1, 1)}, 2, Resources(1, 1))
    assert use.as_json() == {
        "running_workspaces": 2,
        "running": ["alice/b", "alice/lab"],
        "cluster_members": 2,
        "cpus": 2.5,
        "memory_gb": 4.0,
        "gpus": 1,
    }


def test_a_budget_is_a_limit_like_the_others_kept_as_a_number_or_null():
    assert parse_limits({"monthly_budget": 12}) == {"monthly_budget": 12.0}
    assert parse_limits({"monthly_budget": 0.5}) == {"monthly_budget": 0.5}
    assert parse_limits({"monthly_budget": None}) == {"monthly_budget": None}


@pytest.mark.parametrize(
    "own, groups, default, expected",
    [
        ({}, {}, {}, Limit(None, "none set")),
        ({}, {}, {"monthly_budget": 100}, Limit(100, "site default")),
        (
            {},
            {"free-tier": {"monthly_budget": 12}},
            {"monthly_budget": 100},
            Limit(12, "group free-tier"),
        ),
        (
            {},
            {"free-tier": {"monthly_budget": 12}, "lab": {"monthly_budget": 500}},
            {},
            Limit(500, "group lab"),
        ),
        (
            {},
            {"free-tier": {"monthly_budget": 12}, "staff": {"monthly_budget": None}},
            {},
            Limit(None, "group staff"),
        ),
        ({"monthly_budget": 3}, {"lab": {"monthly_budget": 500}}, {}, Limit(3, "user alice")),
    ],
)
def test_budgets_combine_user_then_most_generous_group_then_site_default(
    own, groups, default, expected
):
    assert effective_limits("alice", own, groups, default)["monthly_budget"] == expected


@pytest.mark.parametrize(
    "budget, spent, message",
    [
        (None, 1e6, None),  # no budget: no refusal, however much was spent
        (12, 11.99, None),
        (
            12,
            12,  # at the budget: refused
            "monthly_budget: alice used 12 of 12 CPU-hours this month (limit of group "
            "free-tier); nothing more starts until an admin raises the budget or the month "
            "ends (months are UTC)",
        ),
        (
            12,
            12.5,
            "monthly_budget: alice used 12.5 of 12 CPU-hours this month (limit of group "
            "free-tier); nothing more starts until an admin raises the budget or the month "
            "ends (months are UTC)",
        ),
        (
            0,
            0,  # a budget of 0 allows nothing
            "monthly_budget: alice used 0 of 0 CPU-hours this month (limit of group free-tier); "
            "nothing more starts until an admin raises the budget or the month ends (months "
            "are UTC)",
        ),
        (2.5, 3.14159, "monthly_budget: alice used 3.14 of 2.5 CPU-hours"),
    ],
)
def test_a_start_at_or_over_the_monthly_budget_is_refused_naming_it_and_the_spend(
    budget, spent, message
):
    found = budget_refusal("alice", limits(monthly_budget=budget), Spend(spent, "CPU-hours"))
    if message is None:
        assert found is None
    else:
        assert found.startswith(message)


@pytest.mark.parametrize(
    "limit, quota",
    [
        (Limit(None, "none set"), None),  # StorageAdmission.user_quota applies
        (Limit(None, "StorageAdmission.user_quota (50%)"), None),
        (Limit(None, "group staff"), ""),  # a level that sets no limit: no quota at all
        (Limit(20, "user alice"), "20"),
        (Limit(2.5, "group free-tier"), "2.5"),
        (Limit(0, "site default"), "1e-09"),  # nothing fits
    ],
)
def test_max_storage_gb_becomes_the_users_quota_in_storage_admission(limit, quota):
    assert storage_quota(limit) == quota
