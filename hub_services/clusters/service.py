"""The clusters reconciler: the clusters users asked for, converged with what runs.

:class:`ClusterController` keeps the desired state (one :class:`~.state.ClusterRecord` per
workspace with a cluster, in a JSON file) and, every ``interval`` seconds or at once when
Docker reports a container stopping, a booting member reports or a job is submitted to a
cluster that can grow (:mod:`.join_watch`, :mod:`.pending_watch`), converges every cluster:

* its workspace stopped (container gone or not running, or the hub no longer lists it) or a
  user asked to stop it: everything of the cluster is removed and its subnet released;
* it is starting (also: a start a crash interrupted): network, manager (Grid Engine and the
  Spark master), workspace attached, ``/data/.spark/cluster.json`` written (:mod:`.spark`);
* it runs: one :class:`~.scaler.ClusterScaler` pass (lost members replaced, scaling);
* a cluster object no record knows (a crash between creating and recording, a lost state
  file) is removed.

A restart of the service loads the records and carries on with the running containers (it
adopts them). Operations on one cluster are serialised by a lock; clusters converge in parallel.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from docker.errors import APIError, NotFound
from traitlets import Float, Instance, Integer, Type, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.atomic import atomic_write
from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient
from benchhub.labels import WORKSPACE
from benchhub.networks import host_mtu
from benchhub.resource_models import ResourceModel
from benchhub.storage_admission import StorageRequest
from benchhub.storage_allocations import StorageAdmission, StorageRefused
from benchhub.volumes import (
    DATA_GID,
    DATA_UID,
    DirectoryVolume,
    LoopbackVolume,
    WorkspaceVolume,
)
from benchhub.writable_layer import WritableLayerWatch

from . import pacing, recovery, sge, spark
from .addresses import SubnetPool, member_addresses
from .containers import LABEL, ClusterNames, data_mounts
from .nodes import WATCH_TIMEOUT_S, ClusterNodes, node_exit_reason
from .scaler import ClusterScaler
from .scaler_log import ScalerLog
from .settings import ClusterSettings
from .state import ClusterRecord, ClusterStore, utcnow
from .status_view import cluster_status

__all__ = ["ClusterController", "ClusterExists", "ClusterImageMissing", "WorkspaceNotRunning"]

GIB = 1024**3
WORKSPACE_USER = f"{DATA_UID}:{DATA_GID}"  # who runs the workspace's server (not root)


class WorkspaceNotRunning(Exception):
    """A cluster was asked for a workspace that does not run (the message says how to fix)."""


class ClusterExists(Exception):
    """The workspace already has a cluster."""


class ClusterImageMissing(Exception):
    """The manager/member image is not on this host (the message says how to build it)."""


def settings_of(rec: ClusterRecord) -> ClusterSettings:
    """The record's settings as :class:`ClusterSettings` (static: ``members`` is min and max)."""
    options = dict(rec.settings)
    if options["type"] == "static":
        options["min_members"] = options["max_members"] = options.pop("members")
    return ClusterSettings(**options)


