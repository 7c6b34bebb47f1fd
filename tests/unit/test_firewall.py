"""The host firewall's rules for BenchHub's bridges, built without iptables.

What they must say: a workspace bridge reaches the host only on the hub's port and no
neighbour (the restricted one: the egress proxy's port, and its replies); a cluster bridge
reaches no host port and keeps its own traffic. The text must be exactly what ``iptables -S``
prints, so that checking "all in place" is a comparison (tests/integration/test_host_firewall.py
checks that against the real iptables).
"""

from __future__ import annotations

import pytest

from benchhub.firewall import (
    BridgeGuard,
    Opening,
    chain_rules,
    in_place,
    jump_rules,
    remove_text,
    restore_text,
    stale_ids,
)
from benchhub.networks import WorkspaceNetwork, made_before_isolation, workspace_guard
from hub_services.clusters.containers import network_guard

OPEN_ID = "a1b2c3d4e5f6" + "0" * 52
RESTRICTED_ID = "0123456789ab" + "f" * 52
CLUSTER_ID = "c0ffee000001" + "1" * 52
DOCKER_CHAINS = [
    "-P INPUT ACCEPT",
    "-P FORWARD DROP",
    "-N DOCKER",
    "-N DOCKER-USER",
    "-A FORWARD -j DOCKER-USER",
    "-A DOCKER-USER -j RETURN",
]


def installed(*guards: BridgeGuard, parent: str = "DOCKER-USER") -> list[str]:
    """What ``iptables -S`` lists once ``guards`` are in place (Docker's chains around)."""
    lines = list(DOCKER_CHAINS)
    for guard in guards:
        rules = chain_rules(guard)
        lines += [f"-N {chain}" for chain in rules]
        lines += [rule for chain in rules.values() for rule in chain]
        lines += jump_rules(guard, parent)
    return lines


def open_guard() -> BridgeGuard:
    net = WorkspaceNetwork("bench-open", OPEN_ID, "172.20.0.0/16", "172.20.0.1")
    return workspace_guard(net, "open", 8081)


def restricted_guard() -> BridgeGuard:
    net = WorkspaceNetwork("bench-restricted", RESTRICTED_ID, "10.213.0.0/16", "10.213.0.1")
    return workspace_guard(net, "restricted", 8081)


def test_an_open_workspace_bridge_reaches_the_hub_port_and_no_neighbour():
    rules = chain_rules(open_guard())
    assert rules["BENCH-IN-a1b2c3d4e5f6"] == [
        "-A BENCH-IN-a1b2c3d4e5f6 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A BENCH-IN-a1b2c3d4e5f6 -p tcp -m tcp --dport 8081 -j ACCEPT",
        "-A BENCH-IN-a1b2c3d4e5f6 -j REJECT --reject-with icmp-admin-prohibited",
    ]
    assert rules["BENCH-FWD-a1b2c3d4e5f6"] == ["-A BENCH-FWD-a1b2c3d4e5f6 -j DROP"]
    assert jump_rules(open_guard()) == [
        '-A INPUT -i br-a1b2c3d4e5f6 -m comment --comment "benchhub bench-open" '
        "-j BENCH-IN-a1b2c3d4e5f6",
        "-A DOCKER-USER -i br-a1b2c3d4e5f6 -o br-a1b2c3d4e5f6 -m comment --comment "
        '"benchhub bench-open" -j BENCH-FWD-a1b2c3d4e5f6',
    ]


def test_a_restricted_workspace_reaches_only_the_proxy_port_among_its_neighbours():
    forward = chain_rules(restricted_guard())["BENCH-FWD-0123456789ab"]
    assert forward == [
        "-A BENCH-FWD-0123456789ab -d 10.213.0.2/32 -p tcp -m tcp --dport 3128 -j ACCEPT",
        "-A BENCH-FWD-0123456789ab -s 10.213.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED "
        "-j ACCEPT",
        "-A BENCH-FWD-0123456789ab -j DROP",
    ]
    assert "--dport 8081" in " ".join(chain_rules(restricted_guard())["BENCH-IN-0123456789ab"])


def test_a_cluster_bridge_reaches_no_host_port_and_keeps_its_own_traffic():
    guard = network_guard(CLUSTER_ID, "bench-cluster-k3x9q2")
    assert chain_rules(guard) == {
        "BENCH-IN-c0ffee000001": [
            "-A BENCH-IN-c0ffee000001 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A BENCH-IN-c0ffee000001 -j REJECT --reject-with icmp-admin-prohibited",
        ]
    }
    assert len(jump_rules(guard)) == 1 and jump_rules(guard)[0].startswith("-A INPUT ")


