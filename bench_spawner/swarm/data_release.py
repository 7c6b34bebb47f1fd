"""Deleting a swarm workspace forever: its ``/data`` volume removed on the node that holds it.

A mixin of :class:`~bench_spawner.swarm.spawner.BenchSwarmSpawner`. A workspace's ``/data``
is the volume ``<service>-data`` on one node; a new workspace of the same name gets the same
service and volume name, so a volume left behind would show the deleted workspace's files to
the new one (possibly another purpose, another audience). JupyterHub calls
:meth:`delete_forever` when a named server (or its user) is deleted; the hub reaches only the
manager's engine API, and Swarm cannot remove a volume on a node, so a one-shot **deleter**
service pinned to that node removes it through the node's own engine (the movers' machinery
of :mod:`.data_move`, program :mod:`.move_agent`, role ``delete``).

The deleter service itself is the record that a removal is pending, kept by the swarm's
manager (not the hub's database, where the deleted server's row is gone): it is removed only
once it completed. When the node cannot run it now (down, left the swarm, paused), it stays
pinned there and Swarm runs it when the node is back. A deleter whose task **fails** (on
its node, e.g. the engine could not remove the volume) is started again by Swarm itself, its
restart policy ``on-failure`` with at most ``delete_retries`` attempts ``delete_retry_delay``
seconds apart, so a node that comes back with a transient problem needs no start of the
name; once Swarm gave up, a start of a workspace of the same name first finishes it (a new
deleter) or, while the node is still away, is refused with why (``data-release-pending``):
never a start on the old files. A drained node is opened for the deleter as for a move
(``benchhub.evacuating``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import Enum

from jupyterhub.spawner import SpawnException
from traitlets import Float, Int, Unicode

from benchhub.labels import DELETE as DELETE_LABEL
from benchhub.labels import DELETE_NODE as DELETE_NODE_LABEL

from .data_move import MoveFailed, WorkspaceDataMove, _moves
from .home_node import Home, decide_home
from .move_plan import MoverPlan
from .service_plan import NodeView
from .task_outcome import ENDED_STATES, TaskView, task_view


def deleter_name(service: str) -> str:
    """The deleter service of workspace service ``service`` (one per workspace name)."""
    return f"{service}-delete"


def data_volume(service: str) -> str:
    """The ``/data`` volume of workspace service ``service`` on its node."""
    return f"{service}-data"


@dataclass(frozen=True)
class ReleaseStep:
    """How a pending removal goes on: ``run`` it on its node now (``open_node``: the node is
    drained and must be opened for it), or ``wait`` for the node, with ``reason`` saying why."""

    run: bool
    open_node: bool = False
    reason: str = ""


def decide_release(node_id: str, nodes: list[NodeView]) -> ReleaseStep:
    """Whether the volume of a deleted workspace on node ``node_id`` can be removed now,
    given the swarm's ``nodes``: yes on a ready node that is active or drained (opened);
    no while it is down, gone from the swarm or paused, with a sentence naming the node."""
    home = decide_home(node_id, nodes)
    if home.kind is Home.PINNED:
        return ReleaseStep(True)
    if home.kind is Home.MOVE:
        return ReleaseStep(True, open_node=True)
    node = home.node
    if node is None:
        where = f"swarm node {node_id}, which left the swarm"
    elif node.state != "ready":
        where = f"swarm node {node.hostname}, which is down"
    else:
        how = {"pause": "paused"}.get(node.availability, node.availability)
        where = f"swarm node {node.hostname}, which is {how}"
    return ReleaseStep(False, reason=where)


def pending_start_reason(where: str) -> str:
    """Why a start of a workspace whose name a deleted one had is refused."""
    return (
        f"a deleted workspace of this name left its /data on {where}; it is removed when "
        "the node is back, and until then no workspace of this name starts (it would see "
        "the old files): choose another name, or ask an operator (docs/swarm.md)"
    )


class Progress(Enum):
    DONE = "done"  # a task completed: the volume is removed
    WORKING = "working"  # a task is on its way, or Swarm is about to start another
    GAVE_UP = "gave-up"  # every task failed and Swarm starts no other

    @property
    def gave_up(self) -> bool:
        return self is Progress.GAVE_UP


def deleter_progress(tasks: list[TaskView]) -> Progress:
    """Where a deleter service stands, from all its tasks (Swarm's restart policy makes a
    new task for each retry): done once any task completed; given up when every task ended
    otherwise and the orchestrator handled each end (desired ``shutdown``: with no retry
    left it made no replacement); else working (a task pending, e.g. on a node that is
    away, or running, or one that just failed and awaits Swarm's retry)."""
    if any(t.state == "complete" for t in tasks):
        return Progress.DONE
    over = ENDED_STATES | {"rejected"}
    if tasks and all(t.state in over and t.desired_state != "running" for t in tasks):
        return Progress.GAVE_UP
    return Progress.WORKING


class ReleasePending(Exception):
    """The node holding the volume cannot run the deleter now; the message names it."""


class WorkspaceDataRelease(WorkspaceDataMove):
    delete_timeout = Float(
        120.0,
        help="""Seconds a deleted workspace's /data removal on a reachable node may take
        (the deleter's start and the engine's removal), e.g. 120. When it fails, the removal
        stays pending and the next start of a workspace of that name retries it.""",
    ).tag(config=True)

    delete_retries = Int(
        3,
        help="""How many times Swarm itself starts a deleted workspace's /data removal again
        after it failed on its node (the deleter's restart policy on-failure), e.g. 3; also
        when it failed once the node came back from being away. 0 = only the next start of
        a workspace of that name retries it.""",
    ).tag(config=True)

    delete_retry_delay = Float(
        5.0,
        help="""Seconds Swarm waits after a failed /data removal before it starts it again,
        e.g. 5 (Swarm's own default restart delay).""",
    ).tag(config=True)

    node_engine_socket = Unicode(
        "/var/run/docker.sock",
        help="""The path of each node's Docker engine socket, e.g. /var/run/docker.sock:
        bind-mounted (on that node only) into the one-shot service that removes a deleted
        workspace's /data volume there, the only way to remove a volume on a node.""",
    ).tag(config=True)

    async def delete_forever(self):
        """JupyterHub's hook when the server is deleted (it is stopped): remove its service
        if one is left and its /data volume on its node. When the node is away or the removal
        fails, the removal stays pending (see the module) and the journal says so; JupyterHub
        deletes the server either way (it logs and ignores errors of this hook)."""
        await self._remove_service(self.object_name)  # a stop that did not finish
        outcome = "nothing of it was on any node"
        if self.node_id:
            outcome = "its /data is removed"
            try:
                await self._release_volume(self.node_id, self._deleter_image())
            except ReleasePending as e:
                outcome = f"its /data stays on {e}; it is removed once the node is back"
                self.log.warning("%s deleted; %s", self.object_name, outcome)
            except MoveFailed as e:
                outcome = f"removing its /data failed ({e}); the next start of this name retries"
                self.log.error("%s deleted; %s", self.object_name, outcome)
        await self.record_activity("deleted", f"{self._by('deleted')}; {outcome}")
        self._take_request()

    async def finish_pending_release(self) -> None:
        """Before a start: finish the removal a deleted workspace of this name left pending.
        SpawnException when it cannot be finished now (the start must not see old files)."""
        service = await self._inspect_service(deleter_name(self.object_name))
        if service is None:
            return
        labels = service["Spec"].get("Labels") or {}
        image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        try:
            await self._release_volume(labels.get(DELETE_NODE_LABEL, ""), image)
        except ReleasePending as e:
            raise SpawnException(
                pending_start_reason(str(e)), reason="data-release-pending", status_code=503
            ) from None
        except MoveFailed as e:
            raise SpawnException(
                f"removing the /data a deleted workspace of this name left failed: {e}; "
                "no workspace of this name starts before it is removed (docs/swarm.md)",
                reason="data-release-failed",
                status_code=500,
            ) from None

    def _deleter_image(self) -> str:
        """An image the node holds (or pulls from the site registry): the workspace's own
        template's (stored options), else the default template's."""
        spec = self.current_spec()
        key = spec.image if spec else self.default_image_template
        return self.node_image(self.templates[key].image)

    async def _release_volume(self, node_id: str, image: str) -> None:
        """Remove the volume on ``node_id`` with the deleter service and then the deleter.
        ReleasePending (the deleter left pinned there) when the node cannot run it now;
        MoveFailed (the deleter kept, as the record) when the removal failed."""
        name = deleter_name(self.object_name)
        plan = MoverPlan(
            name=name,
            image=image,
            role="delete",
            constraints=(f"node.id=={node_id}",),
            volume="",
            environment={
                "BENCHHUB_MOVE_VOLUME": data_volume(self.object_name),
                "BENCHHUB_MOVE_TIMEOUT": f"{self.delete_timeout:g}",
            },
            labels={DELETE_LABEL: self.object_name, DELETE_NODE_LABEL: node_id},
            engine_socket=self.node_engine_socket,
            retries=self.delete_retries,
            retry_delay=self.delete_retry_delay,
        )
        step = decide_release(node_id, await self.nodes())
        if not step.run:
            # left pinned there for Swarm to run when the node is back; one Swarm gave up
            # on (it failed every attempt before the node went away again) is made anew
            existing = await self._inspect_service(name)
            if existing is None or (await self._deleter_progress(existing["ID"])).gave_up:
                await self._create_mover(plan, [])
            raise ReleasePending(step.reason)
        if step.open_node:
            async with _moves, self._evacuating(node_id):
                await self._run_deleter(plan)
        else:
            await self._run_deleter(plan)
        await self._remove_service(name)

    async def _run_deleter(self, plan: MoverPlan) -> None:
        """Until the deleter's task completed: one that completed before is enough; one
        Swarm still works on (or retries) is followed; one Swarm gave up on is replaced by a
        new deleter. MoveFailed when Swarm gives up, or after ``delete_timeout``."""
        deadline = time.monotonic() + self.delete_timeout
        existing = await self._inspect_service(plan.name)
        progress = await self._deleter_progress(existing["ID"]) if existing else None
        if progress is Progress.DONE:
            return
        service = existing["ID"] if progress is Progress.WORKING else None
        if service is None:
            service = await self._create_mover(plan, [])
        while True:
            tasks = await self._deleter_tasks(service)
            progress = deleter_progress(tasks)
            if progress is Progress.DONE:
                return
            if progress is Progress.GAVE_UP:
                errors = [t.error or t.state for t in tasks]
                tail = (await self._logs(service)).strip().splitlines()[-1:]
                detail = f"; last line: {tail[0]}" if tail else ""
                raise MoveFailed(
                    f"the removal of /data failed {len(tasks)} time(s): {errors[-1]}{detail}"
                )
            if time.monotonic() > deadline:
                raise MoveFailed(
                    f"the removal of /data did not finish within {self.delete_timeout:g} s"
                )
            await asyncio.sleep(0.3)

    async def _deleter_tasks(self, service: str) -> list[TaskView]:
        """Every task of the deleter ``service`` (one per attempt), oldest first."""
        tasks = await self.docker("tasks", filters={"service": service})
        tasks.sort(key=lambda t: (t.get("Version") or {}).get("Index", 0))
        return [task_view(t, 0) for t in tasks]

    async def _deleter_progress(self, service: str) -> Progress:
        return deleter_progress(await self._deleter_tasks(service))
