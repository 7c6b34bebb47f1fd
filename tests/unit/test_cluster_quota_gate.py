"""A cluster at its owner's CPU limit or monthly budget stops growing and says so in its scaler
log, once; the owner's max_storage_gb becomes their quota for members' /scratch.

The scaler pass runs against the fake Grid Engine of ``test_cluster_scaler_pass``; the hub's
answer to ``GET /hub/api/bench/quotas/users/alice`` is stubbed (the real endpoint, with real
members counted from Docker, is tested in tests/integration/test_quotas.py): it reports the
members the fake engine runs, as the hub counts them from Docker.
"""

from __future__ import annotations

import pytest
from test_cluster_scaler_pass import (  # noqa: F401  (clock is a fixture)
    MODEL,
    FakeLog,
    FakeNodes,
    clock,
    cluster,
    save,
    step,
)

from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import StorageAdmission
from hub_services.clusters.quota_gate import ClusterQuotaGate, QuotaUnknown
from hub_services.clusters.scaler import ClusterScaler
from hub_services.clusters.settings import ClusterSettings

WORKSPACE_CPUS = 0.5
pytestmark = pytest.mark.usefixtures("clock")  # the scaler's time, fixed


class StubHub:
    """The hub's quota answer for alice: ``max_cpus`` and what runs in ``nodes``."""

    def __init__(self, nodes: FakeNodes, max_cpus: float | None, fail: bool = False, **more):
        self.nodes, self.max_cpus, self.fail = nodes, max_cpus, fail
        self.more = more  # other limits, "sources" and "spend" as the hub reports them
        self.paths: list[str] = []

    async def request(self, method, path, body=None, **headers):
        self.paths.append(path)
        if self.fail:
            raise ConnectionRefusedError("connection refused")
        members = sum(1 for running in self.nodes.running.values() if running)
        limits = {"max_running_workspaces": None, "max_cpus": self.max_cpus}
        limits.update(max_memory_gb=None, max_gpus=None, max_storage_gb=None)
        limits.update(self.more.get("limits", {}))
        return {
            "limits": limits,
            "sources": {"max_cpus": "group free-tier", **self.more.get("sources", {})},
            "spend": self.more.get("spend"),
            "use": {
                "running": ["alice/lab"],
                "cluster_members": members,
                "cpus": WORKSPACE_CPUS + members * MODEL.cpus,
                "memory_gb": 0.5 + members * MODEL.memory_gb,
                "gpus": 0,
            },
        }


def scaler_with(nodes, hub) -> ClusterScaler:
    scaler = ClusterScaler(nodes, save)
    scaler.quota_fit = ClusterQuotaGate(hub).members_that_fit
    return scaler


async def test_a_cluster_at_the_cpu_limit_stops_growing_and_says_so_once_in_its_log():
    nodes = FakeNodes()
    hub = StubHub(nodes, max_cpus=5)  # 0.5 + 2 members of 2 CPUs fit, a third does not
    scaler = scaler_with(nodes, hub)
    rec, policy = cluster(3)
    log = FakeLog()
    await step(scaler, rec, policy, log)
    assert len(nodes.running) == 2
    assert hub.paths == ["bench/quotas/users/alice"]
    assert log.lines[0].startswith("scale up by 2 to 2 members")
    limit_lines = [line for line in log.lines if line.startswith("at the limit")]
    assert limit_lines == [
        "at the limit, only 2 of 3 new members start: max_cpus: alice may use at most 5 CPUs at "
        "a time (limit of group free-tier); 4.5 CPUs in use (alice/lab and 2 cluster members) "
        "and a new member needs 2 CPUs"
    ]
    for _ in range(3):  # the cluster still wants its third member: not added, logged once
        await step(scaler, rec, policy, log)
    assert len(nodes.running) == 2
    assert [line for line in log.lines if line.startswith("at the limit")] == limit_lines + [
        "at the limit, no new member starts: max_cpus: alice may use at most 5 CPUs at a time "
        "(limit of group free-tier); 4.5 CPUs in use (alice/lab and 2 cluster members) and a new "
        "member needs 2 CPUs"
    ]


async def test_a_cluster_within_its_limits_grows_as_without_them():
    nodes = FakeNodes()
    scaler = scaler_with(nodes, StubHub(nodes, max_cpus=None))
    rec, policy = cluster(3)
    log = FakeLog()
    await step(scaler, rec, policy, log)
    assert len(nodes.running) == 3
    assert not [line for line in log.lines if line.startswith("at the limit")]


