"""BenchSwarmSpawner: a BenchHub workspace as a Docker Swarm service on a worker node.

The first slice of running BenchHub on a swarm (issue 16, docs/swarm.md). It reuses what
users choose and how it is checked (:class:`~bench_spawner.workspace_options.WorkspaceOptions`:
the resource models, image templates and the options schema, configured as for BenchSpawner)
and dockerspawner's :class:`~dockerspawner.SwarmSpawner` for the engine access; it does not
combine with :class:`~bench_spawner.spawner.BenchSpawner`, whose mixins (loop-device
``/data``, firewall, checkpoints, egress) act on the hub's own engine.

Start is: check the options (and that some worker can hold the model) -> create the
service (model as reservations and limits, ``restart_policy: none``, ``/data`` a volume on
the node, pinned to the node that holds it) -> follow its one task until it runs, or fail
within seconds with Swarm's own reason (:mod:`.task_outcome`) -> remember the node. A
restricted workspace runs on its own internal overlay behind the egress proxy
(:mod:`.restricted`): registered once its task runs, ready once the proxy routes to it.
Features it does not do yet are refused by :meth:`check_config` and the options check
(:mod:`.unsupported`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from docker.errors import APIError
from dockerspawner import SwarmSpawner
from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import Float, List, TraitError, Unicode, default, validate

from benchhub.labels import workspace_labels
from benchhub.resource_models import HostCapacity
from benchhub.workspace_spec import OptionsError, WorkspaceSpec, validate_workspace_name

from ..activity import WorkspaceActivity
from ..workspace_options import WorkspaceOptions
from ..workspace_status import Outcome, describe_failure, live_status, status_report
from .data_release import WorkspaceDataRelease
from .home_node import Home, decide_home
from .image_names import node_image, registry_problem
from .move_plan import avoid_evacuating
from .restricted import SwarmRestrictedAccess, gateway_environment, task_address
from .service_plan import (
    WORKER_ONLY,
    NodeView,
    ServicePlan,
    create_service_kwargs,
    largest_worker,
    node_view,
    reservations,
    unfit_reason,
)
from .task_outcome import Phase, PollResult, decide_poll, decide_start, latest_task, task_view
from .unsupported import config_problems, option_problems

STATE_VERSION = 1


class BenchSwarmSpawner(
    SwarmRestrictedAccess, WorkspaceActivity, WorkspaceDataRelease, WorkspaceOptions, SwarmSpawner
):
    """Spawn each JupyterHub named server as a workspace service on a Docker Swarm.

    Point it at a manager's engine API with ``c.BenchSwarmSpawner.client_kwargs =
    {"base_url": "tcp://manager:2376", ...}`` (or DOCKER_HOST), and give the address the
    nodes reach the hub on in ``c.BenchSwarmSpawner.hub_connect_url``.
    """

    placement_constraints = List(
        Unicode(),
        [WORKER_ONLY],
        help="""Swarm placement constraints every workspace service gets, e.g.
        ["node.role==worker", "node.labels.benchhub.workspaces==true"]. The default keeps
        workspaces off the managers.""",
    ).tag(config=True)

    unschedulable_grace = Float(
        2.0,
        help="""Seconds a start waits while Swarm's scheduler says no node can take the
        workspace (the task is pending with a reason) before failing with that reason, e.g.
        2. The scheduler retries for ever; capacity freed within this time still wins.""",
    ).tag(config=True)

    task_poll_interval = Float(
        0.2, help="Seconds between looks at a starting workspace's Swarm task, e.g. 0.2."
    ).tag(config=True)

    gpu_resource_kind = Unicode(
        "gpu",
        help="""The generic-resource name nodes advertise their GPUs as (dockerd
        --node-generic-resource gpu=N), e.g. gpu. A model's gpus are reserved as it.""",
    ).tag(config=True)

    image_registry = Unicode(
        "",
        help="""The registry every node pulls workspace images from, as host or host:port,
        e.g. manager:5000 (a registry the site runs: Debian's docker-registry; images/build.sh
        pushes each image it builds there when BENCHHUB_REGISTRY is set). A template's image
        without a registry part then runs as <registry>/<image>, e.g.
        manager:5000/benchhub/jupyterlab:latest, and a node pulls it there (each node's
        engine must trust the registry: TLS, or insecure-registries). "" (the default) = the
        nodes already hold the images under the templates' names (docker save | docker load
        on each node).""",
    ).tag(config=True)

    @validate("image_registry")
    def _valid_registry(self, proposal):
        problem = registry_problem(proposal.value)
        if problem:
            raise TraitError(problem)
        return proposal.value

    node_id = Unicode("", help="The node holding this workspace's /data (spawner state).")
    stop_reason = ""  # why the last poll found the workspace not running
    # how the last run ended (spawner state, kept across stops: the hub's database holds it,
    # as nothing of a swarm workspace lives on the hub's host): the workspaces API's status
    outcome: Outcome | None = None

    # ---- settings shared with BenchSpawner ---------------------------------------------------

    def _shared(self, name: str):
        """``c.BenchSpawner.<name>`` when the configuration sets it, else WorkspaceOptions'
        default: one catalogue for both spawners (a site's jupyterhub_config.py sets them on
        BenchSpawner)."""
        section = self.config.get("BenchSpawner", {})
        if name in section:
            return section[name]
        return WorkspaceOptions.class_traits()[name].default()

    @default("resource_models")
    def _default_resource_models(self):
        return self._shared("resource_models")

    @default("image_templates")
    def _default_image_templates(self):
        return self._shared("image_templates")

    @default("default_image_template")
    def _default_default_image_template(self):
        return self._shared("default_image_template")

    @default("default_resource_model")
    def _default_default_resource_model(self):
        return self._shared("default_resource_model")

    @default("storage_min_gb")
    def _default_storage_min_gb(self):
        return self._shared("storage_min_gb")

    @default("storage_max_gb")
    def _default_storage_max_gb(self):
        return self._shared("storage_max_gb")

    @default("default_storage_gb")
    def _default_default_storage_gb(self):
        return self._shared("default_storage_gb")

    @default("activity_journal")
    def _default_activity_journal(self):
        return self.config.get("BenchSpawner", {}).get("activity_journal", "")

    @default("prefix")
    def _default_prefix(self):
        return self.config.get("BenchSpawner", {}).get("prefix", "bench")

    @default("object_name")
    def _object_name_default(self):
        return f"{self.prefix}-{self.escaped_name}--{self.name}"

    @default("cmd")
    def _default_cmd(self):
        # the workspace images' own CMD; asking the manager's engine for the image's CMD
        # (dockerspawner's way) fails: images live on the workers
        return ["jupyterhub-singleuser"]

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return "/data"

    # ---- the configuration check ------------------------------------------------------------

    @classmethod
    def check_config(cls, config) -> None:
        """Raise TraitError naming each setting that asks for what a swarm cannot do yet
        (docs/swarm.md), after WorkspaceOptions' catalogue check. Call it at the end of a
        swarm hub's configuration, so such a hub does not start."""
        super().check_config(config)
        explicit = {**config.get("BenchSpawner", {}), **config.get("BenchSwarmSpawner", {})}
        problems = config_problems(
            list(config.get("JupyterHub", {}).get("services", [])),
            explicit.get("checkpoints_enabled"),
            str(explicit["storage_class"]) if "storage_class" in explicit else None,
        )
        if problems:
            raise TraitError(
                "BenchSwarmSpawner cannot run this configuration: " + "; ".join(problems)
            )

    # ---- state ---------------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        if self.node_id:  # kept across stops: the node holds /data
            state.update(version=STATE_VERSION, node_id=self.node_id)
        if self.outcome is not None:
            state.update(version=STATE_VERSION, outcome=dataclasses.asdict(self.outcome))
        if self.restricted_network:  # kept until the overlay is removed
            state.update(version=STATE_VERSION, restricted_network=self.restricted_network)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.node_id = state.get("node_id", "")
        self.restricted_network = state.get("restricted_network", "")
        try:
            self.outcome = Outcome(**state["outcome"]) if state.get("outcome") else None
        except TypeError:  # a record this version cannot read: as if none
            self.outcome = None

    # ---- the swarm's facts ------------------------------------------------------------------

    async def nodes(self) -> list[NodeView]:
        return [node_view(n, self.gpu_resource_kind) for n in await self.docker("nodes")]

    async def host_capacity(self) -> HostCapacity:
        """The most one workspace can get: the largest worker (shown in the spawn form)."""
        return largest_worker(await self.nodes())

    async def whitelist_presets(self) -> dict[str, list[str]]:
        return {}  # presets read the image on the hub's engine; a swarm's images are the nodes'

    async def validate_options(self, raw: dict | None) -> WorkspaceSpec:
        """Parse options for a start or an edit: HTTP 400 naming each bad field, including
        what a swarm cannot do yet and a model no worker node can ever hold."""
        try:
            spec = self.schema.parse(raw or {})
            problems = option_problems(spec, restricted_access=self.restricted_enabled)
            if problems:
                raise OptionsError(problems)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        model = self.schema.resource_models[spec.resource_model]
        unfit = unfit_reason(model, await self.nodes())
        if unfit:
            raise web.HTTPError(
                400, f"resource_model: '{model.name}' is unavailable on this swarm: {unfit}"
            )
        return spec

    # ---- start, poll, stop --------------------------------------------------------------------

    async def start(self):
        self._note_start_request()
        try:
            return await self._start()
        finally:
            self._take_request()

    async def _start(self):
        try:
            validate_workspace_name(self.name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        spec = self._take_applied_spec() or await self.validate_options(self.user_options)
        model = self.schema.resource_models[spec.resource_model]
        self.use_template(spec.image)
        try:
            await self.finish_pending_release()  # a deleted namesake's /data: gone first
            await self._require_node(model)
        except Exception as e:
            await self._record_failed_start(e)
            raise
        if await self.get_object() is not None:  # a stop that did not finish
            await self.remove_object()
        restricted = spec.access_mode == "restricted"
        if not restricted:
            await self.remove_overlay()  # left by an earlier restricted run's stop
        environment = self.get_env()
        environment["BENCHHUB_UPLOAD_ALLOWED"] = str(spec.permissions.upload).lower()
        environment["BENCHHUB_DOWNLOAD_ALLOWED"] = str(spec.permissions.download).lower()
        proxy, began = "", time.monotonic()
        if restricted:
            try:
                proxy = await self.make_overlay()
            except Exception as e:
                await self._record_failed_start(e)
                raise
            environment = gateway_environment(environment, proxy, self.gateway_hub_port)
        plan = ServicePlan(
            name=self.object_name,
            image=self.node_image(self.image),
            model=model,
            environment=environment,
            labels=workspace_labels(self.user.name, self.name, model.name),
            port=self.port,
            data_volume=f"{self.object_name}-data",
            node_id=self.node_id,
            constraints=(*self.placement_constraints, avoid_evacuating()),
            network=self.restricted_network if restricted else self.network_name,
            gpu_kind=self.gpu_resource_kind,
            args=tuple(await self.get_command()),
            publish=not restricted,
            dns=(proxy,) if restricted else (),
        )
        try:
            service = await self.docker("create_service", **create_service_kwargs(plan))
        except Exception as e:
            await self.remove_overlay()
            await self._record_failed_start(e)
            raise
        self.object_id = service["ID"]
        try:
            address = await self._wait_until_running(self.restricted_network if restricted else "")
            if restricted:  # the gateway reaches it once the proxy routes to its address
                running = time.monotonic()
                await self.register_restricted(address[0], proxy, spec.whitelist)
                self.log.info(
                    "restricted %s at %s: running %.1f s after the start, routed %.1f s later",
                    self.object_name,
                    address[0],
                    running - began,
                    time.monotonic() - running,
                )
                address = (self.gateway_host, self.gateway_workspaces_port)
        except Exception as e:
            await self.remove_object()  # nothing half-made stays behind
            await self._record_failed_start(e)
            raise
        self.outcome = Outcome.now("running")
        await self.record_activity(
            "started", self._by("started"), {"resource_model": model.name, "node": self.node_id}
        )
        return address

    async def _record_failed_start(self, error: BaseException) -> None:
        """Record a start that failed: the workspaces API shows ``errored`` with why."""
        reason = describe_failure(error)
        self.outcome = Outcome.now("errored", reason)
        await self.record_activity("errored", f"start failed: {reason}")

    async def _require_node(self, model) -> None:
        """Pin the start to the node holding /data, moving /data first off a drained node
        (:meth:`move_data`). A workspace whose node is down, gone or paused is not started
        empty elsewhere: the start fails saying so (``node lost: ...``)."""
        home = decide_home(self.node_id, await self.nodes())
        if home.kind is Home.REFUSED:
            raise SpawnException(home.reason, reason="node-lost", status_code=503)
        if home.kind is Home.MOVE:
            target = await self.move_data(
                home.node, reservations(model, self.gpu_resource_kind), self.node_image(self.image)
            )
            self.node_id = target.id  # the "started" journal entry names the new node

    def node_image(self, image: str) -> str:
        """The name the nodes run ``image`` under (:mod:`.image_names`): with
        :attr:`image_registry`, the registry's name for it."""
        return node_image(image, self.image_registry)

    async def _wait_until_running(self, overlay: str = "") -> tuple[str, int]:
        """Follow the service's task until it runs: the node's address and the published
        port, or with ``overlay`` (a restricted workspace's) the task's address on it and
        the server's port. A rejected, ended or unschedulable task is a SpawnException with
        Swarm's reason."""
        deadline = time.monotonic() + self.start_timeout
        unschedulable_since = None
        while True:
            found = latest_task(await self.docker("tasks", filters={"service": self.object_id}))
            task = task_view(found, self.port) if found else None
            now = time.monotonic()
            if task and task.state == "pending" and task.error:
                unschedulable_since = unschedulable_since or now
            else:
                unschedulable_since = None
            decision = decide_start(
                task,
                now - unschedulable_since if unschedulable_since else 0.0,
                self.unschedulable_grace,
                needs_port=not overlay,
            )
            if decision.phase is Phase.FAILED:
                self.log.warning("%s failed to start: %s", self.object_name, decision.message)
                raise SpawnException(
                    decision.message,
                    reason=decision.kind,
                    status_code=503 if decision.kind == "unschedulable" else 500,
                )
            if decision.phase is Phase.RUNNING:
                self.node_id = task.node_id
                if overlay:
                    return self._overlay_address(found, overlay), self.port
                node = await self.docker("inspect_node", task.node_id)
                return node_view(node).address, task.published_port
            if now > deadline:
                raise SpawnException(
                    f"the workspace did not run within {self.start_timeout:g} s: "
                    f"{decision.message}",
                    reason="timeout",
                    status_code=500,
                )
            await asyncio.sleep(self.task_poll_interval)

    def _overlay_address(self, task: dict, overlay: str) -> str:
        address = task_address(task, overlay)
        if address is None:
            raise SpawnException(
                f"Swarm runs the workspace but gave it no address on {overlay}",
                reason="no-port",
                status_code=500,
            )
        return address

    async def _service(self) -> dict | None:
        """The workspace's service as the manager has it, or None."""
        return await self._inspect_service(self.object_name)

    async def _observe(self) -> PollResult:
        """Whether the workspace's task runs on a live node, read from the manager."""
        service = await self._service()
        if service is None:
            return decide_poll(None, None)
        found = latest_task(await self.docker("tasks", filters={"service": service["ID"]}))
        task = task_view(found, self.port) if found else None
        node = None
        if task and task.node_id:
            node = next((n for n in await self.nodes() if n.id == task.node_id), None)
        return decide_poll(task, node.state if node else None, node.hostname if node else "")

    async def poll(self):
        """None while the workspace's task runs on a live node; else an exit status, with
        the reason in ``stop_reason`` (a lost node says so). A run that ended on its own is
        recorded (status and activity) and its service removed, as JupyterHub does not call
        :meth:`stop` for a server that poll reports ended; its /data stays on its node."""
        expected = bool(self.object_id)
        result = await self._observe()
        self.stop_reason = result.reason
        if result.exit_status is None:
            return None
        if expected:
            self.log.warning("%s is not running: %s", self.object_name, result.reason)
            self.outcome = Outcome.now(result.status, result.reason)
            await self.record_activity(result.status, result.reason)
            await self.remove_object()
        return result.exit_status

    async def stop(self, now=False):
        await super().stop(now=now)
        self.outcome = Outcome.now("stopped")
        await self.record_activity("stopped", self._by("stopped"))
        self._take_request()

    async def workspace_status(self) -> dict:
        """``{status, reason, since, checkpoint}`` for the workspaces API
        (:func:`~bench_spawner.workspace_status.status_report`, as BenchSpawner's). A workspace
        the hub believes running is checked on the swarm: one whose node is lost or whose
        task ended shows ``errored`` with why at once, before the hub's next poll records it."""
        live = live_status(self.pending, self.ready)
        if live == "running":
            try:
                seen = await self._observe()
            except Exception as e:  # the manager is away: say so rather than fail the list
                reason = f"the swarm's manager does not answer: {describe_failure(e)}"
                return status_report(live, self.outcome, reason)
            if seen.exit_status is not None:
                return status_report(None, Outcome.now(seen.status, seen.reason))
        return status_report(live, self.outcome)

    async def remove_object(self):
        """Remove the workspace's service; one already gone is success. The /data volume
        stays on its node (the next start is pinned there). A restricted workspace's egress
        record goes first, its overlay after the service."""
        await self.forget_restricted()
        if self.object_id:
            try:
                await self.docker("remove_service", self.object_id)
            except APIError as e:
                if e.response is None or e.response.status_code != 404:
                    raise
            self.object_id = ""
        await self.remove_overlay()
