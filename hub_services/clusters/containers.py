"""Pure builders for a cluster's Docker objects: names, labels, the network, the containers.

Nothing here talks to Docker; :mod:`.nodes` passes the results to docker-py
(``create_network``, ``create_host_config`` + ``create_container``). A cluster of workspace
``alice/ws1`` with id ``k3x9q2`` under prefix ``bench`` is::

    network  bench-cluster-k3x9q2           its own subnet, e.g. 10.231.0.64/26
    manager  bench-cluster-k3x9q2-manager   address .2 (the gateway is .1)
    members  bench-cluster-k3x9q2-m1, -m2 … numbered up, a number is never used twice

Names are short on purpose: they are also the containers' host names, which Grid Engine and
Docker's DNS use and which may not exceed 63 characters. Who a cluster belongs to is in the
labels (:func:`labels`), never the ``org.benchhub.user``/``org.benchhub.workspace`` labels of
workspace containers, so services that list workspaces by those labels never see cluster nodes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from benchhub.container_defaults import CPU_PERIOD_US, LOG_CONFIG
from benchhub.firewall import BridgeGuard
from benchhub.labels import CLUSTER

__all__ = [
    "CAPABILITIES",
    "DATA",
    "LABEL",
    "PUBLISH_DIR",
    "ClusterNames",
    "Mount",
    "NodePlan",
    "create_kwargs",
    "data_mounts",
    "host_config_kwargs",
    "labels",
    "network_guard",
    "network_kwargs",
    "networking_kwargs",
]

LABEL = CLUSTER  # label keys are LABEL + ".prefix", ".id", ".user", ...
DATA = "/data"
SCRATCH = "/scratch"
CONFIG_DIR = "/etc/bench-sge"
# Where the manager publishes the client files (act_qmaster, bootstrap, accounting) in the
# shared /data; the workspace image's $SGE_ROOT/default/common is a link to it.
PUBLISH_DIR = "/data/.sge/common"
# No daemon runs as root (images/cluster/bench-cluster, "Who runs what"): the entry point,
# root, only starts them as their users (SETUID/SETGID: the qmaster as sgeadmin; sge_execd,
# Spark and so every job as the workspace user, with no capabilities) and signals them
# (KILL: tini passes SIGTERM on, the manager stops its daemons). Everything else Docker grants
# by default is dropped, also what a root sge_execd would need (CHOWN, DAC_OVERRIDE, FOWNER).
CAPABILITIES = ["KILL", "SETGID", "SETUID"]
SECURITY_OPTIONS = ["no-new-privileges:true"]
# Economy mode: a preemptible member is the first the kernel's OOM killer reclaims when the
# host runs short of memory, and gets half the CPU weight of others under contention.
PREEMPTIBLE_OOM_SCORE_ADJ = 500
PREEMPTIBLE_CPU_SHARES = 512
_ROLES = ("manager", "member")


@dataclass(frozen=True)
class ClusterNames:
    """The Docker names of cluster ``cluster_id`` under ``prefix`` (see the module docstring)."""

    prefix: str
    cluster_id: str

    @property
    def network(self) -> str:
        return f"{self.prefix}-cluster-{self.cluster_id}"

    @property
    def manager(self) -> str:
        return f"{self.network}-manager"

    def member(self, number: int) -> str:
        """The name of the ``number``-th member ever started in this cluster (1, 2, …)."""
        if number < 1:
            raise ValueError(f"member numbers start at 1, got {number}")
        return f"{self.network}-m{number}"


def labels(prefix: str, cluster_id: str, user: str, workspace: str, role: str | None) -> dict:
    """Labels of a cluster's network (``role`` None) and containers (``manager``/``member``):
    enough to find every object of a cluster, and whose it is, from Docker alone."""
    found = {
        f"{LABEL}.prefix": prefix,
        f"{LABEL}.id": cluster_id,
        f"{LABEL}.user": user,
        f"{LABEL}.workspace": workspace,
    }
    if role is not None:
        if role not in _ROLES:
            raise ValueError(f"role must be one of {', '.join(_ROLES)}, got {role!r}")
        found[f"{LABEL}.role"] = role
    return found


def network_kwargs(name: str, subnet: str, internal: bool, mtu: int, label_map: dict) -> dict:
    """Keyword arguments for ``docker.APIClient.create_network``: a bridge with ``subnet``
    (gateway = first address) and the host's MTU. ``internal`` (for a restricted workspace's
    cluster) gives the network no route out, so neither members nor the workspace gain one."""
    import docker  # only for the IPAM helper types; no client is made

    net = ipaddress.IPv4Network(subnet)
    pool = docker.types.IPAMPool(subnet=str(net), gateway=str(net.network_address + 1))
    return dict(
        name=name,
        driver="bridge",
        check_duplicate=True,
        internal=internal,
        ipam=docker.types.IPAMConfig(pool_configs=[pool]),
        options={"com.docker.network.driver.mtu": str(mtu)},
        labels=dict(label_map),
    )


def network_guard(network_id: str, name: str) -> BridgeGuard:
    """The host firewall of a cluster's network: its containers (manager, members and the
    workspace) reach each other, as Grid Engine and Spark need, and the host only with replies
    to connections the host opened: no host port, not even the hub's (nothing on the cluster
    network needs the hub). Other networks are Docker's isolation's to keep apart."""
    return BridgeGuard(network_id, name)


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into a container."""

    source: str
    target: str
    read_only: bool = False


