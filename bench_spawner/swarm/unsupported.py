"""What BenchSwarmSpawner does not do yet, refused where it is asked for (docs/swarm.md).

Two places: the hub's configuration (:func:`config_problems`, raised at hub start by
``BenchSwarmSpawner.check_config``) and a workspace's options (:func:`option_problems`, a
400 naming the field). Each sentence says what is refused, why, and what to do instead.
Silently ignoring any of them would break a promise the single-host product keeps: a
restricted workspace would have a way out, ``/data`` would outgrow its size, a stop would
lose what a checkpoint keeps, a cluster would start on the wrong engine.
"""

from __future__ import annotations

from benchhub.package_spec import NO_PACKAGES
from benchhub.projects import PERSONAL
from benchhub.workspace_spec import RESTORE_LATEST, FieldError, WorkspaceSpec

DOCS = "docs/swarm.md"
GATEWAY_FLAGS = ("--docker-host=", "--workspaces-port=")  # the egress service as the gateway

# Hub services that act on workspaces through the hub's own Docker engine: on a swarm they
# would not find the workspaces (or worse, start things beside the hub). The egress service
# configured as the swarm's gateway (GATEWAY_FLAGS in its command) is not one of them.
UNSUPPORTED_SERVICES = {
    "egress": "the single-host egress proxy would start on the hub's engine, out of the "
    "workspaces' reach; make it the swarm's gateway on the manager with "
    "use_egress_gateway(c, ...) (bench_spawner/swarm/restricted.py), which adds "
    "--docker-host and --workspaces-port to its command",
    "checkpoints": "checkpoints read a workspace's files on the engine that runs it, which is "
    "a node of the swarm, not the hub's engine",
    "clusters": "clusters run on the hub's own engine and could not reach workspaces on the "
    "swarm's nodes",
    "mounts": "fast mounts attach project data through the hub's own engine",
}


def config_problems(
    services: list[dict], checkpoints_enabled: bool | None, storage_class: str | None
) -> list[str]:
    """Problems with a hub configuration meant for BenchSwarmSpawner, each a sentence.

    ``services`` is ``c.JupyterHub.services``; ``checkpoints_enabled`` and
    ``storage_class`` are the values the configuration sets explicitly for the spawner
    (None when unset): asking for checkpoints or for the size-enforced loop-device volume
    is refused rather than ignored.
    """
    problems = []
    for service in services:
        name = service.get("name", "")
        if name == "egress" and _is_gateway(service):
            continue
        if name in UNSUPPORTED_SERVICES and service.get("command"):
            problems.append(
                f"c.JupyterHub.services starts the '{name}' service, but "
                f"{UNSUPPORTED_SERVICES[name]}; remove it from c.JupyterHub.services "
                f"when the spawner is BenchSwarmSpawner ({DOCS})"
            )
    if checkpoints_enabled:
        problems.append(
            "checkpoints_enabled is True, but checkpoints are not available on a swarm yet "
            f"(a workspace's files live on the node that runs it); set it to False ({DOCS})"
        )
    if storage_class and "LoopbackVolume" in storage_class:
        problems.append(
            f"storage_class is {storage_class}, but a size-enforced /data needs a loop device "
            "on the node that runs the workspace, which a swarm does not offer yet; /data is a "
            f"Docker volume on that node, its size not enforced; drop the setting ({DOCS})"
        )
    return problems


def _is_gateway(service: dict) -> bool:
    command = [str(arg) for arg in service.get("command") or []]
    return all(any(arg.startswith(flag) for arg in command) for flag in GATEWAY_FLAGS)


def option_problems(spec: WorkspaceSpec, restricted_access: bool = False) -> list[FieldError]:
    """Options a swarm workspace cannot honour, each naming the field and what is allowed.
    ``restricted_access``: whether the hub runs the egress service as the swarm's gateway
    (BenchSwarmSpawner.gateway_workspaces_port set)."""
    problems = []
    allowed = ("open", "restricted") if restricted_access else ("open",)
    if spec.access_mode not in allowed:
        problems.append(
            FieldError(
                "access_mode",
                f"'{spec.access_mode}' is not available on this hub's swarm; allowed: "
                f"{', '.join(allowed)} (restricted needs the egress service as the swarm's "
                f"gateway, {DOCS})",
            )
        )
    if spec.packages != NO_PACKAGES:
        problems.append(
            FieldError(
                "packages",
                f"installing packages at start is not available on a swarm yet; allowed: none "
                f"(install them in the workspace) ({DOCS})",
            )
        )
    if spec.restore_checkpoint not in (RESTORE_LATEST, "none"):
        problems.append(
            FieldError(
                "restore_checkpoint",
                f"checkpoints are not available on a swarm yet; allowed: '' or 'none' ({DOCS})",
            )
        )
    if spec.project != PERSONAL:
        problems.append(
            FieldError(
                "project",
                f"project workspaces are not available on a swarm yet; allowed: '' (your "
                f"personal project) ({DOCS})",
            )
        )
    return problems


def drop_unsupported_services(config, keep=()) -> list[str]:
    """Remove from a hub configuration (``c`` in jupyterhub_config.py) the services of
    :data:`UNSUPPORTED_SERVICES` but those named in ``keep`` (``["egress"]`` before
    ``use_egress_gateway``), with their roles and the scopes that name them, so a
    single-host configuration can be turned into a swarm one by layering on top of it
    (docs/swarm.md). Returns the names removed."""
    hub = config.JupyterHub
    unsupported = set(UNSUPPORTED_SERVICES) - set(keep)
    dropped = [s["name"] for s in hub.services if s.get("name") in unsupported]
    hub.services = [s for s in hub.services if s.get("name") not in unsupported]
    named = {f"access:services!service={name}" for name in dropped}
    roles = []
    for role in hub.load_roles:
        services = [s for s in role.get("services", []) if s not in dropped]
        if role.get("services") and not services:
            continue  # the role of a dropped service
        role = dict(role)  # only keys it had: JupyterHub refuses e.g. scopes on "admin"
        if "scopes" in role:
            role["scopes"] = [s for s in role["scopes"] if s not in named]
        if "services" in role:
            role["services"] = services
        roles.append(role)
    hub.load_roles = roles
    return dropped