async def test_a_cluster_whose_limits_cannot_be_read_adds_no_member_and_says_why():
    nodes = FakeNodes()
    scaler = scaler_with(nodes, StubHub(nodes, max_cpus=None, fail=True))
    rec, policy = cluster(2)
    log = FakeLog()
    await step(scaler, rec, policy, log)
    await step(scaler, rec, policy, log)
    assert nodes.running == {}
    assert log.lines == [
        "no member added: cannot read alice's limits from the hub (connection refused)"
    ]


def cluster_settings(**fields) -> ClusterSettings:
    base = {"type": "static", "resource_model": MODEL.name, "dedicated_manager": False}
    base.update(scratch_gb=0, web_access=False, preemptible=False)
    return ClusterSettings(**{**base, **fields})


def budget_hub(nodes, spend: dict | None) -> StubHub:
    return StubHub(
        nodes,
        max_cpus=None,
        limits={"monthly_budget": 10},
        sources={"monthly_budget": "group free-tier"},
        spend=spend,
    )


async def test_a_cluster_at_its_budget_stops_growing_and_says_so_once_though_the_spend_grows():
    nodes = FakeNodes()
    hub = budget_hub(nodes, {"amount": 10.5, "unit": "CPU-hours", "error": None})
    scaler = scaler_with(nodes, hub)
    rec, policy = cluster(2)
    log = FakeLog()
    await step(scaler, rec, policy, log)
    hub.more["spend"] = {"amount": 11.25, "unit": "CPU-hours", "error": None}  # still running
    await step(scaler, rec, policy, log)
    await step(scaler, rec, policy, log)
    assert nodes.running == {}
    assert log.lines == [
        "at the budget, no new member starts: monthly_budget: alice used 10.5 of 10 CPU-hours "
        "this month (limit of group free-tier); nothing more starts until an admin raises the "
        "budget or the month ends (months are UTC)"
    ]


async def test_a_cluster_under_its_budget_grows_and_one_whose_spend_is_unknown_does_not():
    nodes = FakeNodes()
    under = budget_hub(nodes, {"amount": 9.5, "unit": "CPU-hours", "error": None})
    gate = ClusterQuotaGate(under)
    rec, _ = cluster(2)
    assert await gate.members_that_fit(rec, MODEL, 2) == (2, [])
    unknown = {
        "amount": None,
        "unit": None,
        "error": "monthly_budget: the budget cannot be "
        "checked: lifecycle service unavailable (timeout); try again shortly",
    }
    gate = ClusterQuotaGate(budget_hub(nodes, unknown))
    assert await gate.members_that_fit(rec, MODEL, 2) == (
        0,
        [f"no member added: {unknown['error']}"],
    )


async def test_a_cluster_start_over_the_budget_is_refused_even_without_first_members():
    nodes = FakeNodes()
    gate = ClusterQuotaGate(budget_hub(nodes, {"amount": 10, "unit": "CPU-hours", "error": None}))
    settings = cluster_settings(min_members=0, max_members=3, type="dynamic")
    refusal = await gate.start_refusal("alice", "lab", settings, MODEL)
    assert refusal.startswith("monthly_budget: alice used 10 of 10 CPU-hours this month")
    gate = ClusterQuotaGate(budget_hub(nodes, None))  # a hub that reported no spend
    with pytest.raises(QuotaUnknown, match="monthly_budget"):
        await gate.start_refusal("alice", "lab", settings, MODEL)


async def test_the_owners_max_storage_gb_becomes_their_scratch_quota_when_limits_are_read(
    tmp_path,
):
    nodes = FakeNodes()
    admission = StorageAdmission(roots=[tmp_path], capacity_gb=100, user_quota="")
    hub = StubHub(
        nodes,
        max_cpus=None,
        limits={"max_storage_gb": 3},
        sources={"max_storage_gb": "user alice"},
    )
    gate = ClusterQuotaGate(hub, admission=admission)
    settings = cluster_settings(min_members=2, max_members=2)
    assert await gate.start_refusal("alice", "lab", settings, MODEL) is None
    scratch = StorageRequest("scratch_gb", "alice", 2 * GIB, units=2, what="/scratch")
    verdict = admission.check(tmp_path, scratch)
    assert not verdict.admitted
    assert "alice's storage quota is 3 GB (max_storage_gb, limit of user alice)" in verdict.message
    hub.more = {}  # the limit removed: the site's quota (none here) applies again
    await gate.start_refusal("alice", "lab", settings, MODEL)
    assert admission.check(tmp_path, scratch).admitted
