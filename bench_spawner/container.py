"""Pure builders for a workspace container: ``docker create`` arguments from a spec.

Nothing here talks to Docker; :class:`bench_spawner.spawner.BenchSpawner` passes the result
to docker-py (``create_host_config`` + ``create_container``). Kept apart so the security
baseline and the limits are visible in one place and tested without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchhub.container_defaults import CPU_PERIOD_US, GIB, LOG_CONFIG
from benchhub.resource_models import ResourceModel

# Without root in the workspace the images need no Linux capability: the server runs as uid
# 1000 and tini reaps children; nothing may gain privileges (sudo's set-uid bit is inert).
DROPPED_CAPABILITIES = ["ALL"]
SECURITY_OPTIONS = ["no-new-privileges:true"]
# With root in the workspace (only on an engine that remaps user ids: root there is an
# unprivileged host uid): what `sudo apt-get install` needs, measured one by one on the
# workspace image (docs/security.md, "Root inside a workspace", says why each).
ROOT_CAPABILITIES = [
    "SETUID",  # sudo becomes root; apt drops to its _apt user to download
    "SETGID",  # the same for groups
    "CHOWN",  # dpkg gives files their package owners; apt hands its download dir to _apt
    "DAC_OVERRIDE",  # root opens files whatever their mode (apt's lists, dpkg's database)
    "FOWNER",  # root chmods files it does not own (apt's _apt-owned partial downloads)
    "FSETID",  # dpkg keeps set-id bits (without it e.g. plocate installs without its setgid)
]


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
    root_inside: bool = False  # sudo works (the engine remaps user ids; see root_inside())
    # the project's shared data: (host path, read-only) bound at /data/project, None: no mount
    project_data: tuple[str, bool] | None = None


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
        security_opt=[] if plan.root_inside else list(SECURITY_OPTIONS),
        network_mode=plan.network,
        binds=_binds(plan),
        init=False,  # tini is the image's entrypoint
        restart_policy={"Name": "no"},
        log_config=LOG_CONFIG,
    )
    if plan.root_inside:
        kwargs["cap_add"] = list(ROOT_CAPABILITIES)
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


def _binds(plan: ContainerPlan) -> dict:
    binds = {plan.data_source: {"bind": "/data", "mode": "rw"}}
    if plan.project_data is not None:  # a plain bind: cluster members mirror it (inspect)
        source, read_only = plan.project_data
        binds[source] = {"bind": "/data/project", "mode": "ro" if read_only else "rw"}
    return binds


def create_kwargs(plan: ContainerPlan) -> dict:
    """Keyword arguments for ``docker.APIClient.create_container`` (without host_config)."""
    return dict(
        image=plan.image,
        name=plan.name,
        environment=dict(plan.environment),
        labels=dict(plan.labels),
        ports=[plan.port],
        volumes=["/data"] + (["/data/project"] if plan.project_data is not None else []),
    )


NO_ROOT_NOTICE = (
    "System packages are unavailable in this workspace (no apt-get; pip works): the Docker "
    "engine does not remap user ids, so root inside a workspace would be root on the host "
    "(docs/security.md, 'Root inside a workspace')"
)


def root_inside(engine_remaps: bool, allowed: bool) -> tuple[bool, str | None]:
    """Whether a workspace gets root inside (sudo, apt-get), and what its start says when it
    does not: only on an engine that remaps user ids (``engine_remaps``), and only if the
    operator allows it."""
    if not allowed:
        return False, None
    if not engine_remaps:
        return False, NO_ROOT_NOTICE
    return True, None
