"""What a Swarm task's state means for a workspace: pure decisions, no Docker.

A workspace service has ``restart_policy: none``, so it has one task, and that task's
``Status`` is the whole story: Swarm's scheduler writes why it cannot place the task into
``Status.Err`` while the task stays ``pending`` (it retries for ever), a node that cannot run
it marks it ``rejected`` with the engine's error, and a container that ends marks it
``failed`` or ``complete``. dockerspawner's ``SwarmSpawner`` treats ``pending`` and
``rejected`` as "not ready yet" and waits for its start timeout (dockerspawner issues #330,
#343, #363); :func:`decide_start` turns each of them into a failure carrying Swarm's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# The states a task passes through before it runs (docker/swarmkit api/types.proto).
STARTING_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
ENDED_STATES = frozenset({"complete", "shutdown", "failed", "remove", "orphaned"})


@dataclass(frozen=True)
class TaskView:
    """The part of a Swarm task a decision reads. ``error`` is ``Status.Err`` (Swarm's or
    the engine's reason), ``message`` ``Status.Message``; ``exit_code`` is None until the
    container ended; ``published_port`` is the node port Swarm published for ``port``
    (host-mode publishing), None before the task runs; ``desired_state`` is what the
    orchestrator wants of it (``running`` until it handled the task's end: ``shutdown``
    once it did, whether or not it started a replacement)."""

    state: str
    error: str = ""
    message: str = ""
    exit_code: int | None = None
    node_id: str = ""
    published_port: int | None = None
    desired_state: str = ""


def task_view(task: dict, port: int) -> TaskView:
    """A :class:`TaskView` of one task as the engine API returns it (``GET /tasks``),
    reading the node port published for container port ``port``."""
    status = task.get("Status") or {}
    published = None
    for entry in (status.get("PortStatus") or {}).get("Ports") or []:
        if entry.get("TargetPort") == port and entry.get("PublishedPort"):
            published = int(entry["PublishedPort"])
    exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
    state = str(status.get("State", "")).lower()
    return TaskView(
        state=state,
        error=str(status.get("Err") or ""),
        message=str(status.get("Message") or ""),
        exit_code=exit_code if state in ENDED_STATES else None,
        node_id=str(task.get("NodeID") or ""),
        published_port=published,
        desired_state=str(task.get("DesiredState") or "").lower(),
    )


def latest_task(tasks: list[dict]) -> dict | None:
    """The newest of a service's tasks (highest ``Version.Index``), or None for none."""
    return max(tasks, key=lambda t: (t.get("Version") or {}).get("Index", 0), default=None)


class Phase(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FAILED = "failed"


@dataclass(frozen=True)
class StartDecision:
    """What a start does next. ``message`` is a sentence for the user (progress while
    waiting, the error when failed); ``kind`` is a short label of the failure (the
    ``reason`` of JupyterHub's spawn failure metrics): "unschedulable", "rejected",
    "exited" or "no-port"."""

    phase: Phase
    message: str = ""
    kind: str = ""


def _ended_reason(task: TaskView) -> str:
    if task.error:
        return task.error
    if task.exit_code is not None:
        return f"exit code {task.exit_code}"
    return task.message or task.state


def decide_start(
    task: TaskView | None, unschedulable_for: float, grace: float, needs_port: bool = True
) -> StartDecision:
    """The start's next step from the service's task.

    ``unschedulable_for`` is how long (seconds) the task has been ``pending`` with a
    scheduler error; after ``grace`` seconds of that the start fails with Swarm's reason
    (the scheduler retries for ever: capacity freed within the grace still wins). A
    ``rejected`` task (the node refused it: missing image, bad mount) fails at once, as does a
    task that ended before it ran. A running task without its published port is a failure
    too (nothing could reach the server), unless ``needs_port`` is False (a restricted
    workspace: the gateway reaches it on its overlay).
    """
    if task is None:
        return StartDecision(Phase.WAITING, "Swarm is creating the workspace's task")
    if task.state == "running":
        if needs_port and task.published_port is None:
            return StartDecision(
                Phase.FAILED, "Swarm runs the workspace but published no port for it", "no-port"
            )
        return StartDecision(Phase.RUNNING, "the workspace runs")
    if task.state == "rejected":
        return StartDecision(
            Phase.FAILED,
            f"Swarm rejected the workspace: {task.error or task.message or 'no reason given'}",
            "rejected",
        )
    if task.state in ENDED_STATES:
        return StartDecision(
            Phase.FAILED, f"the workspace ended while starting: {_ended_reason(task)}", "exited"
        )
    if task.state == "pending" and task.error:
        if unschedulable_for >= grace:
            return StartDecision(
                Phase.FAILED, f"Swarm cannot place the workspace: {task.error}", "unschedulable"
            )
        return StartDecision(Phase.WAITING, f"Swarm is looking for a node: {task.error}")
    return StartDecision(Phase.WAITING, f"Swarm task is {task.state}")


@dataclass(frozen=True)
class PollResult:
    """A running workspace's state for ``Spawner.poll``: ``exit_status`` None while it runs,
    else an int (JupyterHub's convention), with ``reason`` saying why it is not running and
    ``status`` what the user sees for it: "errored", or "stopped" for a server that exited
    by itself with code 0."""

    exit_status: int | None
    reason: str = ""
    status: str = "errored"


def node_lost_reason(node_name: str, how: str) -> str:
    """The sentence a user sees for a workspace whose node is gone: ``how`` says what
    happened to node ``node_name`` ("is down", "left the swarm")."""
    return (
        f"node lost: swarm node {node_name or '(unknown)'} {how}; the workspace's /data stays "
        "on that node, start the workspace again once the node is back"
    )


def decide_poll(task: TaskView | None, node_state: str | None, node_name: str = "") -> PollResult:
    """Whether the workspace still runs, from its task and the state of the node the task
    is on (``Status.State`` of the node: "ready", "down", "unknown"; None when the node
    is no longer in the swarm; ``node_name`` its hostname, for the reason).

    A task whose node is down or gone is not running any more, whatever the task's last
    report says: Swarm keeps such a task "running" until the node comes back.
    """
    if task is None:
        return PollResult(0, "the workspace's Swarm service is gone")
    if task.state in STARTING_STATES:
        return PollResult(None)
    if task.state == "running":
        if node_state is None:
            return PollResult(1, node_lost_reason(node_name or task.node_id, "left the swarm"))
        if node_state in ("down", "disconnected"):
            return PollResult(1, node_lost_reason(node_name or task.node_id, "is down"))
        return PollResult(None)
    code = task.exit_code if task.exit_code is not None else 1
    if task.state == "complete" and code == 0:
        return PollResult(0, "the server exited by itself (exit code 0)", "stopped")
    return PollResult(code, f"the workspace ended: {_ended_reason(task)}")
