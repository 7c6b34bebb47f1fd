"""The checkpoints hub service: periodic checkpoints of running workspaces, and what the API does.

**Periodic checkpoints.** Every :attr:`CheckpointService.tick` seconds the service lists this
hub's running workspace containers (label ``org.benchhub.workspace``, name ``<prefix>-…``),
and checkpoints each one whose last checkpoint (or start) is :attr:`interval` seconds old. It
finds the workspace's record through the container's ``/data`` bind mount (its host directory)
and its upper directory through ``docker inspect``; the spawner's stop takes the same lock, so
a stop waits for a periodic checkpoint in progress and builds on it. Nothing is remembered that
the record and Docker do not say: a restarted service carries on where it was.

The container is **not paused**: a periodic checkpoint is crash-consistent per file, like the
disk after a power cut (a file being written meanwhile may be caught half-written; the store
notices it changed and re-reads it next time). The checkpoint on stop is exact. A failing
periodic checkpoint is logged with its traceback, recorded on the workspace (API and page show
it) and retried an interval later; the workspace keeps running.

**Named-checkpoint quota.** Naming a checkpoint (PATCH, or checkpoint-now with a name) is
refused with :class:`NamedQuotaExceeded` (the API's 409) when the stored bytes of the distinct
chunks the user's named checkpoints reference would pass :attr:`named_quota_gb` (see
:mod:`.quota`). A checkpoint-now with a name is captured first and named after (its size is
known only then): refused, it stays an automatic checkpoint, pruned like the others.

**Cleanup.** Every :attr:`gc_interval` seconds (and on ``POST api/gc``) checkpoints of
workspaces that no longer exist (no record under the storage root, no pending clone, nothing
newer than :attr:`orphan_grace`) are deleted, then chunks no checkpoint references. Chunks a
clone shares with its origin stay until the last checkpoint using them is gone.

Every blocking call (Docker, the store, records) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from traitlets import Float, Instance, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.checkpoint_metrics import CheckpointMetrics, stored_bytes
from benchhub.checkpoints.backends import parse_manifest_object
from benchhub.checkpoints.containers import (
    excluded_paths_of,
    host_dir_of,
    image_of,
    upper_dir_of,
    workspace_of,
)
from benchhub.checkpoints.errors import (
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNameTaken,
    CheckpointNotFound,
)
from benchhub.checkpoints.garbage import GarbageReport
from benchhub.checkpoints.manifest import Manifest, normalise_name
from benchhub.checkpoints.quota import named_bytes, quota_refusal
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import (
    WorkspaceCheckpoints,
    find_workspaces,
    label,
    new_workspace_id,
    pending_clone_ids,
    remove_pending_clone,
    write_pending_clone,
)
from benchhub.docker_engine import DockerEngine
from benchhub.hub_client import HubClient
from benchhub.labels import WORKSPACE

__all__ = [
    "FIXED_OPTIONS",
    "CheckpointService",
    "NamedQuotaExceeded",
    "NotRunning",
    "OptionRefused",
    "summary",
]

log = logging.getLogger("benchhub.checkpoints")
_NANOS = re.compile(r"(\.\d{6})\d+")

# What a workspace started as new keeps from its origin (the image template must match the
# checkpoint's files; cluster settings join this list when they become workspace options).
FIXED_OPTIONS = ("image",)


class NotRunning(CheckpointError):
    """The workspace has no running container (a checkpoint-now needs one)."""


class WorkspaceUnknown(CheckpointNotFound):
    """No workspace of that user and name has a checkpoint record (the API's 404)."""

    def __init__(self, user: str, name: str):
        CheckpointError.__init__(
            self,
            f"{user} has no workspace '{name}' with checkpoints (it never ran, or it was deleted)",
        )
        self.workspace_id, self.checkpoint_id = f"{user}/{name}", None


class OptionRefused(ValueError):
    """A start-as-new asked to change what stays fixed (the 400's sentence)."""


class NamedQuotaExceeded(CheckpointError):
    """Naming this checkpoint would pass the user's named-checkpoint quota (the API's 409);
    the message names the quota and the use now."""


def summary(manifest: Manifest, current: str | None = None) -> dict:
    """A checkpoint as the API and page list it (sizes in bytes)."""
    totals = manifest.totals
    return {
        "id": manifest.checkpoint_id,
        "name": manifest.name,
        "kind": manifest.kind,
        "reason": manifest.reason,
        "created": manifest.created,
        "parent": manifest.parent,
        "origin": dict(manifest.origin) if manifest.origin else None,
        "image": (manifest.image or {}).get("name"),
        "files": totals.get("files"),
        "size_bytes": totals.get("logical_bytes"),
        "stored_bytes": totals.get("stored_bytes"),
        "new_stored_bytes": totals.get("new_stored_bytes"),
        "current": manifest.checkpoint_id == current,
    }


class CheckpointService(LoggingConfigurable):
    """Settings are traits (``c.CheckpointService``), set by the app's command line."""

    interval = Float(
        300, help="Seconds between periodic checkpoints of a running workspace, e.g. 300."
    ).tag(config=True)
    tick = Float(
        10, help="Seconds between looks for workspaces whose checkpoint is due, e.g. 10."
    ).tag(config=True)
    prefix = Unicode(
        "bench", help="Name prefix of this hub's containers (BenchSpawner.prefix), e.g. bench."
    ).tag(config=True)
    storage_root = Unicode(
        "/var/lib/benchhub/workspaces",
        help="BenchSpawner.storage_root: where workspace records and pending clones are.",
    ).tag(config=True)
    keep_automatic = Integer(
        30, help="Automatic checkpoints kept per workspace (named ones are always kept)."
    ).tag(config=True)
    exclude = List(
        Unicode(), ["/data"], help="Container paths left out besides mount points, e.g. /data."
    ).tag(config=True)
    concurrency = Integer(
        1, help="Periodic checkpoints taken at once (each reads and hashes a file tree)."
    ).tag(config=True)
    gc_interval = Float(
        6 * 3600, help="Seconds between cleanups of deleted workspaces' checkpoints, e.g. 21600."
    ).tag(config=True)
    named_quota_gb = Float(
        20,
        help="""GB (GiB) of the checkpoint store that one user's named checkpoints may keep:
        the stored bytes of the distinct chunks they reference, over all the user's
        workspaces; e.g. 20. 0 = no quota. Automatic checkpoints are pruned (keep_automatic)
        and do not count.""",
    ).tag(config=True)
    orphan_grace = Float(
        86400,
        help="""Seconds a deleted workspace's checkpoints are kept before cleanup deletes
        them, e.g. 86400 (a day: a mistake in the storage root is noticed before anything goes).
        """,
    ).tag(config=True)
    store = Instance(CheckpointStore)
    hub = Instance(HubClient)
    engine = Instance(DockerEngine, help="The Docker Engine (docker-py behind a thread pool).")

    @default("store")
    def _default_store(self):
        return CheckpointStore(parent=self, log=self.log)

    @default("hub")
    def _default_hub(self):
        return HubClient()

    @default("engine")
    def _default_engine(self):
        return DockerEngine(threads=4, timeout=60)

    @validate("keep_automatic", "concurrency")
    def _at_least_one(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1, e.g. 1")
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._in_flight: dict[str, asyncio.Task] = {}
        self._attempted: dict[str, float] = {}  # key -> time.time() of the last periodic try
        self._naming: dict[str, asyncio.Lock] = {}  # user -> lock: one quota check at a time
        self.last_pass_at: str | None = None
        self.last_error = ""
        self.last_gc: dict | None = None
        self.metrics = CheckpointMetrics()  # /services/checkpoints/metrics

    async def docker(self, method: str, *args, **kwargs):
        """One Docker API call in a worker thread (the client has a timeout)."""
        return await self.engine.call(method, *args, **kwargs)

    def checkpoints(self, host_dir: Path) -> WorkspaceCheckpoints:
        return WorkspaceCheckpoints(self.store, host_dir, self.keep_automatic)

    # ---- periodic checkpoints -----------------------------------------------------------------

    async def running_containers(self) -> dict[str, dict]:
        """``{"user/workspace": docker ps entry}`` of this hub's running workspaces."""
        found = await self.docker(
            "containers",
            filters={"label": WORKSPACE, "status": "running", "name": f"^{self.prefix}-"},
        )
        containers = {}
        for container in found:
            owner = workspace_of(container)
            names = [n.lstrip("/") for n in container.get("Names") or ()]
            if owner and any(n.startswith(f"{self.prefix}-") for n in names):
                containers["/".join(owner)] = container
        return containers

    async def periodic_pass(self) -> list[str]:
        """Start the periodic checkpoints that are due; returns their keys."""
        started = []
        for key, container in (await self.running_containers()).items():
            if key in self._in_flight:
                continue
            inspect = await self.docker("inspect_container", container["Id"])
            if self._due(key, inspect):
                self._attempted[key] = time.time()
                task = asyncio.ensure_future(self._periodic(key, inspect))
                self._in_flight[key] = task
                task.add_done_callback(lambda _, key=key: self._in_flight.pop(key, None))
                started.append(key)
        for key in set(self._attempted) - set(self._in_flight) - set(started):
            if time.time() - self._attempted[key] > 10 * self.interval:
                self._attempted.pop(key)
        return started

    def _due(self, key: str, inspect: dict) -> bool:
        host_dir = host_dir_of(inspect)
        if host_dir is None:
            return False
        try:
            state = self.checkpoints(host_dir).state()
        except CheckpointError:
            state = None
        moments = [_epoch(inspect["State"].get("StartedAt")), self._attempted.get(key, 0.0)]
        if state is not None and state.last and state.last.get("reason") != "restored":
            moments.append(_epoch(state.last.get("at")))
        return time.time() - max(moments) >= self.interval

    async def _periodic(self, key: str, inspect: dict) -> None:
        ops = self.checkpoints(host_dir_of(inspect))
        user, name = key.split("/", 1)
        async with self._slots:
            t0 = time.monotonic()
            try:
                await asyncio.to_thread(ops.ensure, user, name, self.storage_root)
                manifest = await asyncio.to_thread(
                    ops.take,
                    upper_dir_of(inspect),
                    excluded_paths_of(inspect, self.exclude),
                    "periodic",
                    None,
                    image_of(inspect),
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.metrics.failed("periodic", e)
                message = f"periodic checkpoint failed: {e}"
                self.log.error("%s: %s (the workspace keeps running)", key, message, exc_info=True)
                await asyncio.to_thread(_quietly, ops.note_periodic, message)
                return
        await asyncio.to_thread(ops.note_periodic, None)
        self.metrics.taken("periodic", time.monotonic() - t0, manifest.totals["new_stored_bytes"])
        self.log.info(
            "%s: periodic checkpoint %s in %.2f s, %d new bytes",
            key,
            manifest.checkpoint_id,
            time.monotonic() - t0,
            manifest.totals["new_stored_bytes"],
        )

    # ---- the API's operations -----------------------------------------------------------------

    def _host_dir(self, user: str, name: str) -> Path:
        host_dir = find_workspaces(self.storage_root).get((user, name))
        if host_dir is None:
            raise WorkspaceUnknown(user, name)
        return host_dir

    async def workspaces(self, user: str) -> list[dict]:
        """The user's workspaces that have checkpoints, with their checkpoint status."""
        found = await asyncio.to_thread(find_workspaces, self.storage_root)
        rows = []
        for (owner, name), host_dir in sorted(found.items()):
            if owner == user:
                state = await asyncio.to_thread(self.checkpoints(host_dir).state)
                rows.append({"user": owner, "workspace": name, **_status(state)})
        return rows

    async def list(self, user: str, name: str) -> dict:
        """A workspace's checkpoints, newest first, with its status and lineage."""
        ops = self.checkpoints(await asyncio.to_thread(self._host_dir, user, name))
        state = await asyncio.to_thread(ops.state)
        manifests = await asyncio.to_thread(self.store.list, state.workspace_id)
        running = f"{user}/{name}" in await self.running_containers()
        return {
            "user": user,
            "workspace": name,
            "running": running,
            **_status(state),
            "checkpoints": [summary(m, state.parent) for m in reversed(manifests)],
        }

    async def take_now(self, user: str, name: str, checkpoint_name: str | None) -> dict:
        """Checkpoint a running workspace now (named if ``checkpoint_name``, within the
        user's named-checkpoint quota: see the module docstring)."""
        if checkpoint_name is not None:
            checkpoint_name = normalise_name(checkpoint_name)  # a bad name: 400, nothing taken
        container = (await self.running_containers()).get(f"{user}/{name}")
        if container is None:
            raise NotRunning(
                f"workspace '{name}' is not running: its last checkpoint (taken on "
                "stop) already holds its current state; name that one instead"
            )
        inspect = await self.docker("inspect_container", container["Id"])
        ops = self.checkpoints(host_dir_of(inspect))
        state = await asyncio.to_thread(ops.ensure, user, name, self.storage_root)
        capture_as = checkpoint_name if not self.named_quota_gb else None
        if checkpoint_name is not None and capture_as is None:
            await asyncio.to_thread(self._require_name_free, state.workspace_id, checkpoint_name)
        manifest = await asyncio.to_thread(
            ops.take,
            upper_dir_of(inspect),
            excluded_paths_of(inspect, self.exclude),
            "on request",
            capture_as,
            image_of(inspect),
        )
        if checkpoint_name is not None and capture_as is None:
            try:
                manifest = await self._name_within_quota(user, manifest, checkpoint_name)
            except NamedQuotaExceeded as e:
                raise NamedQuotaExceeded(
                    f"{e}; the state was kept as automatic checkpoint {manifest.checkpoint_id}"
                ) from None
        return summary(manifest, manifest.checkpoint_id)

    def _require_name_free(self, workspace_id: str, checkpoint_name: str) -> None:
        for other in self.store.list(workspace_id):
            if other.name == checkpoint_name:
                raise CheckpointNameTaken(workspace_id, checkpoint_name, other.checkpoint_id)

    def named_use(self, user: str) -> int:
        """Bytes the user's named checkpoints keep in the store (see :mod:`.quota`)."""
        return named_bytes(self._user_manifests(user))

    def _user_manifests(self, user: str) -> list[Manifest]:
        manifests = []
        for (owner, _name), host_dir in find_workspaces(self.storage_root).items():
            state = self.checkpoints(host_dir).state() if owner == user else None
            if state is not None:
                manifests += self.store.list(state.workspace_id)
        return manifests

    async def _name_within_quota(self, user: str, manifest: Manifest, new_name: str) -> Manifest:
        """Name ``manifest``; :class:`NamedQuotaExceeded` if that passes the user's quota
        (one check at a time per user, so two names cannot both pass)."""
        lock = self._naming.setdefault(user, asyncio.Lock())
        async with lock:
            if manifest.kind != "named" and self.named_quota_gb:
                others = await asyncio.to_thread(self._user_manifests, user)
                others = [
                    m
                    for m in others
                    if (m.workspace_id, m.checkpoint_id)
                    != (manifest.workspace_id, manifest.checkpoint_id)
                ]
                used = named_bytes(others)
                after = named_bytes([*others, manifest.with_changes(name=new_name, kind="named")])
                refusal = quota_refusal(
                    user, int(self.named_quota_gb * 1024**3), used, after, new_name
                )
                if refusal:
                    raise NamedQuotaExceeded(refusal)
            return await asyncio.to_thread(
                self.store.rename, manifest.workspace_id, manifest.checkpoint_id, new_name
            )

    async def _manifest(self, user: str, name: str, checkpoint_id: str) -> Manifest:
        state = await asyncio.to_thread(self.checkpoints(self._host_dir(user, name)).state)
        return await asyncio.to_thread(self.store.load, state.workspace_id, checkpoint_id)

    async def rename(self, user: str, name: str, checkpoint_id: str, new_name: str | None) -> dict:
        """Name or rename a checkpoint (naming within the quota); ``None`` un-names it: it
        becomes automatic again and is pruned like the others."""
        manifest = await self._manifest(user, name, checkpoint_id)
        if new_name is None:
            unnamed = await asyncio.to_thread(
                self.store.unname, manifest.workspace_id, checkpoint_id
            )
            return summary(unnamed)
        return summary(await self._name_within_quota(user, manifest, normalise_name(new_name)))

    async def verify(self, user: str, name: str, checkpoint_id: str) -> dict:
        manifest = await self._manifest(user, name, checkpoint_id)
        try:
            counts = await asyncio.to_thread(
                self.store.verify, manifest.workspace_id, checkpoint_id
            )
        except CheckpointCorrupt as e:
            return {"id": checkpoint_id, "ok": False, "problem": str(e)}
        return {"id": checkpoint_id, "ok": True, **counts}

    async def restore_at_next_start(self, user: str, name: str, checkpoint_id: str) -> dict:
        """Set the stopped workspace's ``restore_checkpoint`` option (through the hub)."""
        manifest = await self._manifest(user, name, checkpoint_id)
        await self.hub.request(
            "PATCH",
            f"users/{quote(user)}/servers/{quote(name)}",
            {"user_options": {"restore_checkpoint": checkpoint_id}},
        )
        return summary(manifest)

    async def start_as_new(
        self, user: str, name: str, checkpoint_id: str, new_name: str, changes: dict
    ) -> dict:
        """Create and start ``user``'s workspace ``new_name`` from a checkpoint of ``name``.

        Its options are the origin's with ``changes`` applied (the image is fixed), and its
        first start restores the checkpoint. Raises OptionRefused (400) for a fixed option,
        FileExistsError (409) for a name in use; the hub's own refusal is passed on.
        """
        manifest = await self._manifest(user, name, checkpoint_id)
        servers = (
            await self.hub.request("GET", f"users/{quote(user)}?include_stopped_servers=1")
        ).get("servers") or {}
        if new_name in servers:
            raise FileExistsError(
                f"name: {user} already has a workspace '{new_name}'; choose another name"
            )
        options = dict((servers.get(name) or {}).get("user_options") or {})
        for key in FIXED_OPTIONS:
            if key in changes and changes[key] != options.get(key):
                raise OptionRefused(
                    f"{key}: a workspace started from a checkpoint keeps its origin's {key} "
                    f"({options.get(key)!r}); leave it out or give the same value"
                )
        if "description" not in changes:  # by default, where it came from (as Data Studios)
            before = options.get("description")
            note = f"started as new from {name}, checkpoint {label(manifest)}"
            changes = {**changes, "description": (f"{note}: {before}" if before else note)[:1000]}
        options.update(changes)
        options["restore_checkpoint"] = ""
        new_id = new_workspace_id(user, new_name)
        origin = {
            "workspace_id": manifest.workspace_id,
            "checkpoint": checkpoint_id,
            "user": user,
            "workspace": name,
        }
        # the pending record first: from then on cleanup keeps the clone's checkpoints
        await asyncio.to_thread(
            write_pending_clone, self.storage_root, user, new_name, new_id, origin
        )
        try:
            clone = await asyncio.to_thread(
                self.store.clone_lineage, manifest.workspace_id, checkpoint_id, new_id
            )
            await self.hub.request(
                "POST", f"users/{quote(user)}/servers/{quote(new_name)}", {"user_options": options}
            )
        except BaseException:
            await asyncio.to_thread(remove_pending_clone, self.storage_root, user, new_name)
            await asyncio.to_thread(self.store.delete_workspace, new_id)
            raise
        self.log.info("%s/%s started as new from %s/%s", user, new_name, name, checkpoint_id)
        return {
            "user": user,
            "workspace": new_name,
            "workspace_id": new_id,
            "checkpoint": clone.checkpoint_id,
            "origin": origin,
            "user_options": options,
        }

    # ---- cleanup ------------------------------------------------------------------------------

    def orphans(self) -> list[str]:
        """Workspace ids with checkpoints but no workspace (see the module docstring)."""
        root = Path(self.storage_root)
        newest: dict[str, float] = {}
        for info in self.store.backend.list("manifests/"):
            ids = parse_manifest_object(info.key)
            if ids:
                newest[ids[0]] = max(newest.get(ids[0], 0.0), info.modified)
        live = {self.checkpoints(d).state().workspace_id for d in find_workspaces(root).values()}
        live |= pending_clone_ids(root)
        if not root.is_dir() or (newest and not live):
            self.log.warning(
                "no workspace records under %s: not deleting any checkpoints "
                "(is the storage root right?)",
                root,
            )
            return []
        cutoff = time.time() - self.orphan_grace
        return sorted(i for i, modified in newest.items() if i not in live and modified < cutoff)

    async def collect(self) -> dict:
        """Delete deleted workspaces' checkpoints, then unreferenced chunks; the report."""
        orphans = await asyncio.to_thread(self.orphans)
        for workspace_id in orphans:
            await asyncio.to_thread(self.store.delete_workspace, workspace_id)
            self.log.info("deleted the checkpoints of deleted workspace %s", workspace_id)
        report: GarbageReport = await asyncio.to_thread(self.store.collect_garbage)
        self.metrics.measured(await asyncio.to_thread(stored_bytes, self.store.backend))
        self.last_gc = {
            "at": _now(),
            "deleted_workspaces": orphans,
            "chunks_deleted": len(report.deleted),
            "bytes_freed": report.bytes_freed,
            "chunks_seen": report.chunks_seen,
            "skipped": report.skipped,
        }
        return self.last_gc

    # ---- the loops ----------------------------------------------------------------------------

    async def loop(self) -> None:
        """Periodic checkpoints every tick, cleanup every gc_interval (first after one tick)."""
        next_gc = time.monotonic() + self.tick
        while True:
            try:
                await self.periodic_pass()
                self.last_pass_at, self.last_error = _now(), ""
                if time.monotonic() >= next_gc:
                    next_gc = time.monotonic() + self.gc_interval
                    await self.collect()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                self.log.error("checkpoint pass failed", exc_info=True)
            await asyncio.sleep(self.tick)

    def health(self) -> dict:
        return {
            "last_pass_at": self.last_pass_at,
            "last_error": self.last_error,
            "in_flight": sorted(self._in_flight),
            "last_gc": self.last_gc,
        }


def _status(state) -> dict:
    if state is None:
        return {"workspace_id": None}
    return {
        "workspace_id": state.workspace_id,
        "origin": state.origin,
        "last": state.last,
        "periodic_error": state.periodic_error,
        "unsaved": state.unsaved,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _epoch(text: str | None) -> float:
    """Unix time of an ISO time (Docker's has nanoseconds and a Z); 0 if missing."""
    if not text or text.startswith("0001-"):
        return 0.0
    moment = datetime.fromisoformat(_NANOS.sub(r"\1", text).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        log.warning("could not record the outcome", exc_info=True)
