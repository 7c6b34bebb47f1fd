"""Workspace checkpoints, the spawner's side: restore on start, checkpoint on stop.

A mixin of :class:`bench_spawner.spawner.BenchSpawner` (kept apart so the spawner stays an
orchestrator): the store and its settings, taking the stop's checkpoint (durable before the
container goes; a failure keeps the container), saving a checkpoint a failed stop left,
choosing and restoring the checkpoint a start uses. The periodic checkpoints of running
workspaces are the checkpoints hub service's (``hub_services.checkpoints``). It relies on
the spawner's ``docker``, ``volume``, ``object_name``, ``image``, ``_emit``,
``record_activity``, ``restricted_access`` and ``egress_key``.
"""

from __future__ import annotations

import asyncio
import os
import time

from docker.errors import NotFound
from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import Bool, Integer, List, Type, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.checkpoints.containers import excluded_paths_of, image_of, upper_dir_of
from benchhub.checkpoints.errors import CheckpointCorrupt, CheckpointNotFound
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import (
    WorkspaceCheckpoints,
    damaged_message,
    image_mismatch,
    unknown_message,
)
from benchhub.workspace_spec import WorkspaceSpec

from .workspace_status import Outcome, describe_failure, write_outcome

__all__ = ["WorkspaceCheckpointing"]


