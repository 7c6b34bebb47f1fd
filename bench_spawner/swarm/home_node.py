"""Where a workspace's start goes, from the node that holds its ``/data``: pure, no Docker.

A workspace's ``/data`` is a volume on one node (the spawner state remembers that node's id).
Its next start must land there, or move the data first, or refuse; it never starts empty on
another node:

- no node yet (never ran): the scheduler chooses among the workers;
- the node is ready and active: the start is pinned to it;
- the node is **drained** (``docker node update --availability drain``: an operator retires
  it): the data is moved to another node first (:mod:`.data_move`), then the start goes there;
- the node is down, gone from the swarm, or paused: the start is refused with a reason that
  says so ("node lost: ..."); the data stays on the node for when it is back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .service_plan import NodeView
from .task_outcome import node_lost_reason


class Home(Enum):
    ANY = "any"
    PINNED = "pinned"
    MOVE = "move"
    REFUSED = "refused"


@dataclass(frozen=True)
class HomeDecision:
    """``kind`` of start; ``node`` the node holding ``/data`` (None when there is none or it
    left the swarm); ``reason`` the sentence of a refusal."""

    kind: Home
    node: NodeView | None = None
    reason: str = ""


def decide_home(node_id: str, nodes: list[NodeView]) -> HomeDecision:
    """The start's placement for a workspace whose ``/data`` is on ``node_id`` ("" when it
    never ran), given the swarm's ``nodes`` as the manager lists them now."""
    if not node_id:
        return HomeDecision(Home.ANY)
    node = next((n for n in nodes if n.id == node_id), None)
    if node is None:
        return HomeDecision(Home.REFUSED, None, node_lost_reason(node_id, "left the swarm"))
    if node.state != "ready":
        return HomeDecision(Home.REFUSED, node, node_lost_reason(node.hostname, "is down"))
    if node.availability == "drain":
        return HomeDecision(Home.MOVE, node)
    if node.availability != "active":
        return HomeDecision(
            Home.REFUSED,
            node,
            f"swarm node {node.hostname} that holds this workspace's /data is "
            f"{node.availability} (it takes no new tasks); an operator sets it active again, "
            "or drains it to move the workspace to another node",
        )
    return HomeDecision(Home.PINNED, node)
