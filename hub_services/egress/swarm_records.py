"""On a swarm: a running restricted workspace's egress record, rebuilt when it was lost.

The spawner registers a restricted workspace once its task runs (benchhub.egress_state); if
that record is lost (the egress state directory restored from a backup, a record removed by
hand), the workspace has no way out and the hub no way in (fail closed) until it is
restarted. The egress service rebuilds it instead, from what Swarm and the hub say: the
workspace's Swarm service (its labels name the workspace; its one network is its own
overlay, labelled as such), the task's address on that overlay, the server's URL prefix and
whitelist from the hub. A workspace the hub does not list as running is left alone.

:func:`lost_record` is pure; the service gathers its inputs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from benchhub.labels import NETWORK, RESTRICTED_OVERLAY, USER, WORKSPACE
from benchhub.networks import WorkspaceNetwork
from benchhub.whitelist import normalised_entries

__all__ = ["lost_record", "overlay_of", "workspace_key_of"]

DEFAULT_PORT = 8888


def workspace_key_of(service: dict) -> str | None:
    """``user/workspace`` of a workspace's Swarm service, None for another service."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    if USER not in labels or WORKSPACE not in labels:
        return None
    return f"{labels[USER]}/{labels[WORKSPACE]}"


def overlay_of(service: dict) -> str | None:
    """The one network a restricted workspace's service is on (an id or name), else None."""
    networks = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Networks") or []
    return networks[0].get("Target") if len(networks) == 1 else None


def _server_port(service: dict) -> int:
    env = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    for item in env.get("Env") or []:
        name, _, value = str(item).partition("=")
        if name == "JUPYTERHUB_SERVICE_URL":
            return urlsplit(value).port or DEFAULT_PORT
    return DEFAULT_PORT


def _task_address(tasks: list[dict], network_id: str) -> str | None:
    for task in tasks:
        if ((task.get("Status") or {}).get("State")) != "running":
            continue
        for attachment in task.get("NetworksAttachments") or []:
            if (attachment.get("Network") or {}).get("ID") == network_id:
                addresses = attachment.get("Addresses") or []
                if addresses:
                    return str(addresses[0]).split("/")[0]
    return None


def lost_record(service: dict, network: dict, tasks: list[dict], server: dict) -> dict | None:
    """The egress record (``register``'s arguments as a dict: ``container``, ``address``,
    ``entries``, ``gateway``) of a running restricted workspace, from its Swarm ``service``,
    the ``network`` it is on (``GET /networks/<id>``), the service's ``tasks`` and the hub's
    model of its ``server`` (``url``, ``user_options``); None when any of them says it is no
    running restricted workspace on its own overlay."""
    labels = network.get("Labels") or {}
    configs = (network.get("IPAM") or {}).get("Config") or []
    if labels.get(NETWORK) != RESTRICTED_OVERLAY or not configs or not server.get("url"):
        return None
    options = server.get("user_options") or {}
    if options.get("access_mode") != "restricted":
        return None
    address = _task_address(tasks, network.get("Id", ""))
    if address is None:
        return None
    subnet = configs[0]["Subnet"]
    proxy = WorkspaceNetwork(network["Name"], network["Id"], subnet, "").proxy_address
    return {
        "container": (service.get("Spec") or {}).get("Name", ""),
        "address": address,
        "entries": normalised_entries(options.get("whitelist") or []),
        "gateway": {
            "network": network["Name"],
            "proxy_address": proxy,
            "prefix": server["url"],
            "port": _server_port(service),
        },
    }
