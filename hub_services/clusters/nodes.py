"""A cluster's Docker objects, created and removed: network, manager, members, scratch.

:class:`ClusterNodes` carries out what :mod:`.containers` and :mod:`.sge` build, through the
one :class:`~.engine.DockerEngine`. Every method is safe to repeat: creating what exists
reuses it, removing what is gone succeeds. Grid Engine is changed only through the manager
(``docker exec MANAGER bench-sge …``, ``qmod``), never by editing files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from docker.errors import APIError, NotFound
from jupyterhub.utils import exponential_backoff

from benchhub import firewall
from benchhub.docker_engine import DockerEngine
from benchhub.labels import USER, WORKSPACE
from benchhub.resource_models import ResourceModel
from benchhub.storage_admission import StorageRequest
from benchhub.storage_allocations import StorageAdmission
from benchhub.volumes import StorageError, WorkspaceVolume

from . import join_watch, pending_watch, sge, spark
from .addresses import manager_address
from .containers import (
    CONFIG_DIR,
    PUBLISH_DIR,
    SCRATCH,
    ClusterNames,
    Mount,
    NodePlan,
    create_kwargs,
    host_config_kwargs,
    labels,
    network_guard,
    network_kwargs,
    networking_kwargs,
)
from .scaling import Capacity
from .state import ClusterRecord, MemberRecord

__all__ = ["WATCH_TIMEOUT_S", "ClusterNodes", "NodeError", "node_exit_reason"]

GIB = 1024**3
READY_LINE = "bench-cluster: manager ready"


class NodeError(RuntimeError):
    """A cluster node could not be created or changed; the message says which and why."""


def node_exit_reason(state: dict | None, memory: int | None = None) -> str:
    """Why a cluster container is not running, from ``docker inspect``'s State (None: gone)."""
    if state is None:
        return "its container was removed outside BenchHub"
    limit = f" (limit {memory / GIB:g} GB)" if memory else ""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return f"killed: out of memory{limit}"
    if state.get("Error"):
        return f"container error: {state['Error']}"
    if code == 137:
        return "killed (SIGKILL): the container was killed, reclaimed or ran out of memory"
    if code and code > 128:
        return f"killed by signal {code - 128}"
    return f"its container exited with code {code}"


# seconds a watch's ``docker exec`` may run (the longest watch, and a margin)
WATCH_TIMEOUT_S = max(join_watch.WATCH_SECONDS, pending_watch.WATCH_SECONDS) + 10


