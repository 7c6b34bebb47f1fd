"""A cluster at its owner's CPU limit stops growing and says so in its scaler log, once.

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

from hub_services.clusters.quota_gate import ClusterQuotaGate
from hub_services.clusters.scaler import ClusterScaler

WORKSPACE_CPUS = 0.5
pytestmark = pytest.mark.usefixtures("clock")  # the scaler's time, fixed


class StubHub:
    """The hub's quota answer for alice: ``max_cpus`` and what runs in ``nodes``."""

    def __init__(self, nodes: FakeNodes, max_cpus: float | None, fail: bool = False):
        self.nodes, self.max_cpus, self.fail = nodes, max_cpus, fail
        self.paths: list[str] = []

    async def request(self, method, path, body=None, **headers):
        self.paths.append(path)
        if self.fail:
            raise ConnectionRefusedError("connection refused")
        members = sum(1 for running in self.nodes.running.values() if running)
        limits = {"max_running_workspaces": None, "max_cpus": self.max_cpus}
        limits.update(max_memory_gb=None, max_gpus=None, max_storage_gb=None)
        return {
            "limits": limits,
            "sources": {"max_cpus": "group free-tier"},
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
