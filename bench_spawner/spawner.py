"""BenchSpawner: JupyterHub named servers as sized, storage-backed Docker workspaces.

The spawner orchestrates; the pieces it coordinates live in their own modules:
``benchhub.workspace_spec`` (the one schema for form and REST), ``benchhub.resource_models``
(catalog and host fit), ``benchhub.volumes`` (the size-enforced ``/data`` volume),
``container`` (pure ``docker create`` arguments), ``workspace_status`` (what a user sees and
why) and ``actors`` (who asked, for the activity journal).

Start is: validate options -> prepare storage -> create container -> start it -> wait until
the single-user server answers. Returning only once the server answers means the hub's first
readiness check succeeds instead of backing off for seconds (see docs/benchmarks.md).

A start's options are parsed once: by the form hook or BenchHub's REST handler (which refuse
bad options before JupyterHub stores anything), else by ``apply_user_options``; that hook
stores them in canonical form and ``start()`` uses its spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from functools import cached_property

from docker.errors import APIError, NotFound
from dockerspawner import DockerSpawner
from jupyterhub.spawner import SpawnException
from jupyterhub.utils import exponential_backoff, url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Integer, Type, Unicode, default

from benchhub import firewall
from benchhub.checkpoints.workspace import label
from benchhub.egress_state import EgressState
from benchhub.labels import workspace_labels
from benchhub.networks import WorkspaceNetwork, ensure_workspace_network, host_mtu, workspace_guard
from benchhub.resource_models import HostCapacity, ResourceModel
from benchhub.volumes import DirectoryVolume, LoopbackVolume, WorkspaceVolume
from benchhub.workspace_spec import OptionsError, WorkspaceSpec, validate_workspace_name

from .activity import WorkspaceActivity
from .checkpointing import WorkspaceCheckpointing
from .cluster_teardown import WorkspaceClusterTeardown
from .container import ContainerPlan, create_kwargs, host_config_kwargs
from .package_install import WorkspacePackages
from .project_membership import ProjectMembership
from .quota_admission import QuotaAdmission  # WorkspaceStorageLimits + user limits
from .reboot_recovery import RebootRecovery
from .restricted_access import RestrictedAccess
from .root_inside import WorkspaceRoot
from .spawn_metrics import SpawnMetrics, metered_start
from .workspace_options import WorkspaceOptions
from .workspace_status import (
    Outcome,
    describe_failure,
    exit_reason,
    live_status,
    read_outcome,
    status_report,
    write_outcome,
)

STATE_VERSION = 1


class BenchSpawner(
    ProjectMembership,  # first: its option check wraps WorkspaceOptions'
    SpawnMetrics,  # before WorkspaceActivity: counts the run ends it journals
    WorkspaceActivity,
    WorkspaceOptions,
    QuotaAdmission,  # storage limits, and the user's limits at start (a 403)
    WorkspaceCheckpointing,
    WorkspacePackages,
    WorkspaceRoot,
    RebootRecovery,  # why a run ended by itself (_record_exit); keeps an interrupted cluster
    WorkspaceClusterTeardown,
    DockerSpawner,
):
    """Spawn each JupyterHub named server as a BenchHub workspace container."""

    storage_root = Unicode(
        "/var/lib/benchhub/workspaces",
        help="Host directory holding each workspace's volume (<root>/<user>/<workspace>/).",
    ).tag(config=True)

    storage_class = Type(
        klass=WorkspaceVolume,
        help="""Volume backend for /data. LoopbackVolume (ext4 image on a loop device; size
        enforced; needs root) is the default for a root hub, DirectoryVolume (not enforced)
        otherwise.""",
    ).tag(config=True)

    open_network = Unicode("bench-open", help="Docker network for access_mode 'open'.").tag(
        config=True
    )
    restricted_network = Unicode(
        "bench-restricted",
        help="Docker network for access_mode 'restricted': created --internal (no route out).",
    ).tag(config=True)
    restricted_subnet = Unicode(
        "10.213.0.0/16",
        help="""Subnet of the restricted network (must not overlap another Docker network).
        BenchHub assigns each restricted workspace a fixed address in it; the egress proxy
        allows each address its own whitelist.""",
    ).tag(config=True)
    network_mtu = Integer(
        0, help="MTU for networks BenchHub creates; 0 = the host's default-route interface MTU."
    ).tag(config=True)

    egress_config_dir = Unicode(
        "/var/lib/benchhub/egress",
        help="""The egress proxy's desired state, shared with the egress service (its
        --config-dir): a record per restricted workspace, the address book. The service owns
        the proxy; the spawner writes records and waits until the proxy has loaded them.""",
    ).tag(config=True)
    egress_container = Unicode(
        "bench-egress",
        help="Name of the egress proxy container (the service's --container), e.g. bench-egress.",
    ).tag(config=True)
    egress_load_timeout = Float(
        30,
        help="""Seconds a restricted workspace's start waits for the egress service to have the
        proxy load its whitelist (the service starts the proxy first if needed), e.g. 30.""",
    ).tag(config=True)

    pids_limit = Integer(4096, help="Maximum processes in a workspace container.").tag(config=True)
    ready_poll_interval = Float(
        0.05, help="Seconds between checks that a starting server answers (e.g. 0.05)."
    ).tag(config=True)

    boot_concurrency = Integer(
        -1,
        help="""How many servers may boot at once; -1 = the host's CPU count, 0 = no limit.

        A single-user server's boot is CPU-bound (~2 CPU-seconds). When a burst of workspaces
        starts on a small host, booting them all at once makes every one wait for the whole
        burst; admitting a few at a time lets the first ones answer in seconds while the last
        finish no later. Containers are created and storage prepared without waiting.
        """,
    ).tag(config=True)

    @default("storage_class")
    def _default_storage_class(self):
        return LoopbackVolume if os.geteuid() == 0 else DirectoryVolume

    @default("prefix")
    def _default_prefix(self):
        return "bench"

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return "/data"  # work is saved on the persistent, size-enforced volume by default

    @default("object_name")
    def _object_name_default(self):
        # The workspace name is already restricted to [A-Za-z0-9_-]; keep its case so that two
        # workspaces differing only in case never share a container.
        return f"{self.prefix}-{self.escaped_name}--{self.name}"

    # ---- host facts ----------------------------------------------------------------------------

    _host_capacity: HostCapacity | None = None

    async def host_capacity(self) -> HostCapacity:
        """CPUs, memory and GPUs of the Docker host (cached for the process)."""
        if BenchSpawner._host_capacity is None:
            info = await self.docker("info")
            gpus = len(
                [d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()]
            )
            BenchSpawner._host_capacity = HostCapacity(
                cpus=float(info["NCPU"]), memory_gb=info["MemTotal"] / 1024**3, gpus=gpus
            )
        return BenchSpawner._host_capacity

    @cached_property
    def restricted_access(self) -> RestrictedAccess:
        return RestrictedAccess(EgressState(self.egress_config_dir))

    @property
    def egress_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    @cached_property
    def volume(self) -> WorkspaceVolume:
        return self.storage_class(self.storage_root, self.escaped_name, self.name)

    # ---- progress events -----------------------------------------------------------------------

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events: list[dict] = []  # progress events of the current start
        self._registration: float | None = None  # the egress record this start waits for
        self._event_added = asyncio.Event()

    def _emit(self, progress: int, message: str) -> None:
        self._events.append({"progress": progress, "message": message})
        self._event_added.set()

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            self._event_added.clear()
            await self._event_added.wait()

    async def _step(self, progress: int, doing: str, coro):
        """Run one start step, reporting it and how long it took."""
        self._emit(progress, f"{doing}…")
        t0 = time.monotonic()
        result = await coro
        took = time.monotonic() - t0
        self._emit(progress + 5, f"{doing}: done in {took:.2f} s")
        self.log.info("%s: %s took %.2f s", self._log_name, doing, took)
        return result

    # ---- lifecycle -----------------------------------------------------------------------------

    @metered_start  # benchhub_workspace_spawn_duration_seconds (docs/metrics.md)
    async def start(self):
        self._events.clear()
        t0 = time.monotonic()
        self._note_start_request()
        try:
            spec, model = await self._admit_start()
        except BaseException:
            self._take_request()  # refused before anything was made: nothing to attribute
            raise
        never_ran = await self.never_ran()  # then a failed start leaves no volume behind
        try:
            await self._require_image()
            source = await self._step(
                10,
                f"Preparing storage ({spec.storage_gb} GB at /data)",
                self.volume.attach(spec.storage_gb),
            )
            network = await self.ensure_network(spec.access_mode)
            await self._save_unsaved_checkpoint()  # before _create replaces the container
            checkpoint = await self._choose_checkpoint(spec)
            self.refuse_oversized_restore(checkpoint, model)
            await self._step(
                30, "Creating the container", self._create(spec, model, network, source)
            )
            if checkpoint is not None:
                await self._step(
                    40,
                    f"Restoring checkpoint {label(checkpoint)}",
                    self._restore_checkpoint(checkpoint),
                )
            else:
                await self._restore_checkpoint(None)
            async with await self._boot_slot():
                await self._step(50, "Starting the container", self.start_object())
                ip, port = await self.get_ip_and_port()
                await self._step(
                    60, "Waiting for the server", self._wait_for_server(ip, port, model)
                )
            if self._registration is not None:  # typically loaded while the server booted
                await self._step(
                    70,
                    "Waiting for the egress proxy to load the whitelist",
                    self.restricted_access.wait_loaded(
                        self.egress_key, self._registration, self.egress_load_timeout
                    ),
                )
            await self.install_packages(spec.packages)  # through the proxy when restricted
        except BaseException as e:
            reason = (
                describe_failure(e) if not isinstance(e, asyncio.CancelledError) else "cancelled"
            )
            await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("errored", reason))
            await self.record_activity("errored", f"start failed: {reason}")
            self._take_request()
            await self._release()
            await self.settle_storage()
            if never_ran:
                await self.discard_first_start()
            raise
        await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("running"))
        self.watch_writable_layer(model.disk_gb, fresh_start=True)
        self._forget_restore_choice(spec)
        await self.record_activity(
            "started", self._by("started"), {"resource_model": spec.resource_model}
        )
        self._take_request()
        self._emit(100, f"Workspace ready in {time.monotonic() - t0:.1f} s")
        return f"http://{ip}:{port}"

    async def _admit_start(self) -> tuple[WorkspaceSpec, ResourceModel]:
        """This start's spec and resource model, its ``/data`` size claimed, and "created"
        journaled for a new workspace; a 400 (nothing made) for a bad name or options or
        storage that does not fit."""
        try:
            validate_workspace_name(self.name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        spec = self._take_applied_spec()
        if spec is None:  # apply_user_options was configured to something else
            spec = await self.validate_options(self.user_options)
        await self.admit_project(spec)  # a 403 (nothing made) when the owner may not start it
        model = self.schema.resource_models[spec.resource_model]
        self.use_template(spec.image)  # its image, and the app the server opens
        new = not await asyncio.to_thread(self.volume.dir.exists)
        await self.claim_storage(spec)  # a 400 naming storage_gb before anything is created
        if new:
            await self.record_activity(
                "created", self._by("created"), {"options": spec.to_user_options()}
            )
        return spec, model

    _boot_slots: asyncio.Semaphore | None = None

    async def _boot_slot(self) -> asyncio.Semaphore | contextlib.nullcontext:
        """The admission gate for booting servers (see ``boot_concurrency``)."""
        limit = self.boot_concurrency
        if limit < 0:
            limit = max(1, int((await self.host_capacity()).cpus))
        if limit == 0:
            return contextlib.nullcontext()
        if BenchSpawner._boot_slots is None:
            BenchSpawner._boot_slots = asyncio.Semaphore(limit)
        if BenchSpawner._boot_slots.locked():
            self._emit(45, "Waiting for a boot slot (other workspaces are starting)…")
        return BenchSpawner._boot_slots

    async def _require_image(self):
        try:
            await self.docker("inspect_image", self.image)
        except NotFound:
            raise SpawnException(
                f"image missing: {self.image} is not on this host (build it: make images-all)",
                reason="image",
            ) from None

    async def _create(self, spec: WorkspaceSpec, model, network: str, source) -> None:
        await self._discard_container()
        self.network_name = network
        net = BenchSpawner._networks[network]
        self.hub_connect_url = f"http://{net.gateway}:{self.hub.port}"
        environment, address, dns = self.get_env(), None, None
        # what the server's transfer-rights extension enforces (images/jupyterlab/app)
        environment["BENCHHUB_UPLOAD_ALLOWED"] = str(spec.permissions.upload).lower()
        environment["BENCHHUB_DOWNLOAD_ALLOWED"] = str(spec.permissions.download).lower()
        self._registration = None
        if spec.access_mode == "restricted":
            restricted = await self.restricted_access.prepare(
                self.egress_key, self.object_name, net, spec.whitelist
            )
            environment.update(restricted.environment)
            address, dns = restricted.address, restricted.dns
            self._registration = restricted.registered_at
        plan = ContainerPlan(
            name=self.object_name,
            image=self.image,
            model=model,
            network=network,
            data_source=str(source),
            environment=environment,
            address=address,
            dns=dns,
            labels=workspace_labels(self.user.name, self.name, model.name),
            port=self.port,
            pids_limit=self.pids_limit,
            root_inside=await self._root_inside(),
            project_data=await self.project_data_source(),
        )
        kwargs = create_kwargs(plan)
        kwargs["host_config"] = self.client.create_host_config(**host_config_kwargs(plan))
        if address:
            endpoint = self.client.create_endpoint_config(ipv4_address=address)
            kwargs["networking_config"] = self.client.create_networking_config({network: endpoint})
        obj = await self.docker("create_container", **kwargs)
        self.object_id = obj["Id"]

    async def _wait_for_server(self, ip: str, port: int, model) -> None:
        url = f"http://{ip}:{port}" + url_path_join(self.server.base_url, "api")
        client = AsyncHTTPClient()
        last_inspect = time.monotonic()

        async def answers():
            nonlocal last_inspect
            try:
                # the server is the user's program: no credential goes with this request, a
                # redirect is not followed (it could point at a host service) and the body is
                # dropped as it arrives (never held in the hub's memory)
                await client.fetch(
                    url,
                    connect_timeout=1,
                    request_timeout=2,
                    follow_redirects=False,
                    decompress_response=False,
                    streaming_callback=lambda chunk: None,
                )
                return True
            except (HTTPClientError, OSError):
                pass
            if time.monotonic() - last_inspect > 0.5:
                last_inspect = time.monotonic()
                await self._raise_if_exited(model)
            return False

        await exponential_backoff(
            answers,
            f"server in {self.object_name} did not answer at {url}",
            start_wait=self.ready_poll_interval,
            scale_factor=1,
            max_wait=self.ready_poll_interval,
            timeout=self.start_timeout,
        )

    async def _raise_if_exited(self, model) -> None:
        obj = await self.get_object()
        if obj is None or obj["State"]["Running"]:
            return
        logs = await self.docker("logs", self.object_id, tail=5)
        tail = logs.decode(errors="replace").strip().splitlines()[-1:] if logs else []
        reason = exit_reason(obj["State"], model.memory_gb)
        raise SpawnException(
            f"{reason}" + (f"; last log line: {tail[0]}" if tail else ""), reason="exit"
        )

    async def poll(self):
        expected = bool(self.object_id)
        obj = await self.get_object()  # forgets object_id when the container is gone
        if obj is None:
            if expected:
                await self._record_vanished()
            return 0
        if obj["State"]["Running"]:
            self.keep_watching(obj)  # the writable layer's limit (again, after a hub restart)
            return None
        # JupyterHub does not call stop() for a server that poll() reports dead: note why it
        # died, save what it changed since the last periodic checkpoint (a failure keeps the
        # container aside and says so), then release the container and the volume here.
        await self._record_exit(obj)
        with contextlib.suppress(Exception):  # logged and shown by _checkpoint_on_stop
            await self._checkpoint_on_stop(obj)
        await self._release()
        return obj["State"].get("ExitCode", 0)

    async def _record_vanished(self) -> None:
        reason = "container vanished (removed outside BenchHub, e.g. while the hub was down)"
        self.log.warning("%s: %s", self._log_name, reason)
        await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("errored", reason))
        await self.record_activity("errored", reason)

    async def stop(self, now=False):
        expected = bool(self.object_id)
        obj = await self.get_object()
        if obj is None and expected:
            await self._record_vanished()
        elif obj is not None and obj["State"]["Running"]:
            await self.stop_object()
            await self._checkpoint_on_stop(obj)  # durable before the container goes
            await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("stopped"))
            await self.record_activity("stopped", self._by("stopped"))
        elif obj is not None:
            await self._record_exit(obj)
            await self._checkpoint_on_stop(obj)
        self._take_request()
        await self._release()
        self.clear_state()

    async def _release(self) -> None:
        """Give back what a run held: its container, then the rest (:meth:`_release_run`)."""
        await self._discard_container()
        await self._release_run()

    async def _release_run(self) -> None:
        """Give back what a run held besides its container (which a failed stop's checkpoint
        keeps aside): its clusters, the volume mount, the egress list and address; the admins
        who were inside have left it."""
        await self._stop_clusters()
        await self.detach_volumes()  # /data, and /data/project when no other run holds it
        await self.restricted_access.release(self.egress_key)
        await self.record_visitors_left("the workspace stopped")

    async def _discard_container(self) -> None:
        try:
            await self.docker("remove_container", self.object_name, v=True, force=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: removal already in progress
                raise
        self.object_id = ""

    async def delete_forever(self):
        """Remove everything the workspace had: container, volume, host directory."""
        await self._discard_container()
        await self.volume.delete()
        await self.record_activity("deleted", self._by("deleted"))
        self._take_request()

    async def rename(self, old_name, new_name):
        """Move the (stopped) workspace's host directory with it."""
        try:
            validate_workspace_name(new_name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        await self.volume.detach()
        new = self.volume.dir.parent / new_name
        if self.volume.dir.exists():
            await asyncio.to_thread(os.replace, self.volume.dir, new)

    async def workspace_status(self) -> dict:
        """{status, reason, since, checkpoint} as shown on the home page and by the workspaces
        API; ``checkpoint`` is the last checkpoint and a failing periodic one (or {})."""
        live = live_status(self.pending, self.ready)
        outcome = await asyncio.to_thread(read_outcome, self.volume.dir)
        checkpoint = await self.checkpoint_status() if self.checkpoints_enabled else {}
        reason = ""
        if live == "running":
            spec = self.current_spec()
            if spec and spec.access_mode == "restricted" and not await self._egress_proxy_running():
                reason = "egress proxy is down: no outside access until it is back"
            failing = checkpoint.get("periodic_error")
            if failing and not reason:
                reason = f"the last periodic checkpoint failed: {failing['message']}"
        return status_report(live, outcome, reason, checkpoint)

    async def _egress_proxy_running(self) -> bool:
        """Whether the egress proxy container runs (observed; the egress service owns it)."""
        try:
            state = (await self.docker("inspect_container", self.egress_container))["State"]
        except NotFound:
            return False
        return bool(state["Running"])

    # ---- networks ------------------------------------------------------------------------------

    _networks: dict[str, WorkspaceNetwork] = {}
    _network_lock = asyncio.Lock()

    async def ensure_network(self, access_mode: str) -> str:
        """The network for an access mode: made if missing (or made anew, see
        :func:`~.networks.ensure_workspace_network`), its facts remembered, and the host
        firewall of every workspace network checked at every start: one ``iptables -S`` when
        all is in place, the guards rewritten when not (after a reboot or a firewall reload)."""
        name = self.restricted_network if access_mode == "restricted" else self.open_network
        async with BenchSpawner._network_lock:
            if name not in BenchSpawner._networks:
                subnet = self.restricted_subnet if access_mode == "restricted" else None
                BenchSpawner._networks[name] = await ensure_workspace_network(
                    self.docker,
                    name,
                    access_mode,
                    subnet,
                    self.network_mtu or host_mtu(),
                    frozenset({self.egress_container}),
                    self.log,
                )
            modes = {self.open_network: "open", self.restricted_network: "restricted"}
            known = BenchSpawner._networks
            guards = [
                workspace_guard(known[n], mode, self.hub.port)
                for n, mode in modes.items()
                if n in known
            ]
            rewritten = await firewall.ensure(guards)
        for guard in rewritten:
            self.log.info("host firewall for network %s put in place", guard.name)
        return name

    # ---- state ---------------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        if state:
            state["version"] = STATE_VERSION
        return state

    def load_state(self, state):
        # version 0 (plain dockerspawner: object_id/object_name or container_id) loads as is
        super().load_state(state)
