"""Moving a stopped workspace's ``/data`` off a drained node: pure pieces, no Docker.

The copy runs as one-shot Swarm services (:mod:`.move_agent` is their program): a receiver
placed by the scheduler on a node that can hold the workspace (the model's reservations, the
site's constraints, not the source), listening on a port published on that node's own
address (host mode, as the workspaces' servers are: no routing mesh, no overlay network,
whose service addresses need the kernel's IPVS), and a sender pinned to the source that
connects to it there; after the hub compared their digests, a releaser on the source empties
the old copy. A drained node takes no tasks, so while its data is copied off it is made active
with the label :data:`EVACUATING`, which every BenchHub service avoids
(:func:`avoid_evacuating`), and drained again after.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    TaskTemplate,
)

from .move_agent import ENGINE_SOCKET, PORT, REPORT, TIMES
from .service_plan import NodeView

EVACUATING = "benchhub.evacuating"
AGENT_SOURCE = (Path(__file__).parent / "move_agent.py").read_text()


def avoid_evacuating() -> str:
    """The placement constraint that keeps a service off a node being emptied."""
    return f"node.labels.{EVACUATING}!=true"


@dataclass(frozen=True)
class MoveReport:
    """One mover's line: the digest of the tree it sent or received, its entry count and
    bytes of file content."""

    role: str
    digest: str
    entries: int
    size: int


def parse_report(logs: str, role: str) -> MoveReport | None:
    """The last ``BENCHHUB-MOVE <role> ...`` line of a mover's logs, or None."""
    found = None
    for line in logs.splitlines():
        parts = line.strip().split()
        if len(parts) == 5 and parts[0] == REPORT and parts[1] == role:
            try:
                found = MoveReport(role, parts[2], int(parts[3]), int(parts[4]))
            except ValueError:
                continue
    return found


def parse_times(logs: str, role: str) -> dict[str, float]:
    """The step times (seconds) a mover printed on its ``BENCHHUB-MOVE-TIMES <role>`` line,
    e.g. ``{"digest": 1.2, "stream": 3.4}``; {} when it printed none."""
    found: dict[str, float] = {}
    for line in logs.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == TIMES and parts[1] == role:
            for item in parts[2:]:
                step, _, value = item.partition("=")
                try:
                    found[step] = float(value)
                except ValueError:
                    continue
    return found


@dataclass
class MoveTimeline:
    """When each phase of a move ended (monotonic seconds), for the hub's log line
    ``<service>: move phases {...}``: each phase's seconds since the one before, and the
    movers' own step times (``send.digest``, ``receive.extract``, ...)."""

    began: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)

    def mark(self, phase: str, steps: dict[str, float] | None = None) -> None:
        self.marks.append((phase, time.monotonic()))
        self.steps.update({f"{phase}.{step}": value for step, value in (steps or {}).items()})

    def phases(self) -> dict[str, float]:
        seconds, before = {}, self.began
        for phase, at in self.marks:
            seconds[phase] = round(at - before, 2)
            before = at
        return seconds

    def as_json(self) -> str:
        return json.dumps({**self.phases(), **self.steps}, sort_keys=False)


def verification_problem(sent: MoveReport | None, received: MoveReport | None) -> str | None:
    """Why the copy cannot be trusted, or None when both sides digested the same tree."""
    if sent is None:
        return "the sender reported no digest of the original"
    if received is None:
        return "the receiver reported no digest of the copy"
    if sent.digest != received.digest:
        return (
            f"the copy differs from the original ({received.entries} entries and "
            f"{received.size} bytes received, {sent.entries} entries and {sent.size} bytes sent)"
        )
    return None


def moved_entry(source: NodeView, target: NodeView, seconds: float) -> tuple[str, dict]:
    """The activity journal's ``moved`` entry of a verified move from node ``source`` to
    ``target`` that took ``seconds``: its description (the caller prefixes who caused it)
    and its fields, both nodes by id (as the ``started`` entry's ``node``) and by name."""
    description = (
        f"/data moved from drained swarm node {source.hostname} to {target.hostname}, "
        f"copy verified, in {seconds:.1f} s"
    )
    fields = {
        "from_node": source.id,
        "from_hostname": source.hostname,
        "to_node": target.id,
        "to_hostname": target.hostname,
        "seconds": round(seconds, 1),
    }
    return description, fields


def evacuation_spec(spec: dict) -> dict:
    """The node spec that lets the movers run on a drained node while BenchHub's services
    (which avoid :data:`EVACUATING`) stay off it."""
    labels = {**(spec.get("Labels") or {}), EVACUATING: "true"}
    return {**spec, "Availability": "active", "Labels": labels}


def restored_spec(spec: dict, availability: str) -> dict:
    """The node spec back to ``availability`` without the :data:`EVACUATING` label."""
    labels = {k: v for k, v in (spec.get("Labels") or {}).items() if k != EVACUATING}
    return {**spec, "Availability": availability, "Labels": labels}


@dataclass(frozen=True)
class MoverPlan:
    """One mover service: ``role`` (receive, send, release, delete), the node constraints,
    the volume mounted at /data (read-only for the sender; "" for none), its environment,
    and the resources a receiver reserves (the workspace's, so it lands where the workspace
    fits). A receiver publishes its port on its node's address (host mode, a port Swarm
    chooses). ``engine_socket``, the node's engine socket, is bind-mounted for ``delete``.
    ``retries``: how many times Swarm starts a failed task again, ``retry_delay`` seconds
    after its failure (restart policy ``on-failure``); 0 = never (``none``)."""

    name: str
    image: str
    role: str
    constraints: tuple[str, ...]
    volume: str
    environment: dict[str, str]
    labels: dict[str, str]
    read_only: bool = False
    resources: Resources | None = None
    engine_socket: str = ""
    retries: int = 0
    retry_delay: float = 0.0


def restart_policy(retries: int, delay: float) -> RestartPolicy:
    """Swarm's restart policy of a one-shot service: ``none``, or ``on-failure`` at most
    ``retries`` times, ``delay`` seconds after each failure (a task that completed is never
    started again)."""
    if retries <= 0:
        return RestartPolicy(condition="none")
    return RestartPolicy(
        condition="on-failure", delay=int(delay * 1_000_000_000), max_attempts=retries
    )


def mover_service_kwargs(plan: MoverPlan) -> dict:
    """Keyword arguments of docker-py's ``APIClient.create_service`` for one mover: root
    (to read and keep every owner), its one volume (or the engine's socket), no restart
    unless the plan asks for retries (then ``on-failure``, at most ``retries`` times)."""
    mounts = []
    if plan.volume:
        mounts.append(
            Mount(target="/data", source=plan.volume, type="volume", read_only=plan.read_only)
        )
    if plan.engine_socket:
        mounts.append(Mount(target=ENGINE_SOCKET, source=plan.engine_socket, type="bind"))
    container = ContainerSpec(
        image=plan.image,
        command=["python3", "-c", AGENT_SOURCE, plan.role],
        env=dict(plan.environment),
        user="0",
        labels=dict(plan.labels),
        mounts=mounts,
    )
    task = TaskTemplate(
        container_spec=container,
        resources=plan.resources,
        restart_policy=restart_policy(plan.retries, plan.retry_delay),
        placement=Placement(constraints=list(plan.constraints)),
    )
    kwargs = {"task_template": task, "name": plan.name, "labels": dict(plan.labels)}
    if plan.role == "receive":
        kwargs["endpoint_spec"] = EndpointSpec(ports={None: (PORT, "tcp", "host")})
    return kwargs