class WorkspaceCheckpointing(LoggingConfigurable):
    """Checkpoint settings (``c.BenchSpawner.checkpoint_*``) and the spawner's checkpoint steps."""

    checkpoints_enabled = Bool(
        help="""Checkpoint each workspace's container filesystem on stop and restore the latest
        checkpoint on start (needs root: the hub reads and writes overlay2 upper directories).
        Default: on when the hub runs as root. The store is configured with
        c.CheckpointStore.backend_class (LocalDirectoryBackend or S3Backend),
        c.LocalDirectoryBackend.root, c.S3Backend.bucket/prefix/endpoint_url.
        """,
    ).tag(config=True)
    checkpoint_store_class = Type(
        CheckpointStore,
        klass=CheckpointStore,
        help="The checkpoint store (a CheckpointStore subclass), e.g. one that injects faults.",
    ).tag(config=True)
    checkpoint_keep_automatic = Integer(
        30,
        help="""Automatic checkpoints (on stop, periodic) kept per workspace, newest first;
        named ones are always kept. At least 1, e.g. 30.""",
    ).tag(config=True)
    checkpoint_exclude = List(
        Unicode(),
        ["/data"],
        help="""Container paths left out of checkpoints on top of every mount point, e.g.
        ["/data", "/scratch"]. /data and its mounts are persistent on their own.""",
    ).tag(config=True)

    @default("checkpoints_enabled")
    def _default_checkpoints_enabled(self):
        return os.geteuid() == 0

    @validate("checkpoint_keep_automatic")
    def _keep_at_least_one(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(
                "checkpoint_keep_automatic must be at least 1 (the newest checkpoint is the "
                f"next one's parent), e.g. 30; got {proposal['value']}"
            )
        return proposal["value"]

    _checkpoint_stores: dict[type, CheckpointStore] = {}

    @property
    def checkpoint_store(self) -> CheckpointStore:
        """The store (one per class for the hub process: it holds the backend's client)."""
        cls = self.checkpoint_store_class
        if cls not in WorkspaceCheckpointing._checkpoint_stores:
            WorkspaceCheckpointing._checkpoint_stores[cls] = cls(parent=self, log=self.log)
        return WorkspaceCheckpointing._checkpoint_stores[cls]

    def _checkpoints(self) -> WorkspaceCheckpoints:
        store, keep = self.checkpoint_store, self.checkpoint_keep_automatic
        return WorkspaceCheckpoints(store, self.volume.dir, keep)

    async def _checkpoint(self, obj: dict, reason: str) -> None:
        """Checkpoint the (stopped) container ``obj`` of this workspace; durable on return."""
        ops, t0 = self._checkpoints(), time.monotonic()
        await asyncio.to_thread(ops.ensure, self.user.name, self.name, self.storage_root)
        excluded = excluded_paths_of(obj, self.checkpoint_exclude)
        manifest = await asyncio.to_thread(
            ops.take, upper_dir_of(obj), excluded, reason, None, image_of(obj)
        )
        self.log.info(
            "%s: checkpoint %s (%s) in %.2f s: %d new bytes stored",
            self._log_name,
            manifest.checkpoint_id,
            reason,
            time.monotonic() - t0,
            manifest.totals["new_stored_bytes"],
        )

    async def _checkpoint_on_stop(self, obj: dict) -> None:
        """Take the stop's checkpoint. If it fails, nothing is lost: the stopped container is
        kept under another name (so no start or cleanup removes it), the workspace shows
        errored with the reason, and the error is raised; the next start saves it first."""
        if not self.checkpoints_enabled:
            return
        try:
            await self._checkpoint(obj, "on stop")
        except Exception as e:
            message = f"checkpoint on stop failed: {describe_failure(e)}"
            self.log.error("%s: %s", self._log_name, message, exc_info=True)
            kept = f"{self.object_name}.unsaved-{int(time.time())}"
            try:
                await self.docker("rename", obj["Id"], kept)
                await asyncio.to_thread(self._checkpoints().mark_unsaved, kept, message)
            except Exception:
                self.log.error("%s: could not set aside %s", self._log_name, kept, exc_info=True)
            shown = f"{message}; the stopped container is kept and the next start saves it"
            await asyncio.to_thread(write_outcome, self.volume.dir, Outcome.now("errored", shown))
            await self.record_activity("errored", message)
            self._take_request()
            self.object_id = ""
            await self._release_run()
            raise

    async def _save_unsaved_checkpoint(self) -> None:
        """Save the checkpoint a failed stop left in a kept container, then remove it; if it
        still fails the start fails, and the container stays."""
        if not self.checkpoints_enabled:
            return
        ops = self._checkpoints()
        state = await asyncio.to_thread(ops.state)
        if state is None or not state.unsaved:
            return
        kept = state.unsaved["container"]
        try:
            obj = await self.docker("inspect_container", kept)
        except NotFound:
            self.log.warning(
                "%s: kept container %s is gone; its unsaved changes are lost", self._log_name, kept
            )
            await asyncio.to_thread(ops.clear_unsaved)
            return
        self._emit(20, "Saving the checkpoint the last stop could not save…")
        try:
            await self._checkpoint(obj, "on stop (saved at the next start)")
        except Exception as e:
            raise SpawnException(
                f"the last stop's checkpoint still cannot be saved ({describe_failure(e)}); "
                f"the stopped container {kept} is kept so nothing is lost: fix the checkpoint "
                "store (see the hub log) and start again",
                reason="checkpoint",
            ) from e
        await asyncio.to_thread(ops.clear_unsaved)
        await self.docker("remove_container", kept, v=True, force=True)

    async def _choose_checkpoint(self, spec: WorkspaceSpec):
        """The checkpoint this start restores (spec.restore_checkpoint), or None; 400 if the
        option names no checkpoint of this workspace, or one taken on another image."""
        if not self.checkpoints_enabled:
            return None
        ops = self._checkpoints()
        state = await asyncio.to_thread(ops.ensure, self.user.name, self.name, self.storage_root)
        try:
            manifest = await asyncio.to_thread(ops.choose, spec.restore_checkpoint)
        except CheckpointNotFound:
            there = await asyncio.to_thread(self.checkpoint_store.list, state.workspace_id)
            message = unknown_message(self.name, spec.restore_checkpoint, there)
            raise web.HTTPError(400, message) from None
        mismatch = manifest and image_mismatch(manifest, self.image)
        if mismatch:
            raise web.HTTPError(400, mismatch)
        return manifest

    async def _restore_checkpoint(self, manifest) -> None:
        """Fill the new container's upper dir from ``manifest`` (None: start from the image);
        a damaged checkpoint fails the start, naming the previous good one."""
        if not self.checkpoints_enabled:
            return
        ops = self._checkpoints()
        obj = await self.docker("inspect_container", self.object_id) if manifest else None
        try:
            await asyncio.to_thread(ops.restore, manifest, obj and upper_dir_of(obj))
        except CheckpointCorrupt as e:
            good = await asyncio.to_thread(ops.previous_good, e.checkpoint_id)
            raise SpawnException(damaged_message(e, good), reason="checkpoint") from e

    def _forget_restore_choice(self, spec: WorkspaceSpec) -> None:
        """restore_checkpoint applies to one start: the next one restores the latest again."""
        if spec.restore_checkpoint:
            options = {**(self.orm_spawner.user_options or {}), "restore_checkpoint": ""}
            self.orm_spawner.user_options = options
            self.user_options = options

    async def checkpoint_status(self) -> dict:
        """``{"workspace_id", "last", "periodic_error", "unsaved"}`` of the workspace's
        checkpoint record ({} without one), e.g. for its status line."""
        state = await asyncio.to_thread(self._checkpoints().state)
        if state is None:
            return {}
        fields = ("workspace_id", "last", "periodic_error", "unsaved")
        return {key: getattr(state, key) for key in fields}