def data_mounts(workspace: dict) -> list[Mount]:
    """The workspace's ``/data`` and everything mounted below it (``/data/project``, fast
    mounts), from ``docker inspect`` of the workspace container, with the same read-only
    flags: a cluster node sees the same files with the same rights. Empty when the workspace
    has no bind-mounted ``/data`` (then it cannot have a cluster)."""
    found = []
    for entry in workspace.get("Mounts") or []:
        target = entry.get("Destination", "")
        if entry.get("Type") != "bind" or not (target == DATA or target.startswith(DATA + "/")):
            continue
        found.append(Mount(entry["Source"], target, read_only=not entry.get("RW", True)))
    return sorted(found, key=lambda m: m.target)


@dataclass(frozen=True)
class NodePlan:
    """Everything needed to create one cluster container (manager or member).

    ``cpus`` in cores (may be fractional), ``memory`` in bytes (the hard limit, no swap).
    """

    name: str
    role: str
    image: str
    command: list[str]
    network: str
    address: str
    cpus: float
    memory: int
    mounts: list[Mount]
    labels: dict[str, str]
    environment: dict[str, str] = field(default_factory=dict)
    preemptible: bool = False
    gpus: int = 0
    pids_limit: int = 4096
    aliases: tuple[str, ...] = ()  # more names on the cluster network (the manager: spark-master)


def host_config_kwargs(plan: NodePlan) -> dict:
    """Keyword arguments for ``docker.APIClient.create_host_config``."""
    kwargs = dict(
        cpu_period=CPU_PERIOD_US,
        cpu_quota=max(1000, int(plan.cpus * CPU_PERIOD_US)),
        mem_limit=plan.memory,
        memswap_limit=plan.memory,
        pids_limit=plan.pids_limit,
        cap_drop=["ALL"],
        cap_add=list(CAPABILITIES),
        security_opt=list(SECURITY_OPTIONS),
        network_mode=plan.network,
        binds={
            m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in plan.mounts
        },
        init=False,  # tini is the image's entrypoint
        restart_policy={"Name": "no"},
        log_config=LOG_CONFIG,  # what jobs print cannot fill the host's disk
    )
    if plan.preemptible:
        kwargs.update(oom_score_adj=PREEMPTIBLE_OOM_SCORE_ADJ, cpu_shares=PREEMPTIBLE_CPU_SHARES)
    if plan.gpus:
        kwargs["device_requests"] = [{"Driver": "", "Count": plan.gpus, "Capabilities": [["gpu"]]}]
    return kwargs


def create_kwargs(plan: NodePlan) -> dict:
    """Keyword arguments for ``docker.APIClient.create_container`` (without host_config and
    networking_config). The host name is the container name (Grid Engine knows hosts by it)."""
    return dict(
        image=plan.image,
        name=plan.name,
        hostname=plan.name,
        command=list(plan.command),
        environment=dict(plan.environment),
        labels=dict(plan.labels),
        volumes=[m.target for m in plan.mounts],
    )


def networking_kwargs(plan: NodePlan) -> dict:
    """``{network: {"ipv4_address": ..., "aliases": [...]}}`` for ``create_networking_config``
    / ``create_endpoint_config``: every node has a fixed address that is never reused soon."""
    return {plan.network: {"ipv4_address": plan.address, "aliases": list(plan.aliases)}}
