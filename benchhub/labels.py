"""The Docker labels by which BenchHub finds what it created, and whose it is.

A workspace container carries :data:`USER`, :data:`WORKSPACE` and :data:`RESOURCE_MODEL`;
a cluster's network and containers carry :data:`CLUSTER` + ``.prefix``, ``.id``, ``.user``,
``.workspace`` and ``.role`` (never the workspace labels, so that what lists workspaces never
sees cluster nodes); networks carry :data:`NETWORK`; the egress proxy :data:`ROLE`. On a
swarm, the one-shot services that move a workspace's ``/data`` carry :data:`MOVE`, and the one
that removes a deleted workspace's volume :data:`DELETE` and :data:`DELETE_NODE`.
"""

from __future__ import annotations

__all__ = [
    "CLUSTER",
    "DELETE",
    "DELETE_NODE",
    "MOVE",
    "NETWORK",
    "RESTRICTED_OVERLAY",
    "RESOURCE_MODEL",
    "ROLE",
    "USER",
    "WORKSPACE",
    "cluster_label",
    "workspace_key",
    "workspace_labels",
]

USER = "org.benchhub.user"
WORKSPACE = "org.benchhub.workspace"
RESOURCE_MODEL = "org.benchhub.resource-model"
CLUSTER = "org.benchhub.cluster"
NETWORK = "org.benchhub.network"
ROLE = "org.benchhub.role"
# the NETWORK label of a restricted workspace's own overlay on a swarm (docs/swarm.md)
RESTRICTED_OVERLAY = "swarm-restricted"
MOVE = "org.benchhub.move"  # a mover service: the workspace service it moves
DELETE = "org.benchhub.delete"  # a deleter service: the deleted workspace's service name
DELETE_NODE = "org.benchhub.delete-node"  # ... and the id of the node holding its volume


def workspace_labels(user: str, workspace: str, resource_model: str) -> dict[str, str]:
    """The labels of a workspace container."""
    return {USER: user, WORKSPACE: workspace, RESOURCE_MODEL: resource_model}


def workspace_key(labels: dict) -> str:
    """``"user/workspace"`` of a workspace container from its labels."""
    return f"{labels[USER]}/{labels[WORKSPACE]}"


def cluster_label(part: str) -> str:
    """A cluster label key, e.g. ``cluster_label("id")`` = ``org.benchhub.cluster.id``."""
    return f"{CLUSTER}.{part}"
