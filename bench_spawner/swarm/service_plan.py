"""A workspace as a Swarm service: pure builders of the service spec and the placement rules.

Resources come from the workspace's resource model, as both **reservations** and **limits**:
the scheduler places a workspace only on a node with the model's CPUs and memory still
unreserved (a full swarm is a clear "insufficient resources" instead of an overcommitted
node), and the node's engine enforces the same numbers as the container's CPU quota and
memory limit. GPUs are a generic resource (``--node-generic-resource gpu=N`` on the node's
engine). ``restart_policy`` is ``none``: a workspace that ends stays ended, with its reason,
as on a single host; nothing is silently started again elsewhere with an empty ``/data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docker.types import (
    ContainerSpec,
    DNSConfig,
    EndpointSpec,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    TaskTemplate,
)

from benchhub.resource_models import HostCapacity, ResourceModel, unavailable_reason

GIB = 1024**3
NANO = 10**9
WORKER_ONLY = "node.role==worker"


@dataclass(frozen=True)
class ServicePlan:
    """Everything a workspace service is made of.

    ``node_id`` pins the service to one node (the node holding the workspace's ``/data``
    volume), "" lets the scheduler choose among the nodes ``constraints`` allow (Swarm
    placement constraints, e.g. ``"node.labels.benchhub.workspaces==true"``). ``port`` is
    the server's port in the container, published on the node's own address (host mode: the
    hub reaches the node that runs it, no routing mesh). ``capabilities_dropped`` and
    ``gpu_kind`` (the generic-resource name of GPUs on the nodes) follow the site's settings.
    """

    name: str
    image: str
    model: ResourceModel
    environment: dict[str, str]
    labels: dict[str, str]
    port: int
    data_volume: str
    node_id: str = ""
    constraints: tuple[str, ...] = (WORKER_ONLY,)
    network: str = ""
    capabilities_dropped: tuple[str, ...] = ("ALL",)
    gpu_kind: str = "gpu"
    args: tuple[str, ...] = field(default=())
    publish: bool = True
    dns: tuple[str, ...] = ()


def resources(model: ResourceModel, gpu_kind: str = "gpu") -> Resources:
    """The model's CPUs and memory as reservations and limits (nano-CPUs, bytes); GPUs as
    the generic resource ``gpu_kind``."""
    cpus, memory = int(model.cpus * NANO), int(model.memory_gb * GIB)
    return Resources(
        cpu_limit=cpus,
        cpu_reservation=cpus,
        mem_limit=memory,
        mem_reservation=memory,
        generic_resources={gpu_kind: model.gpus} if model.gpus else None,
    )


def reservations(model: ResourceModel, gpu_kind: str = "gpu") -> Resources:
    """The model's resources as reservations only: a service the scheduler places where the
    workspace would fit, without the workspace's limits (the /data receiver of a move)."""
    return Resources(
        cpu_reservation=int(model.cpus * NANO),
        mem_reservation=int(model.memory_gb * GIB),
        generic_resources={gpu_kind: model.gpus} if model.gpus else None,
    )


def constraints(plan: ServicePlan) -> list[str]:
    """The placement constraints: the site's, and the pinned node when there is one."""
    pinned = [f"node.id=={plan.node_id}"] if plan.node_id else []
    return [*plan.constraints, *pinned]


def create_service_kwargs(plan: ServicePlan) -> dict:
    """Keyword arguments of docker-py's ``APIClient.create_service`` for ``plan``."""
    container = ContainerSpec(
        image=plan.image,
        args=list(plan.args) or None,
        env=dict(plan.environment),
        labels=dict(plan.labels),
        mounts=[Mount(target="/data", source=plan.data_volume, type="volume")],
        cap_drop=list(plan.capabilities_dropped) or None,
        stop_grace_period=5 * NANO,
        dns_config=DNSConfig(nameservers=list(plan.dns)) if plan.dns else None,
    )
    task = TaskTemplate(
        container_spec=container,
        resources=resources(plan.model, plan.gpu_kind),
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=constraints(plan)),
        networks=[plan.network] if plan.network else None,
    )
    if plan.publish:
        endpoint = EndpointSpec(ports={None: (plan.port, "tcp", "host")})
    else:
        endpoint = EndpointSpec(mode="dnsrr")
    return {
        "task_template": task,
        "name": plan.name,
        "labels": dict(plan.labels),
        "endpoint_spec": endpoint,
    }


@dataclass(frozen=True)
class NodeView:
    """The part of a Swarm node placement reads: its role, whether it takes work
    (``availability`` "active", ``state`` "ready"), its size and its address."""

    id: str
    hostname: str
    role: str
    availability: str
    state: str
    cpus: float
    memory_gb: float
    gpus: int
    address: str

    @property
    def takes_workspaces(self) -> bool:
        return self.role == "worker" and self.availability == "active" and self.state == "ready"


def node_view(node: dict, gpu_kind: str = "gpu") -> NodeView:
    """A :class:`NodeView` of one node as the engine API returns it (``GET /nodes``)."""
    description = node.get("Description") or {}
    res = description.get("Resources") or {}
    gpus = 0
    for generic in res.get("GenericResources") or []:
        discrete = generic.get("DiscreteResourceSpec") or {}
        if discrete.get("Kind") == gpu_kind:
            gpus += int(discrete.get("Value", 0))
        named = generic.get("NamedResourceSpec") or {}
        if named.get("Kind") == gpu_kind:
            gpus += 1
    spec, status = node.get("Spec") or {}, node.get("Status") or {}
    return NodeView(
        id=str(node.get("ID", "")),
        hostname=str(description.get("Hostname", "")),
        role=str(spec.get("Role", "")),
        availability=str(spec.get("Availability", "")),
        state=str(status.get("State", "")),
        cpus=res.get("NanoCPUs", 0) / NANO,
        memory_gb=res.get("MemoryBytes", 0) / GIB,
        gpus=gpus,
        address=str(status.get("Addr", "")),
    )


def largest_worker(nodes: list[NodeView]) -> HostCapacity:
    """The most one workspace can get on these nodes: per resource, the largest worker that
    takes workspaces (zeros when none does). Shown in the spawn form like a host's size."""
    workers = [n for n in nodes if n.takes_workspaces]
    return HostCapacity(
        cpus=max((n.cpus for n in workers), default=0.0),
        memory_gb=max((n.memory_gb for n in workers), default=0.0),
        gpus=max((n.gpus for n in workers), default=0),
    )


def unfit_reason(model: ResourceModel, nodes: list[NodeView]) -> str | None:
    """Why no worker node can ever run ``model`` (whatever else runs), or None when one can.

    A node must hold all of the model at once, so one node is checked against all of it;
    the sentence names the first shortfall against the largest worker, e.g. ``"needs 16
    CPUs; the largest worker node has 2"``. A model that fits a node but finds no free room
    now is Swarm's to report ("insufficient resources"), not this.
    """
    workers = [n for n in nodes if n.takes_workspaces]
    if not workers:
        return "no worker node of the swarm is ready and active"
    if any(
        n.cpus >= model.cpus and n.memory_gb >= model.memory_gb and n.gpus >= model.gpus
        for n in workers
    ):
        return None
    return unavailable_reason(model, largest_worker(workers), where="the largest worker node") or (
        "no single worker node has all of its CPUs, memory and GPUs"
    )
