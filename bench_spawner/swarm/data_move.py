"""Moving a stopped workspace's ``/data`` to another node, through Swarm alone.

A mixin of :class:`~bench_spawner.swarm.spawner.BenchSwarmSpawner`, used by a start whose
node is drained (:mod:`.home_node`). The hub reaches only the manager's engine API, so the
copy is made by one-shot services (:mod:`.move_plan`, program :mod:`.move_agent`) that
talk over the nodes' own network:

1. the drained source node is made active with the ``benchhub.evacuating`` label (BenchHub's
   workspaces avoid it; a drained node would take no mover);
2. a receiver, placed by the scheduler where the workspace's model fits (not the source),
   empties the new volume and waits for the stream on a port published on its node; once it
   runs, a sender on the source streams ``/data`` to that node's address and port as tar;
   each reports the digest of its tree;
3. only when both digests are equal, a releaser on the source empties the old copy;
4. the source is drained again, whatever happened; the movers are removed;
5. the activity journal gets a ``moved`` entry naming both nodes (the spawner's
   ``record_activity``; its actor is the start's request, else ``hub``).

A failure at any step keeps the old copy and the workspace's node: the start fails with a
sentence saying what went wrong (``moving /data ... failed: ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from docker.errors import APIError
from jupyterhub.spawner import SpawnException
from traitlets import Float
from traitlets.config import LoggingConfigurable

from benchhub.labels import MOVE

from .move_agent import PORT
from .move_plan import (
    MoverPlan,
    MoveTimeline,
    avoid_evacuating,
    evacuation_spec,
    moved_entry,
    mover_service_kwargs,
    parse_report,
    parse_times,
    restored_spec,
    verification_problem,
)
from .service_plan import NodeView, node_view
from .task_outcome import ENDED_STATES, latest_task, task_view

# one move at a time per hub: two moves off one node would drain it under each other
_moves = asyncio.Lock()


class MoveFailed(Exception):
    """A step of a move failed; the message says which and why."""


class WorkspaceDataMove(LoggingConfigurable):
    move_timeout = Float(
        600.0,
        help="""Seconds a move of /data between nodes may take before it fails (the old copy
        is kept), e.g. 600.""",
    ).tag(config=True)

    async def move_data(self, source: NodeView, resources, image: str) -> NodeView:
        """Move this workspace's /data volume off ``source``; the node now holding it.
        Raises SpawnException (the old copy kept) when any step fails."""
        began = time.monotonic()
        async with _moves:
            try:
                target = await self._evacuate(source, resources, image)
            except MoveFailed as e:
                raise SpawnException(
                    f"moving /data off drained node {source.hostname} failed: {e}; the copy "
                    f"on {source.hostname} is kept (docs/swarm.md)",
                    reason="move-failed",
                    status_code=500,
                ) from None
        seconds = time.monotonic() - began
        self.log.info(
            "%s: /data moved from %s to %s in %.1f s",
            self.object_name,
            source.hostname,
            target.hostname,
            seconds,
        )
        description, fields = moved_entry(source, target, seconds)
        # the actor is the start's request (WorkspaceActivity), else the hub
        await self.record_activity("moved", f"{self._by('moved')}: {description}", fields)
        return target

    async def _evacuate(self, source: NodeView, resources, image: str) -> NodeView:
        timeline = MoveTimeline()
        try:
            async with self._evacuating(source.id):
                timeline.mark("open")
                movers: list[str] = []
                try:
                    return await self._copy(source, resources, image, movers, timeline)
                finally:
                    for service in movers:
                        await self._remove_service(service)
        finally:
            timeline.mark("close")
            self.log.info("%s: move phases %s", self.object_name, timeline.as_json())

    @contextlib.asynccontextmanager
    async def _evacuating(self, node_id: str):
        """Drained node ``node_id`` made active with :data:`~.move_plan.EVACUATING` while
        the block runs one-shot services on it (BenchHub's own services stay off it), then
        set back to its availability without the label, whatever happened. Callers hold
        :data:`_moves`."""
        node = await self.docker("inspect_node", node_id)
        availability = node["Spec"].get("Availability", "drain")
        await self._update_node(node_id, evacuation_spec(node["Spec"]))
        try:
            yield
        finally:
            node = await self.docker("inspect_node", node_id)
            await self._update_node(node_id, restored_spec(node["Spec"], availability))

    async def _copy(self, source, resources, image, movers: list[str], timeline) -> NodeView:
        token = secrets.token_hex(16)
        common = {
            "image": image,
            "volume": f"{self.object_name}-data",
            "labels": {MOVE: self.object_name},
        }
        env = {"BENCHHUB_MOVE_TOKEN": token, "BENCHHUB_MOVE_TIMEOUT": f"{self.move_timeout:g}"}
        deadline = time.monotonic() + self.move_timeout
        receiver = MoverPlan(
            name=f"{self.object_name}-move-in",
            role="receive",
            constraints=(*self.placement_constraints, avoid_evacuating(), f"node.id!={source.id}"),
            environment=env,
            resources=resources,
            **common,
        )
        receiving = await self._create_mover(receiver, movers)
        target, port = await self._listening(receiving, deadline)
        timeline.mark("receiver")
        sender = MoverPlan(
            name=f"{self.object_name}-move-out",
            role="send",
            constraints=(f"node.id=={source.id}",),
            environment={
                **env,
                "BENCHHUB_MOVE_PEER": target.address,
                "BENCHHUB_MOVE_PORT": str(port),
            },
            read_only=True,
            **common,
        )
        sending = await self._create_mover(sender, movers)
        sent_logs = await self._finished(sending, "the sender", deadline)
        timeline.mark("send", parse_times(sent_logs, "send"))
        received_logs = await self._finished(receiving, "the receiver", deadline)
        timeline.mark("receive", parse_times(received_logs, "receive"))
        sent, received = parse_report(sent_logs, "send"), parse_report(received_logs, "receive")
        problem = verification_problem(sent, received)
        if problem:
            raise MoveFailed(f"verification against {target.hostname} failed: {problem}")
        releaser = MoverPlan(
            name=f"{self.object_name}-move-release",
            role="release",
            constraints=(f"node.id=={source.id}",),
            environment={},
            **common,
        )
        await self._finished(await self._create_mover(releaser, movers), "the release", deadline)
        timeline.mark("release")
        self.log.info(
            "%s: /data verified on %s (%d entries, %d bytes)",
            self.object_name,
            target.hostname,
            received.entries,
            received.size,
        )
        return target

    async def _listening(self, service: str, deadline: float) -> tuple[NodeView, int]:
        """The receiver's node and the port it published there, once its task runs.
        MoveFailed when no node can take it (after ``unschedulable_grace`` of Swarm saying
        so), it ends first, or the move's time is up."""
        unschedulable_since = None
        while True:
            found = latest_task(await self.docker("tasks", filters={"service": service}))
            task = task_view(found, PORT) if found else None
            if task and task.state == "running" and task.published_port:
                node = node_view(await self.docker("inspect_node", task.node_id))
                return node, task.published_port
            if task and task.state in ENDED_STATES | {"rejected"}:
                raise MoveFailed(f"the receiver ended: {task.error or task.state}")
            if task and task.state == "pending" and task.error:
                unschedulable_since = unschedulable_since or time.monotonic()
                if time.monotonic() - unschedulable_since >= self.unschedulable_grace:
                    raise MoveFailed(f"no other node can take the workspace: {task.error}")
            if time.monotonic() > deadline:
                raise MoveFailed(f"the receiver did not run within {self.move_timeout:g} s")
            await asyncio.sleep(0.2)

    async def _create_mover(self, plan: MoverPlan, movers: list[str]) -> str:
        await self._remove_service(plan.name)  # a leftover of a move the hub did not finish
        service = await self.docker("create_service", **mover_service_kwargs(plan))
        movers.append(service["ID"])
        return service["ID"]

    async def _finished(
        self, service: str, who: str, deadline: float, limit: float | None = None
    ) -> str:
        """Wait until the one-shot service's task completed; its logs. MoveFailed when it
        ended otherwise, or the time is up (``deadline``, a monotonic time; ``limit`` the
        seconds named in the message, default ``move_timeout``)."""
        limit = self.move_timeout if limit is None else limit
        while True:
            found = latest_task(await self.docker("tasks", filters={"service": service}))
            task = task_view(found, 0) if found else None
            if task and task.state == "complete":
                return await self._logs(service)
            if task and task.state in ENDED_STATES | {"rejected"}:
                tail = (await self._logs(service)).strip().splitlines()[-1:]
                detail = f"; last line: {tail[0]}" if tail else ""
                raise MoveFailed(f"{who} ended: {task.error or task.state}{detail}")
            if time.monotonic() > deadline:
                state = f"{task.state} {task.error}".strip() if task else "not created"
                raise MoveFailed(f"{who} did not finish within {limit:g} s ({state})")
            await asyncio.sleep(0.3)

    async def _logs(self, service: str) -> str:
        chunks = await self.docker("service_logs", service, stdout=True, stderr=True, is_tty=False)
        return (await asyncio.to_thread(b"".join, chunks)).decode(errors="replace")

    async def _update_node(self, node_id: str, spec: dict) -> None:
        node = await self.docker("inspect_node", node_id)
        await self.docker("update_node", node_id, node["Version"]["Index"], spec)

    async def _inspect_service(self, name: str) -> dict | None:
        """Service ``name`` as the manager has it, or None (no side effects, unlike
        dockerspawner's ``get_object``, which forgets ``object_id``)."""
        try:
            return await self.docker("inspect_service", name)
        except APIError as e:
            if e.response is not None and e.response.status_code == 404:
                return None
            raise

    async def _remove_service(self, service: str) -> None:
        try:
            await self.docker("remove_service", service)
        except APIError as e:
            if e.response is None or e.response.status_code != 404:
                raise
