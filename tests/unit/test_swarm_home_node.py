"""Where a swarm workspace's start goes, from the node that holds its /data (home_node.py)."""

from bench_spawner.swarm.home_node import Home, decide_home
from bench_spawner.swarm.service_plan import NodeView


def node(id_="n1", state="ready", availability="active", hostname="worker-1"):
    return NodeView(id_, hostname, "worker", availability, state, 2, 4, 0, "10.0.0.2")


def test_a_workspace_that_never_ran_goes_where_the_scheduler_chooses():
    assert decide_home("", [node()]).kind is Home.ANY


def test_a_workspace_starts_again_on_the_ready_node_that_holds_its_data():
    decision = decide_home("n1", [node("n0"), node("n1")])
    assert decision.kind is Home.PINNED and decision.node.id == "n1"


def test_a_down_node_refuses_the_start_as_node_lost_and_names_the_node():
    decision = decide_home("n1", [node(state="down")])
    assert decision.kind is Home.REFUSED
    assert decision.reason.startswith("node lost: swarm node worker-1 is down")
    assert "start the workspace again once the node is back" in decision.reason


def test_a_node_that_left_the_swarm_refuses_the_start_as_node_lost():
    decision = decide_home("gone", [node()])
    assert decision.kind is Home.REFUSED and decision.node is None
    assert decision.reason.startswith("node lost: swarm node gone left the swarm")


def test_a_drained_node_moves_the_workspace_before_it_starts():
    decision = decide_home("n1", [node(availability="drain")])
    assert decision.kind is Home.MOVE and decision.node.hostname == "worker-1"


def test_a_drained_node_that_is_down_is_lost_not_moved():
    # nothing can copy from a node that does not answer
    assert decide_home("n1", [node(state="down", availability="drain")]).kind is Home.REFUSED


def test_a_paused_node_refuses_the_start_saying_what_an_operator_does():
    decision = decide_home("n1", [node(availability="pause")])
    assert decision.kind is Home.REFUSED
    assert "pause" in decision.reason and "drains it to move the workspace" in decision.reason