def test_a_guard_is_in_place_only_when_every_rule_and_jump_is_there_in_order():
    guard = restricted_guard()
    full = installed(guard)
    assert in_place(guard, full)
    for missing in [line for line in full if line not in DOCKER_CHAINS and line[:2] == "-A"]:
        assert not in_place(guard, [line for line in full if line != missing]), missing
    extra = full + ["-A BENCH-IN-0123456789ab -p tcp -m tcp --dport 22 -j ACCEPT"]
    assert not in_place(guard, extra)  # a rule someone added lets something through
    swapped = [line for line in full if "REJECT" not in line]
    swapped.insert(
        swapped.index(chain_rules(guard)["BENCH-IN-0123456789ab"][0]),
        chain_rules(guard)["BENCH-IN-0123456789ab"][-1],
    )
    assert not in_place(guard, swapped)  # the reject first: the hub port would be closed
    other_port = workspace_guard(
        WorkspaceNetwork("bench-restricted", RESTRICTED_ID, "10.213.0.0/16", "10.213.0.1"),
        "restricted",
        9999,
    )
    assert not in_place(other_port, full)  # the hub moved: the chain is rewritten


def test_restoring_declares_the_chains_and_inserts_only_missing_jumps_first():
    guard = open_guard()
    without_jumps = [line for line in installed(guard) if not line.startswith("-A INPUT")]
    text = restore_text([guard], without_jumps)
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert ":BENCH-IN-a1b2c3d4e5f6 - [0:0]" in lines and ":BENCH-FWD-a1b2c3d4e5f6 - [0:0]" in lines
    inserted = [line for line in lines if line.startswith("-I ")]
    assert inserted == [
        '-I INPUT 1 -i br-a1b2c3d4e5f6 -m comment --comment "benchhub bench-open" '
        "-j BENCH-IN-a1b2c3d4e5f6"
    ]
    assert lines.index(inserted[0]) > lines.index(
        "-A BENCH-IN-a1b2c3d4e5f6 -j REJECT --reject-with icmp-admin-prohibited"
    )


def test_without_docker_user_the_isolation_jump_goes_first_in_forward():
    guard = open_guard()
    listing = [line for line in DOCKER_CHAINS if "DOCKER-USER" not in line]
    text = restore_text([guard], listing)
    assert "-I FORWARD 1 -i br-a1b2c3d4e5f6 -o br-a1b2c3d4e5f6" in text
    ours = installed(guard, parent="FORWARD")[len(DOCKER_CHAINS) :]
    assert in_place(guard, [*listing, *ours])


def test_removing_deletes_the_jumps_then_the_chains_also_the_old_restricted_chain():
    old = [
        "-N BENCH-RESTRICT-0123456789ab",
        "-A INPUT -i br-0123456789ab -j BENCH-RESTRICT-0123456789ab",
        "-A BENCH-RESTRICT-0123456789ab -j DROP",
    ]
    listing = installed(restricted_guard(), open_guard()) + old
    text = remove_text(listing, {"0123456789ab"})
    lines = text.splitlines()
    deletes = [line for line in lines if line.startswith("-D ")]
    assert len(deletes) == 3 and all("0123456789ab" in line for line in deletes)
    assert "-D INPUT -i br-0123456789ab -j BENCH-RESTRICT-0123456789ab" in lines
    assert lines.index(deletes[-1]) < lines.index("-F BENCH-IN-0123456789ab")
    assert {
        "-X BENCH-IN-0123456789ab",
        "-X BENCH-FWD-0123456789ab",
        "-X BENCH-RESTRICT-0123456789ab",
    } <= set(lines)
    assert "a1b2c3d4e5f6" not in text  # the other bridge's rules stay
    assert remove_text(DOCKER_CHAINS, {"0123456789ab"}) is None


def test_rules_of_bridges_whose_network_is_gone_are_stale():
    listing = installed(restricted_guard(), open_guard())
    assert stale_ids(listing, [OPEN_ID]) == {"0123456789ab"}
    assert stale_ids(listing, [OPEN_ID, RESTRICTED_ID, CLUSTER_ID]) == set()


def test_a_guard_refuses_what_would_make_a_bad_rule():
    with pytest.raises(ValueError, match="network id"):
        BridgeGuard("br-0", "bench-open")
    with pytest.raises(ValueError, match="network name"):
        BridgeGuard(OPEN_ID, 'bench" -j ACCEPT')
    with pytest.raises(ValueError, match="isolated"):
        BridgeGuard(OPEN_ID, "bench-open", openings=(Opening("10.0.0.2", 3128),))


def test_a_workspace_network_made_before_isolation_is_recognised():
    assert made_before_isolation({"Options": {"com.docker.network.driver.mtu": "1400"}})
    assert made_before_isolation({"Options": None})
    assert not made_before_isolation({"Options": {"com.docker.network.bridge.enable_icc": "false"}})