class ClusterNodes:
    """Creates and removes clusters' containers with ``image`` (benchhub/cluster).

    ``config_dir`` holds :func:`sge.config_bundle` (mounted read-only in every manager);
    ``scratch(cluster_id, member)`` gives the volume behind a member's ``/scratch``.
    """

    def __init__(
        self,
        engine: DockerEngine,
        image: str,
        config_dir: str,
        scratch: Callable[[str, str], WorkspaceVolume],
        mtu: int,
        manager_model: ResourceModel,
        manager_timeout: float = 60,
        log: logging.Logger | None = None,
        admission: StorageAdmission | None = None,
        watch_engine: DockerEngine | None = None,
    ):
        self.engine = engine
        # the long ``docker exec`` watches (joins, new jobs) run on a pool of their own, so a
        # watch never holds a thread a pass needs (default: ``engine``)
        self.watch_engine = watch_engine or engine
        self.admission = admission  # claims each member's /scratch (None: not checked)
        self.image = image
        self.config_dir = config_dir
        self.scratch = scratch
        self.mtu = mtu
        self.manager_model = manager_model
        self.manager_timeout = manager_timeout
        self.log = log or logging.getLogger("benchhub.clusters")

    @staticmethod
    def names(prefix: str, rec: ClusterRecord) -> ClusterNames:
        return ClusterNames(prefix, rec.cluster_id)

    # ---- Docker facts ----------------------------------------------------------------------

    async def workspace_container(self, prefix: str, user: str, workspace: str) -> dict | None:
        """``docker inspect`` of the workspace's running container (the hub of ``prefix``'s)."""
        found = await self.engine.call(
            "containers",
            filters={
                "label": [f"{USER}={user}", f"{WORKSPACE}={workspace}"],
                "status": "running",
            },
        )
        for container in found:
            if any(n.lstrip("/").startswith(f"{prefix}-") for n in container["Names"]):
                return await self.engine.inspect(container["Id"])
        return None

    async def is_restricted(self, container: dict) -> bool:
        """Whether the workspace sits on an internal network (restricted access mode): its
        cluster network is internal too, so attaching it opens no way out."""
        for name in container.get("NetworkSettings", {}).get("Networks") or {}:
            try:
                if (await self.engine.call("inspect_network", name)).get("Internal"):
                    return True
            except NotFound:
                continue
        return False

    async def docker_subnets(self) -> list[str]:
        """Every subnet the engine's networks use (a cluster's subnet must not overlap one)."""
        networks = await self.engine.call("networks")
        configs = [cfg for net in networks for cfg in (net.get("IPAM") or {}).get("Config") or []]
        return [cfg["Subnet"] for cfg in configs if cfg.get("Subnet")]

    # ---- network and manager ---------------------------------------------------------------

    async def create_network(self, names: ClusterNames, rec: ClusterRecord) -> None:
        """Make the cluster's network if it is missing, and its host firewall
        (:func:`~.containers.network_guard`) before any container joins it."""
        try:
            await self.engine.call("inspect_network", names.network)
        except NotFound:
            label_map = labels(names.prefix, rec.cluster_id, rec.user, rec.workspace, None)
            kwargs = network_kwargs(names.network, rec.subnet, rec.internal, self.mtu, label_map)
            await self.engine.call("create_network", **kwargs)
        await self.guard_network(names)

    async def guard_network(self, names: ClusterNames) -> None:
        """Put the network's host firewall back if any of it is missing (a reboot, a firewall
        reload); one ``iptables -S`` when it is all there. A missing network is no error."""
        try:
            found = await self.engine.call("inspect_network", names.network)
        except NotFound:
            return
        if await firewall.ensure([network_guard(found["Id"], names.network)]):
            self.log.info("host firewall for network %s put in place", names.network)

    async def start_manager(
        self,
        names: ClusterNames,
        rec: ClusterRecord,
        model: ResourceModel,
        mounts: list[Mount],
        spark_ui: str | None = None,
    ) -> None:
        """Run the manager (a dedicated one sized like a member, else ``manager_model``) and
        wait until it has applied the configuration and its Spark master answers (with
        ``spark_ui``, the hub's proxy path of its web UI, served under that prefix). A
        leftover stopped manager (a start interrupted by a crash) is replaced."""
        found = await self.engine.inspect(names.manager)
        if found is not None and found["State"]["Running"]:
            return await self.wait_for_manager(names)
        if found is not None:
            await self.engine.remove(names.manager)
        size = model if rec.settings.get("dedicated_manager") else self.manager_model
        plan = NodePlan(
            name=names.manager,
            role="manager",
            image=self.image,
            command=["manager"],
            network=names.network,
            address=manager_address(rec.subnet),
            cpus=size.cpus,
            memory=int(size.memory_gb * GIB),
            mounts=[*mounts, Mount(self.config_dir, CONFIG_DIR, read_only=True)],
            labels=labels(names.prefix, rec.cluster_id, rec.user, rec.workspace, "manager"),
            environment={
                "BENCHHUB_SGE_PUBLISH": PUBLISH_DIR,
                **({"BENCHHUB_SPARK_UI_URL": spark_ui.rstrip("/")} if spark_ui else {}),
            },
            aliases=(spark.MASTER_ALIAS,),
        )
        await self._run(plan)
        await self.wait_for_manager(names)

    async def wait_for_manager(self, names: ClusterNames) -> None:
        """Until the manager logs that it is ready; :class:`NodeError` if it stops first."""

        async def ready() -> bool:
            found = await self.engine.inspect(names.manager)
            if found is None or not found["State"]["Running"]:
                tail = await self._last_log_line(names.manager)
                state = found["State"] if found else None
                raise NodeError(
                    f"the manager stopped while starting: {node_exit_reason(state)}"
                    + (f"; last log line: {tail}" if tail else "")
                )
            logs = await self.engine.call("logs", names.manager, tail=20)
            return READY_LINE in logs.decode(errors="replace")

        await exponential_backoff(
            ready,
            f"the manager {names.manager} was not ready in {self.manager_timeout:g} s",
            start_wait=0.2,
            max_wait=1,
            timeout=self.manager_timeout,
        )

    async def _last_log_line(self, container: str) -> str:
        try:
            logs = await self.engine.call("logs", container, tail=3)
        except (NotFound, APIError):
            return ""
        lines = logs.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    async def _run(self, plan: NodePlan) -> None:
        client_kwargs = create_kwargs(plan)
        host_config = await self.engine.call("create_host_config", **host_config_kwargs(plan))
        endpoint = await self.engine.call(
            "create_endpoint_config", **networking_kwargs(plan)[plan.network]
        )
        networking = await self.engine.call("create_networking_config", {plan.network: endpoint})
        await self.engine.call(
            "create_container",
            host_config=host_config,
            networking_config=networking,
            **client_kwargs,
        )
        try:
            await self.engine.call("start", plan.name)
        except APIError:
            await self.engine.remove(plan.name)
            raise

    async def manager_exec(self, names: ClusterNames, argv, environment=None, what: str = ""):
        """Run ``argv`` in the manager; :class:`NodeError` with its output when it fails."""
        result = await self.engine.exec(names.manager, argv, environment)
        if not result.ok:
            last = result.output.strip().splitlines()[-1:] or ["no output"]
            raise NodeError(f"{what or ' '.join(argv)} failed ({result.exit_code}): {last[0]}")
        return result.output

    # ---- the workspace ---------------------------------------------------------------------

    async def attach_workspace(self, names: ClusterNames, rec: ClusterRecord, workspace: dict):
        """Let the workspace submit: its host name becomes a submit host known at its cluster
        address, then it joins the cluster network with that address (and the name
        ``workspace``, where executors find the kernels' Spark drivers)."""
        hostname = workspace["Config"]["Hostname"]
        await self.manager_exec(
            names,
            ["bench-sge", "add-submit-host", hostname, rec.workspace_address],
            what="registering the workspace",
        )
        networks = workspace.get("NetworkSettings", {}).get("Networks") or {}
        if names.network in networks:
            return
        try:
            await self.engine.call(
                "connect_container_to_network",
                workspace["Id"],
                names.network,
                ipv4_address=rec.workspace_address,
                aliases=[spark.WORKSPACE_ALIAS],
            )
        except APIError as e:
            if "already exists" not in str(e):
                raise

    async def detach_workspace(self, names: ClusterNames, rec: ClusterRecord) -> None:
        try:
            await self.engine.call(
                "disconnect_container_from_network",
                rec.workspace_container,
                names.network,
                force=True,
            )
        except (NotFound, APIError):
            pass  # the workspace or the network is gone, or it was not attached

    # ---- members ---------------------------------------------------------------------------

    async def start_member(
        self,
        names: ClusterNames,
        rec: ClusterRecord,
        member: MemberRecord,
        model: ResourceModel,
        capacity: Capacity,
        mounts: list[Mount],
        scratch_gb: int,
        spark_worker: bool = False,
    ) -> None:
        """Claim and make ``member``'s fresh ``/scratch`` of ``scratch_gb`` GB (0: in the
        container; refused by storage admission: ``StorageRefused``, and nothing else is
        done), then run its container: it must be a Grid Engine host already
        (:meth:`register_members`). With ``spark_worker`` it starts its Spark worker too
        (else only when :meth:`start_worker` asks), offering the same ``capacity`` to
        executors."""
        extra = []
        if scratch_gb:
            volume = self.scratch(rec.cluster_id, member.name)
            if self.admission is not None:
                request = StorageRequest(
                    "scratch_gb", rec.user, scratch_gb * GIB, what=f"/scratch of {member.name}"
                )
                await asyncio.to_thread(self.admission.admit, volume.dir, request)
            extra.append(Mount(str(await volume.attach(scratch_gb)), SCRATCH))
        plan = NodePlan(
            name=member.name,
            role="member",
            image=self.image,
            command=["member", names.manager],
            network=names.network,
            address=member.address,
            cpus=model.cpus,
            memory=int(model.memory_gb * GIB),
            mounts=[*mounts, *extra],
            labels=labels(names.prefix, rec.cluster_id, rec.user, rec.workspace, "member"),
            preemptible=member.preemptible,
            gpus=model.gpus,
            environment={
                "BENCHHUB_SPARK_CORES": str(capacity.cores),
                "BENCHHUB_SPARK_MEMORY_MB": str(capacity.memory // 1024**2),
                "BENCHHUB_SPARK_WORKER": "on" if spark_worker else "off",
            },
        )
        await self._run(plan)

    async def register_members(
        self, names: ClusterNames, members: list[MemberRecord], capacity: Capacity
    ) -> None:
        """Make ``members`` (names, addresses, all of ``capacity``) hosts of the cluster's
        Grid Engine, before their containers exist (the qmaster refuses an unknown execd):
        one ``docker exec`` and a few ``qconf`` calls for all of them (``bench-sge
        add-members``). Safe to repeat; a member shows as not reporting until its container
        boots. Nothing to do for no member."""
        if not members:
            return
        hosts = [m.name for m in members]
        await self.manager_exec(
            names,
            sge.add_members_argv([(m.name, m.address) for m in members]),
            {sge.HOST_CONFIGS_ENV: sge.exec_host_configs(hosts, capacity)},
            what=f"adding member{'s' if len(hosts) > 1 else ''} {', '.join(hosts)}",
        )

    async def wait_for_join(self, names: ClusterNames, hosts: list[str]) -> list[str]:
        """Wait (at most :data:`.join_watch.WATCH_SECONDS`) until one of ``hosts`` reports
        to the manager; the hosts that do then (empty: none did, or the manager did not
        answer). One ``docker exec`` that polls ``qhost`` inside the manager."""
        result = await self.watch_engine.exec(names.manager, join_watch.watch_argv(hosts))
        return join_watch.parse_joined(result.output) if result.ok else []

    async def wait_for_new_jobs(self, names: ClusterNames, after: int) -> list[str]:
        """Wait (at most :data:`.pending_watch.WATCH_SECONDS`) until a job numbered above
        ``after`` is pending in the manager; those jobs' numbers (empty: none came, or the
        manager did not answer). One ``docker exec`` in it that asks ``qstat`` when the
        qmaster's spool changed (:mod:`.pending_watch`)."""
        argv = pending_watch.watch_argv(after)
        result = await self.watch_engine.exec(names.manager, argv, user="1000")
        return pending_watch.parse_new_jobs(result.output) if result.ok else []

    async def start_worker(self, host: str) -> str | None:
        """Start the Spark worker of member ``host`` unless it runs (a member started
        without one, now that Spark wants executors). Returns a warning when it failed."""
        result = await self.engine.exec(host, ["bench-cluster", "start-worker"])
        if result.ok:
            return None
        return (
            f"starting the Spark worker of {host} failed ({result.exit_code}): "
            + (result.output.strip().splitlines()[-1:] or ["no output"])[0]
        )

    async def remove_member(
        self, names: ClusterNames, rec: ClusterRecord, member: MemberRecord
    ) -> str | None:
        """Take ``member`` out of Grid Engine and remove its container and scratch. Returns
        a warning when Grid Engine refused (the container is removed all the same)."""
        warning = None
        result = await self.engine.exec(names.manager, ["bench-sge", "remove-member", member.name])
        if not result.ok:
            warning = result.output.strip().splitlines()[-1:] or ["no output"]
            warning = f"Grid Engine kept {member.name}: {warning[0]}"
        await self.engine.remove(member.name)
        if member.scratch:
            await self.delete_scratch(rec, member.name)
        return warning

    async def delete_scratch(self, rec: ClusterRecord, member: str) -> None:
        """Delete a member's scratch volume (after its container is gone). The loop device
        may vanish by itself while it is being detached (autoclear), so one failure is
        retried; a second is logged, not raised: removing the member goes on."""
        volume = self.scratch(rec.cluster_id, member)
        for attempt in (1, 2):
            try:
                return await volume.delete()
            except StorageError as e:
                if attempt == 2:
                    self.log.warning("%s: scratch of %s not deleted: %s", rec.key, member, e)
                await asyncio.sleep(0.2)

    async def reschedule(self, names: ClusterNames, host: str) -> int:
        """Put the jobs of a lost member back to pending; how many were rescheduled."""
        result = await self.engine.exec(names.manager, sge.reschedule_argv(host))
        return sum(1 for line in result.output.splitlines() if "rescheduling of job" in line)

    async def drain(self, names: ClusterNames, host: str) -> None:
        """No new Grid Engine job and no new Spark executor goes to ``host``: its queue is
        disabled and its Spark worker stopped (a worker that is already gone is no error)."""
        await self.manager_exec(names, sge.drain_argv(host), what=f"draining {host}")
        result = await self.engine.exec(host, ["bench-cluster", "stop-worker"])
        if not result.ok:
            self.log.warning(
                "%s: stopping its Spark worker failed: %s", host, result.output.strip()[-200:]
            )

    async def observe_spark(
        self, names: ClusterNames, rec: ClusterRecord, capacity: Capacity
    ) -> spark.SparkView:
        """Spark's view (master, workers, drivers' wishes), asked in the manager."""
        argv = ["/opt/venv/bin/python", "-c", spark.OBSERVE_SCRIPT, spark.WORKSPACE_ALIAS]
        result = await self.engine.exec(names.manager, argv)
        if not result.ok:
            self.log.warning(
                "%s: asking Spark failed (%s): %s",
                rec.key,
                result.exit_code,
                result.output.strip()[-200:],
            )
            return spark.SparkView(master_alive=False)
        return spark.parse_observation(result.output, capacity)

    async def observe(self, names: ClusterNames) -> tuple[dict[str, sge.HostState], list]:
        """Grid Engine's view: ``({host: HostState}, [PendingJob])`` (three qstat/qhost runs
        in the manager, at once)."""
        hosts, queues, pending = await asyncio.gather(
            self.manager_exec(names, sge.HOSTS_ARGV),
            self.engine.exec(names.manager, sge.QUEUES_ARGV),
            self.manager_exec(names, sge.PENDING_ARGV),
        )
        if not queues.ok:
            # qstat -q all.q exits 1 without output while the queue has no instance (no member)
            if queues.output.strip():
                raise NodeError(f"qstat -f failed ({queues.exit_code}): {queues.output.strip()}")
            return sge.parse_members(hosts, "<job_info/>"), sge.parse_pending(pending)
        return sge.parse_members(hosts, queues.output), sge.parse_pending(pending)

    # ---- all of it -------------------------------------------------------------------------

    async def remove_all(self, names: ClusterNames, rec: ClusterRecord) -> None:
        """Remove every container and the network of the cluster, and the members' scratch.
        The manager gets one second to take its client files away from /data."""
        await asyncio.gather(*(self.engine.remove(name) for name in rec.members))
        await self.engine.stop(names.manager, grace=1)
        await self.engine.remove(names.manager)
        await self.detach_workspace(names, rec)
        await self.remove_network(names.network)
        for member in rec.members.values():
            if member.scratch:
                await self.delete_scratch(rec, member.name)

    async def remove_network(self, network: str) -> None:
        """Disconnect whatever is still attached (e.g. the workspace) and remove it."""
        try:
            found = await self.engine.call("inspect_network", network)
        except NotFound:
            return
        for container in found.get("Containers") or {}:
            try:
                await self.engine.call(
                    "disconnect_container_from_network", container, network, force=True
                )
            except (NotFound, APIError):
                pass
        await firewall.remove(found["Id"])  # nothing is attached any more
        try:
            await self.engine.call("remove_network", network)
        except NotFound:
            pass
