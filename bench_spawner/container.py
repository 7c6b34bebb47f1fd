"""Pure builders for a workspace container: ``docker create`` arguments from a spec.

Nothing here talks to Docker; :class:`bench_spawner.spawner.BenchSpawner` passes the result
to docker-py (``create_host_config`` + ``create_container``). Kept apart so the security
baseline and the limits are visible in one place and tested without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchhub.container_defaults import CPU_PERIOD_US, GIB, LOG_CONFIG
from benchhub.resource_models import ResourceModel

# The images need no Linux capability: the server runs as uid 1000 and tini reaps children.
DROPPED_CAPABILITIES = ["ALL"]
SECURITY_OPTIONS = ["no-new-privileges:true"]


@dataclass(frozen=True)
class ContainerPlan:
    """Everything needed to create one workspace container."""

    name: str
    image: str
    model: ResourceModel
    network: str
    data_source: str
    environment: dict[str, str]
    labels: dict[str, str]
    port: int = 8888
    pids_limit: int = 4096
    address: str | None = None  # fixed address on the network (restricted workspaces)
    dns: list[str] | None = None


def host_config_kwargs(plan: ContainerPlan) -> dict:
    """Keyword arguments for ``docker.APIClient.create_host_config``."""
    memory = int(plan.model.memory_gb * GIB)
    kwargs = dict(
        cpu_period=CPU_PERIOD_US,
        cpu_quota=int(plan.model.cpus * CPU_PERIOD_US),
        mem_limit=memory,
        memswap_limit=memory,  # no swap: the limit is the limit
        pids_limit=plan.pids_limit,
        cap_drop=list(DROPPED_CAPABILITIES),
        security_opt=list(SECURITY_OPTIONS),
        network_mode=plan.network,
        binds={plan.data_source: {"bind": "/data", "mode": "rw"}},
        init=False,  # tini is the image's entrypoint
        restart_policy={"Name": "no"},
        log_config=LOG_CONFIG,
    )
    if plan.dns:
        kwargs["dns"] = list(plan.dns)
        # the only resolver a restricted workspace has answers nothing for outside names:
        # fail a lookup in 1 s instead of the resolver's default 2 x 5 s (measured)
        kwargs["dns_opt"] = ["timeout:1", "attempts:1"]
    if plan.model.gpus:
        kwargs["device_requests"] = [
            {"Driver": "", "Count": plan.model.gpus, "Capabilities": [["gpu"]]}
        ]
    return kwargs


def create_kwargs(plan: ContainerPlan) -> dict:
    """Keyword arguments for ``docker.APIClient.create_container`` (without host_config)."""
    return dict(
        image=plan.image,
        name=plan.name,
        environment=dict(plan.environment),
        labels=dict(plan.labels),
        ports=[plan.port],
        volumes=["/data"],
    )
