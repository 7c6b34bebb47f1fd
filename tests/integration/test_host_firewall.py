"""The host firewall's guards on the real iptables (root; Docker only lists its networks).

The guards are for bridges that do not exist (made-up network ids): iptables accepts rules for
any interface name, and nothing on this host passes through them. What is checked is what the
spawn path relies on: once a guard is in place, checking it again finds nothing to do (the
text BenchHub builds is exactly what iptables lists), a guard changed behind BenchHub's back is
rewritten, and removal leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from support.docker_cli import network_ids

from benchhub import firewall
from benchhub.firewall import BridgeGuard, Opening

OPEN = BridgeGuard("feed0000000a" + "0" * 52, "benchfw-open", host_ports=(8081,), isolated=True)
RESTRICTED = BridgeGuard(
    "feed0000000b" + "0" * 52,
    "benchfw-restricted",
    host_ports=(8081,),
    isolated=True,
    openings=(Opening("10.254.0.2", 3128),),
)
CLUSTER = BridgeGuard("feed0000000c" + "0" * 52, "benchfw-cluster-x")
GUARDS = [OPEN, RESTRICTED, CLUSTER]


def iptables_s() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def clean():
    yield
    for guard in GUARDS:
        asyncio.run(firewall.remove(guard.network_id))
    assert "feed0000000" not in iptables_s()


def test_a_guard_in_place_is_found_in_place_and_costs_nothing_more(clean):
    assert asyncio.run(firewall.ensure(GUARDS)) == GUARDS  # all new
    assert asyncio.run(firewall.ensure(GUARDS)) == []  # the spawn path: nothing to do
    listed = iptables_s().splitlines()
    first_input = next(line for line in listed if line.startswith("-A INPUT "))
    assert "BENCH-IN-feed0000000" in first_input  # inserted before anything else in INPUT


def test_a_guard_changed_behind_benchhubs_back_is_rewritten(clean):
    asyncio.run(firewall.ensure(GUARDS))
    subprocess.run(["iptables", "-I", OPEN.input_chain, "1", "-j", "ACCEPT"], check=True)
    subprocess.run(["iptables", "-F", CLUSTER.input_chain], check=True)
    assert {g.name for g in asyncio.run(firewall.ensure(GUARDS))} == {OPEN.name, CLUSTER.name}
    assert asyncio.run(firewall.ensure(GUARDS)) == []
    assert f"-A {OPEN.input_chain} -j ACCEPT" not in iptables_s()


def test_removal_and_the_sweep_leave_nothing_behind(clean):
    asyncio.run(firewall.ensure(GUARDS))
    asyncio.run(firewall.remove(OPEN.network_id))
    assert "feed0000000a" not in iptables_s()

    async def the_cluster_and_real_networks_exist():
        return [CLUSTER.network_id, *await network_ids()]

    swept = asyncio.run(firewall.sweep(the_cluster_and_real_networks_exist))
    assert swept >= {"feed0000000b"} and "feed0000000c" not in swept
    assert "feed0000000b" not in iptables_s() and "feed0000000c" in iptables_s()