class ClusterController(LoggingConfigurable):
    """Runs workspace clusters on the local Docker Engine. Settings: ``c.ClusterController``."""

    prefix = Unicode(
        "bench", help="Prefix of BenchHub's Docker names (the hub's BENCHHUB_PREFIX), e.g. bench."
    ).tag(config=True)
    image = Unicode(
        "benchhub/cluster:latest", help="Image of managers and members (images/build.sh cluster)."
    ).tag(config=True)
    state_dir = Unicode(
        "/var/lib/benchhub/clusters",
        help="Directory of the service's state (clusters.json) and the SGE configuration bundle.",
    ).tag(config=True)
    scratch_root = Unicode(
        "/var/lib/benchhub/cluster-scratch",
        help="Host directory for members' /scratch volumes (<root>/<cluster id>/<member>/).",
    ).tag(config=True)
    scratch_class = Type(
        klass=WorkspaceVolume,
        help="""Volume behind a member's /scratch: LoopbackVolume (ext4 image on a loop device,
        size enforced, needs root; the default for a root service) or DirectoryVolume (size
        not enforced).""",
    ).tag(config=True)
    subnet_pool = Unicode(
        "10.231.0.0/16",
        help="""Addresses for cluster networks, e.g. 10.231.0.0/16; each cluster gets its own
        subnet_prefix_length subnet of it. Must not overlap the site's networks.""",
    ).tag(config=True)
    subnet_prefix_length = Integer(
        26, help="Size of each cluster's subnet, e.g. 26 (59 members plus the workspace)."
    ).tag(config=True)
    address_quarantine = Float(
        900,
        help="""Seconds before a released member address or subnet is handed out again, e.g.
        900 (Grid Engine's qmaster caches address -> name answers for about 10 minutes).""",
    ).tag(config=True)
    interval = Float(5, help="Seconds between passes (sooner on events), e.g. 5.").tag(config=True)
    stabilisation = Float(
        60, help="Seconds a dynamic cluster waits after a scale operation before the next one."
    ).tag(config=True)
    min_lifetime = Float(
        300, help="Seconds a member lives at least before an idle one may be drained (300)."
    ).tag(config=True)
    join_timeout = Float(
        120, help="Seconds a new member may take to report to the manager before it is replaced."
    ).tag(config=True)
    manager_timeout = Float(60, help="Seconds a manager may take to become ready.").tag(config=True)
    parallel_starts = Integer(
        0, help="Members of a cluster booting at once, e.g. 4; 0: from the cores (pacing.py)."
    ).tag(config=True)
    manager_cpus = Float(
        1, help="CPU cores of a manager that is not dedicated (its scheduling is light)."
    ).tag(config=True)
    manager_memory_gb = Float(1, help="Memory (GiB) of a non-dedicated manager.").tag(config=True)
    network_mtu = Integer(0, help="MTU of cluster networks; 0 = the host's default route MTU.").tag(
        config=True
    )
    hub_base_url = Unicode(
        help="""The hub's base URL path (JupyterHub's JUPYTERHUB_BASE_URL, e.g. /): the Spark
        UI of a cluster with web access is at
        <base>user/<user>/<workspace>/proxy/spark-master:8080/."""
    ).tag(config=True)
    docker_threads = Integer(16, help="Docker call threads, e.g. 16 (a burst: 12)").tag(config=True)
    docker_timeout = Float(30, help="Seconds a Docker API call may take.").tag(config=True)
    watch_threads = Integer(
        32, help="Docker threads of the watches in managers (joins, new jobs), apart, e.g. 32"
    ).tag(config=True)
    hub = Instance(HubClient)

    @default("hub")
    def _default_hub(self):
        return HubClient()

    @default("hub_base_url")
    def _default_hub_base_url(self):
        return os.environ.get("JUPYTERHUB_BASE_URL", "/")

    @default("scratch_class")
    def _default_scratch_class(self):
        return LoopbackVolume if os.geteuid() == 0 else DirectoryVolume

    @validate("subnet_prefix_length")
    def _check_prefix_length(self, proposal):
        if not 16 <= proposal.value <= 29:
            raise ValueError(
                f"subnet_prefix_length must be from 16 to 29, e.g. 26; got {proposal.value}"
            )
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.engine = DockerEngine(self.docker_threads, self.docker_timeout)
        self.watch_engine = DockerEngine(self.watch_threads, WATCH_TIMEOUT_S)  # see nodes.py
        self.store = ClusterStore(Path(self.state_dir) / "clusters.json")
        pool_state, self.records = self.store.load()
        self.pool = SubnetPool.from_dict(
            pool_state, self.subnet_pool, self.subnet_prefix_length, self.address_quarantine
        )
        manager = ResourceModel("manager", self.manager_cpus, self.manager_memory_gb)
        # c.StorageAdmission and c.WritableLayerWatch: the same settings as the hub's
        self.admission = StorageAdmission(roots=[self.scratch_root], parent=self, log=self.log)
        self.nodes = ClusterNodes(
            self.engine,
            self.image,
            str(self.config_dir),
            self._scratch,
            self.network_mtu or host_mtu(),
            manager,
            self.manager_timeout,
            self.log,
            self.admission,
            self.watch_engine,
        )
        self.scaler = ClusterScaler(
            self.nodes,
            self.save,
            self.parallel_starts or pacing.host_start_window(),
            self.join_timeout,
            self.address_quarantine,
            self.log,
            self.admission,
            WritableLayerWatch(parent=self, log=self.log),
        )
        self.views: dict[str, dict] = {}
        self._models: dict[str, ResourceModel] = {}  # cluster id -> its members' model
        self.last_pass_at = None
        self.last_error = ""
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: dict[str, asyncio.Task] = {}
        self._save_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.scaler.on_joined = self._wake.set  # a booting member reported: a pass now
        self.scaler.arrivals.on_new_jobs = self._wake.set  # a job was submitted: a pass now
        self.scaler.starts.lock_of = self._locks.__getitem__  # a round settles under it
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def config_dir(self) -> Path:
        return Path(self.state_dir) / "sge-config"

    def _scratch(self, cluster_id: str, member: str) -> WorkspaceVolume:
        return self.scratch_class(self.scratch_root, cluster_id, member)

    def names(self, rec: ClusterRecord) -> ClusterNames:
        return ClusterNames(self.prefix, rec.cluster_id)

    async def setup(self) -> None:
        """Write the configuration bundle every manager mounts (the same for all clusters)."""
        for path, text in sge.config_bundle().items():
            await asyncio.to_thread(atomic_write, self.config_dir / path, text, 0o644)

    async def save(self) -> None:
        """Persist the records and the subnet pool (serialised; atomic file replace)."""
        async with self._save_lock:
            text = self.store.dump(self.pool.to_dict(), self.records)
            await asyncio.to_thread(self.store.write, text)

    # ---- what the API asks -----------------------------------------------------------------

    async def start_cluster(
        self, user: str, workspace: str, settings: ClusterSettings, model: ResourceModel
    ) -> ClusterRecord:
        """Record a cluster for a running workspace, create its network and start bringing it
        up (in the background). Raises :class:`WorkspaceNotRunning`, :class:`ClusterExists`,
        :class:`ClusterImageMissing`, :class:`SubnetsExhausted` or ``StorageRefused`` (the
        scratch of all ``max_members`` does not fit now)."""
        key = f"{user}/{workspace}"
        async with self._locks[key]:
            if key in self.records:
                raise ClusterExists(
                    f"{key} already has a cluster ({self.records[key].status}); stop it first "
                    "(DELETE) to start one with other settings"
                )
            await self._check_scratch(user, settings)
            try:
                await self.engine.call("inspect_image", self.image)
            except NotFound:
                raise ClusterImageMissing(
                    f"the cluster image {self.image} is not on this host; build it with "
                    "images/build.sh cluster (make images)"
                ) from None
            container = await self.nodes.workspace_container(self.prefix, user, workspace)
            mounts = data_mounts(container) if container else []
            if not mounts:
                raise WorkspaceNotRunning(
                    f"workspace {key} is not running; start it first, then its cluster"
                )
            rec = await self._new_cluster(user, workspace, settings, model, container, mounts)
            self.records[key] = rec
            self._models[rec.cluster_id] = model
            await self.save()
        self._launch(key, self._bring_up(rec))
        return rec

    async def _check_scratch(self, user: str, settings: ClusterSettings) -> None:
        """``StorageRefused`` naming ``scratch_gb`` when the cluster at its largest could not
        have its members' scratch now (each member's is claimed again when it is made)."""
        if not settings.scratch_gb:
            return
        request = StorageRequest(
            "scratch_gb", user, settings.scratch_gb * GIB, settings.max_members, what="/scratch"
        )
        verdict = await asyncio.to_thread(self.admission.check, self.scratch_root, request)
        if not verdict.admitted:
            raise StorageRefused("scratch_gb", verdict.message, verdict)

    async def _new_cluster(self, user, workspace, settings, model, container, mounts):
        """A record with a subnet whose network exists. Another hub on this engine may take
        a subnet between our look at Docker's networks and our create: then the next one."""
        internal = await self.nodes.is_restricted(container)
        for attempt in range(3):
            now = utcnow()
            cluster_id = secrets.token_hex(3)
            subnet = self.pool.allocate(
                cluster_id, now.timestamp(), await self.nodes.docker_subnets()
            )
            book = member_addresses(subnet, self.address_quarantine)
            rec = ClusterRecord(
                user=user,
                workspace=workspace,
                cluster_id=cluster_id,
                settings=settings.to_options(),
                subnet=subnet,
                workspace_container=container["Id"],
                workspace_address=book.assign("workspace", now.timestamp()),
                internal=internal,
                model=vars(model),
                data_dir=mounts[0].source,
                created_at=now.isoformat(),
                reason="starting the manager",
                addresses=book.to_dict(),
            )
            try:
                await self.nodes.create_network(self.names(rec), rec)
                return rec
            except APIError as e:
                self.pool.release(cluster_id, now.timestamp())
                if "overlap" not in str(e).lower() or attempt == 2:
                    raise
                self.log.warning("subnet %s was taken meanwhile (%s); trying another", subnet, e)
        raise AssertionError("unreachable")

    async def stop_cluster(self, user: str, workspace: str) -> bool:
        """Start removing the workspace's cluster; False when it has none."""
        rec = self.records.get(f"{user}/{workspace}")
        if rec is None:
            return False
        if rec.status != "stopping":
            rec.status, rec.reason = "stopping", "stopping on request"
            await self.save()
            self._launch(rec.key, self._teardown(rec, "stopped on request"))
        return True

    async def status(self, user: str, workspace: str) -> dict | None:
        """The cluster as the API shows it, or None when the workspace has none. The scaler
        log's tail is read in a worker thread, and only its last 64 KiB: the file is the
        user's, who can make it any size."""
        rec = self.records.get(f"{user}/{workspace}")
        if rec is None:
            return None
        scaler_log = await asyncio.to_thread(ScalerLog(rec.data_dir).tail, 20)
        web_ui = self.spark_ui(rec) if rec.settings.get("web_access") else None
        view = self.views.get(rec.key) or {}
        return cluster_status(rec, self.names(rec), view, web_ui, scaler_log)

    def spark_ui(self, rec: ClusterRecord) -> str:
        """Where the cluster's Spark master UI is, through the hub (web access on)."""
        return spark.ui_path(self.hub_base_url, rec.user, rec.workspace)

    def model_of(self, rec: ClusterRecord) -> ResourceModel:
        """``rec``'s members' resource model, made once per cluster from its record (which
        keeps the model's fields: a changed catalogue never changes a running cluster)."""
        model = self._models.get(rec.cluster_id)
        if model is None:
            model = self._models[rec.cluster_id] = ResourceModel(**rec.model)
        return model

    def _spark_file(self, rec: ClusterRecord) -> dict:
        settings = settings_of(rec)
        capacity = sge.member_capacity(self.model_of(rec), settings.dedicated_manager)
        web_ui = self.spark_ui(rec) if settings.web_access else None
        return spark.cluster_file(
            rec.cluster_id, settings.type, settings.max_members, capacity, web_ui
        )

    def keys(self) -> list[str]:
        return sorted(self.records)

    # ---- bring-up and teardown -------------------------------------------------------------

    def _launch(self, key: str, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[key] = task

        def landed(t: asyncio.Task) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]
            if not t.cancelled() and t.exception() is not None:
                self.log.error("%s: cluster operation failed", key, exc_info=t.exception())

        task.add_done_callback(landed)

    def _busy(self, key: str) -> bool:
        return key in self._tasks or self._locks[key].locked()

    async def _bring_up(self, rec: ClusterRecord) -> None:
        """Network, manager, workspace attached; ``running`` after, ``errored`` with the
        reason (and nothing left running) when a step fails. Safe to run again."""
        names = self.names(rec)
        async with self._locks[rec.key]:
            if self.records.get(rec.key) is not rec or rec.status != "starting":
                return
            try:
                workspace = await self.engine.inspect(rec.workspace_container)
                if workspace is None or not workspace["State"]["Running"]:
                    raise WorkspaceNotRunning("the workspace stopped while its cluster started")
                await self.nodes.create_network(names, rec)
                spark_ui = self.spark_ui(rec) if rec.settings.get("web_access") else None
                await self.nodes.start_manager(
                    names, rec, self.model_of(rec), data_mounts(workspace), spark_ui
                )
                await self.nodes.attach_workspace(names, rec, workspace)
                await asyncio.to_thread(
                    spark.write_cluster_file, rec.data_dir, self._spark_file(rec)
                )
                if rec.status == "starting":  # not if a stop came in meanwhile
                    rec.status, rec.reason = "running", await self._client_note(rec)
                settings = settings_of(rec)
                line = (
                    f"cluster {rec.cluster_id} started: {settings.type}, "
                    f"{settings.min_members}-{settings.max_members} members of "
                    f"{rec.model['name']}"
                )
                await asyncio.to_thread(ScalerLog(rec.data_dir).append, utcnow(), [line])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.error("%s: cluster start failed", rec.key, exc_info=True)
                if rec.status == "starting":
                    rec.status, rec.reason = "errored", f"start failed: {e}"
                await self._remove_quietly(names, rec)
            await self.save()
        self._wake.set()  # the first scaler pass (a static cluster's members) at once

    async def _client_note(self, rec: ClusterRecord) -> str:
        """Why jobs cannot be submitted from the workspace, or "" (they can). Asked inside
        the user's own container, so as the workspace's unprivileged user (no root process
        ever runs where the user's processes could tamper with it), with the engine's bounds
        on output and time; only the exit code counts."""
        found = await self.engine.exec(
            rec.workspace_container,
            ["sh", "-c", "command -v qsub"],
            user=WORKSPACE_USER,
            max_output=4096,
        )
        if found.ok:
            return ""
        return (
            "the workspace image has no Grid Engine client (qsub): use a BenchHub image, or "
            "install gridengine-client and link $SGE_ROOT/default/common to "
            "/data/.sge/common"
        )

    async def _remove_quietly(self, names: ClusterNames, rec: ClusterRecord) -> None:
        try:
            await self.nodes.remove_all(names, rec)
            rec.members.clear()
            await asyncio.to_thread(spark.remove_cluster_file, rec.data_dir, rec.cluster_id)
        except Exception:
            self.log.error("%s: removing the cluster's containers failed", rec.key, exc_info=True)

    async def _teardown(self, rec: ClusterRecord, reason: str) -> None:
        """Remove everything of the cluster and forget it; its subnet goes into quarantine."""
        async with self._locks[rec.key]:
            if self.records.get(rec.key) is not rec:
                return
            self.log.info("%s: removing cluster %s: %s", rec.key, rec.cluster_id, reason)
            await self.nodes.remove_all(self.names(rec), rec)
            await asyncio.to_thread(spark.remove_cluster_file, rec.data_dir, rec.cluster_id)
            self.pool.release(rec.cluster_id, utcnow().timestamp())
            del self.records[rec.key]
            self._models.pop(rec.cluster_id, None)
            self.views.pop(rec.key, None)
            self.scaler.forget(rec.key)
            await self.save()
        if reason == "stopped on request":
            line = f"cluster {rec.cluster_id} stopped: {reason}"
            await asyncio.to_thread(ScalerLog(rec.data_dir).append, utcnow(), [line])

    # ---- the reconcile pass ----------------------------------------------------------------

    async def reconcile(self) -> None:
        """One pass over every cluster (see the module docstring)."""
        active = await self._active_workspaces()
        await self._remove_orphans()
        idle = [rec for rec in list(self.records.values()) if not self._busy(rec.key)]
        await asyncio.gather(*(self._converge(rec, active) for rec in idle))

    async def _active_workspaces(self) -> set[str] | None:
        """Workspaces the hub lists as running and not stopping; None if the hub did not
        answer (then Docker alone decides: a hub restart stops no cluster)."""
        try:
            return {
                s.key async for s in self.hub.active_servers() if s.model.get("pending") != "stop"
            }
        except Exception as e:
            self.log.warning("hub not reachable (%s); judging workspaces by Docker alone", e)
            return None

    async def _remove_orphans(self) -> None:
        """Remove cluster containers and networks of this prefix that no record knows."""
        known = {rec.cluster_id for rec in self.records.values()}
        selector = {"label": f"{LABEL}.prefix={self.prefix}"}
        containers = await self.engine.call("containers", all=True, filters=selector)
        networks = await self.engine.call("networks", filters=selector)
        for container in containers:
            if container["Labels"].get(f"{LABEL}.id") not in known:
                self.log.warning("removing orphaned cluster container %s", container["Names"])
                await self.engine.remove(container["Id"])
        for network in networks:
            if (network.get("Labels") or {}).get(f"{LABEL}.id") not in known:
                self.log.warning("removing orphaned cluster network %s", network["Name"])
                await self.nodes.remove_network(network["Name"])

    async def _converge(self, rec: ClusterRecord, active: set[str] | None) -> None:
        try:
            if rec.status == "stopping":
                return await self._teardown(rec, rec.reason or "stopped on request")
            workspace = await self.engine.inspect(rec.workspace_container)
            running = workspace is not None and workspace["State"]["Running"]
            if not running or (active is not None and rec.key not in active):
                return await recovery.hold_or_teardown(self, rec, active)  # or waits for it
            if rec.status == "starting":
                return self._launch(rec.key, self._bring_up(rec))
            if rec.status == "running":
                async with self._locks[rec.key]:
                    await self._step(rec, workspace)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.error("%s: cluster pass failed", rec.key, exc_info=True)
            self.views.setdefault(rec.key, {})["error"] = f"{type(e).__name__}: {e}"

    async def _step(self, rec: ClusterRecord, workspace: dict) -> None:
        if self.records.get(rec.key) is not rec or rec.status != "running":
            return
        names = self.names(rec)
        manager = await self.engine.inspect(names.manager)
        if manager is None or not manager["State"]["Running"]:
            why = node_exit_reason(manager["State"] if manager else None)
            rec.status = "errored"
            rec.reason = f"the manager stopped ({why}); stop the cluster and start it again"
            await self._remove_quietly(names, rec)
            await self.save()
            await asyncio.to_thread(ScalerLog(rec.data_dir).append, utcnow(), [rec.reason])
            return
        await self.nodes.guard_network(names)  # back at once after a firewall reload
        settings = settings_of(rec)
        model = self.model_of(rec)
        policy = settings.scaling_policy(model, **self._pacing(settings))
        view = await self.scaler.step(
            names, rec, model, policy, data_mounts(workspace), ScalerLog(rec.data_dir)
        )
        self.views[rec.key] = view

    def _pacing(self, settings: ClusterSettings) -> dict[str, timedelta]:
        """A static cluster replaces a lost member at once; a dynamic one is paced."""
        if settings.type == "static":
            return {"stabilisation": timedelta(0), "min_lifetime": timedelta(0)}
        return {
            "stabilisation": timedelta(seconds=self.stabilisation),
            "min_lifetime": timedelta(seconds=self.min_lifetime),
        }

    # ---- the loop --------------------------------------------------------------------------

    def _on_docker_event(self, event: dict) -> None:
        """(Docker's event thread) a workspace or one of our cluster containers stopped."""
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        ours = attributes.get(f"{LABEL}.prefix") == self.prefix
        if (ours or WORKSPACE in attributes) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def loop(self) -> None:
        """Reconcile every ``interval`` seconds, or at once after a relevant Docker event."""
        self._loop = asyncio.get_running_loop()
        self.engine.watch(self._on_docker_event)
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
                self.last_pass_at, self.last_error = utcnow(), ""
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                self.log.error("clusters pass failed", exc_info=True)
            pause = pacing.next_pass_in(self.interval, self.records.values())
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except TimeoutError:
                pass

    def close(self) -> None:
        """The service stops: both Docker thread pools (calls, watches) take no more calls."""
        self.engine.close()
        self.watch_engine.close()

    def health(self) -> dict:
        at = self.last_pass_at.isoformat() if self.last_pass_at else None
        # counts only: any logged-in user may ask, and keys would name others' workspaces
        return {
            "last_pass_at": at,
            "last_error": self.last_error,
            "clusters": len(self.records),
            "operations_in_flight": len(self._tasks),
        }
