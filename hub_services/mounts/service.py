"""The mounts service's reconciler: fast mounts made, listed and removed in running
workspaces and their cluster members, and members kept in step.

The state is the containers' own mount tables (``/proc/<pid>/mountinfo``), nothing else: a
workspace's fast mounts are what its table lists, a read-write claim is a read-write fast
mount of a running workspace (:mod:`.claims`), and a cluster member should have what its
workspace has. :meth:`MountService.loop` converges members every ``interval`` seconds (a
member that joined after a mount gets it; one that missed a delete loses it). A workspace's
restart forgets its fast mounts: a new container has a new mount table.

Making mounts is serialised (one lock), so two requests cannot both claim a directory.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from traitlets import Float, Instance, Integer, Unicode
from traitlets.config import LoggingConfigurable

from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient
from benchhub.labels import USER, WORKSPACE, cluster_label
from benchhub.user_namespace import engine_id_map
from benchhub.volumes import DATA_GID, DATA_UID

from .claims import Holder, holder_of
from .metrics import MountMetrics
from .mountinfo import FastMount, MountEntry, fast_mounts, parse_mountinfo
from .namespace import HelperFailed, Refused, mount_in, unmount_in
from .paths import (
    MOUNTS_ROOT,
    PROJECT_ROOT,
    MountRequest,
    nested,
    parse_mount_path,
    segments_below,
)

__all__ = ["MountService", "Running"]

log = logging.getLogger("benchhub.mounts")
MAX_MOUNTINFO = 4 * 1024 * 1024  # bytes of a mount table read at most (the user adds lines)


@dataclass(frozen=True)
class Running:
    """A running container of a workspace: its name and its main process on the host."""

    name: str
    pid: int


class MountService(LoggingConfigurable):
    """Fast mounts of running workspaces (see the module docstring)."""

    prefix = Unicode(
        "bench",
        help="Prefix of the names of BenchHub's containers, e.g. bench (workspace "
        "bench-alice--lab, cluster members bench-cluster-<id>-m1).",
    ).tag(config=True)
    interval = Float(
        5.0,
        help="Seconds between passes that give cluster members the fast mounts of their "
        "workspace (a member that joined later), e.g. 5.",
    ).tag(config=True)
    max_mounts = Integer(
        32,
        help="Fast mounts one workspace may hold at once (each is a mount in its container), "
        "e.g. 32.",
    ).tag(config=True)
    engine = Instance(DockerEngine, args=())
    hub = Instance(HubClient, args=())

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = asyncio.Lock()
        self.metrics = MountMetrics()  # /services/mounts/metrics

    # ---- observing -------------------------------------------------------------------------

    async def workspace(self, user: str, name: str) -> Running | None:
        """The running container of ``user/name`` (its labels checked), None when not running."""
        container = f"{self.prefix}-{user}--{name}"
        found = await self.engine.inspect(container)
        if not found or not found["State"].get("Running"):
            return None
        labels = found["Config"].get("Labels") or {}
        if labels.get(USER) != user or labels.get(WORKSPACE) != name:
            return None
        return Running(container, found["State"]["Pid"])

    async def members(self, user: str, name: str) -> list[Running]:
        """The running cluster members of ``user/name``."""
        filters = {
            "status": "running",
            "label": [
                f"{cluster_label('prefix')}={self.prefix}",
                f"{cluster_label('user')}={user}",
                f"{cluster_label('workspace')}={name}",
                f"{cluster_label('role')}=member",
            ],
        }
        found = []
        for summary in await self.engine.call("containers", filters=filters):
            inspected = await self.engine.inspect(summary["Id"])
            if inspected and inspected["State"].get("Running"):
                found.append(Running(inspected["Name"].lstrip("/"), inspected["State"]["Pid"]))
        return found

    async def running_workspaces(self) -> dict[str, Running]:
        """Every running workspace container of this prefix, by ``user/name``."""
        summaries = await self.engine.call(
            "containers", filters={"status": "running", "label": [USER, WORKSPACE]}
        )
        ids = {}
        for summary in summaries:
            labels = summary.get("Labels") or {}
            name = f"{self.prefix}-{labels[USER]}--{labels[WORKSPACE]}"
            if "/" + name in (summary.get("Names") or []):  # not another hub's (prefix)
                ids[f"{labels[USER]}/{labels[WORKSPACE]}"] = (name, summary["Id"])
        result = {}
        for key, (name, container_id) in ids.items():
            inspected = await self.engine.inspect(container_id)
            if inspected and inspected["State"].get("Running"):
                result[key] = Running(name, inspected["State"]["Pid"])
        return result

    @staticmethod
    async def mount_table(pid: int) -> list[MountEntry]:
        """The mount table of process ``pid`` ([] when it ended)."""

        def read() -> str:
            try:
                with open(f"/proc/{pid}/mountinfo", "rb") as f:
                    return f.read(MAX_MOUNTINFO).decode(errors="replace")
            except OSError:
                return ""

        return parse_mountinfo(await asyncio.to_thread(read))

    async def list(self, running: Running) -> list[FastMount]:
        return fast_mounts(await self.mount_table(running.pid))

    async def holder(self, asking: str, device: str, root: str) -> Holder | None:
        """The other running workspace holding that directory read-write, or None."""
        tables = {}
        for key, running in (await self.running_workspaces()).items():
            tables[key] = fast_mounts(await self.mount_table(running.pid))
        return holder_of(device, root, asking, tables)

    # ---- acting ----------------------------------------------------------------------------

    @staticmethod
    def owner_ids() -> tuple[int, int]:
        """The host ids of the workspace user (uid 1000, gid 100 in the container)."""
        return engine_id_map().host_ids(DATA_UID, DATA_GID)

    async def create(
        self, key: str, running: Running, request: MountRequest, project: MountEntry
    ) -> dict:
        """Mount ``request`` in the workspace ``key`` and its members; a :class:`Conflict`
        when the mount path is taken or another workspace holds the source read-write;
        :class:`~.namespace.Refused` for a path the walk refuses. Returns the mount's JSON
        with each member's outcome."""
        async with self._lock:
            existing = await self.list(running)
            if len(existing) >= self.max_mounts:
                raise Conflict(
                    f"{key} already has {len(existing)} fast mounts, the most a workspace may "
                    "hold: delete one first",
                    field="mount_path",
                    reason="too_many",
                )
            for mount in existing:
                taken = parse_mount_path(mount.mount_path)
                if nested(taken, request.target):
                    raise Conflict(
                        f"{mount.mount_path} is already mounted in {key} (of {mount.source}): "
                        "delete that mount first or choose another mount_path",
                        field="mount_path",
                        reason="path_taken",
                    )
            if not request.read_only:
                root = "/".join((project.root.rstrip("/"), *request.source))
                holder = await self.holder(key, project.device, root)
                if holder is not None:
                    raise Conflict(
                        f"{request.source_path} is mounted read-write by workspace {holder.key} "
                        f"(at {holder.mount_path}); only one running workspace may hold it "
                        "read-write: mount it read-only, or ask them to delete that mount",
                        field="source",
                        holder=holder.key,
                        reason="held_read_write",
                    )
            owner = await asyncio.to_thread(self.owner_ids)
            await mount_in(running.pid, request.target, request.source, request.read_only, owner)
            members = {}
            for member in await self.members(*key.split("/", 1)):
                members[member.name] = await self._mount_member(member, request, owner)
        return {
            "mount_path": request.mount_path,
            "source": request.source_path,
            "mode": request.mode,
            "members": members,
        }

    async def _mount_member(self, member: Running, request: MountRequest, owner) -> str:
        try:
            await mount_in(member.pid, request.target, request.source, request.read_only, owner)
            return "mounted"
        except (Refused, HelperFailed) as e:
            log.warning("cannot mount %s on %s: %s", request.mount_path, member.name, e)
            return f"failed: {e}"

    async def delete(self, key: str, running: Running, target: tuple[str, ...]) -> dict:
        """Unmount ``/data/mounts/<target>`` in the workspace and its members (gone already is
        success) and remove the empty mount point."""
        async with self._lock:
            unmounted = await unmount_in(running.pid, target)
            members = {}
            for member in await self.members(*key.split("/", 1)):
                try:
                    await unmount_in(member.pid, target)
                    members[member.name] = "unmounted"
                except HelperFailed as e:
                    members[member.name] = f"failed: {e}"
        return {
            "mount_path": "/".join((MOUNTS_ROOT, *target)),
            "was_mounted": unmounted,
            "members": members,
        }

    # ---- converging members ----------------------------------------------------------------

    async def converge_members(self) -> None:
        """Give each running member its workspace's fast mounts, and take away those its
        workspace no longer has."""
        owner = None
        for key, running in (await self.running_workspaces()).items():
            members = await self.members(*key.split("/", 1))
            if not members:
                continue
            wanted = {
                m.mount_path: m
                for m in await self.list(running)
                if m.source is not None and m.source != PROJECT_ROOT
            }
            for member in members:
                have = {m.mount_path: m for m in await self.list(member)}
                async with self._lock:
                    for path, mount in wanted.items():
                        if path in have:
                            continue
                        owner = owner or await asyncio.to_thread(self.owner_ids)
                        request = MountRequest(
                            parse_mount_path(path),
                            segments_below(mount.source, PROJECT_ROOT, "source"),
                            mount.read_only,
                        )
                        outcome = await self._mount_member(member, request, owner)
                        log.info("%s on %s (of %s): %s", path, member.name, key, outcome)
                    for path in set(have) - set(wanted):
                        await unmount_in(member.pid, parse_mount_path(path))
                        log.info("%s removed from %s (gone in %s)", path, member.name, key)

    async def loop(self) -> None:
        """Converge members every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.converge_members()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("converging members' mounts failed", exc_info=True)


class Conflict(Exception):
    """A mount that collides with one that exists: a 409 naming ``field`` (and ``holder``);
    ``reason`` is how the metrics count it (:data:`.metrics.REFUSAL_REASONS`)."""

    def __init__(self, message: str, field: str, holder: str | None = None, reason: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field
        self.holder = holder
        self.reason = reason
