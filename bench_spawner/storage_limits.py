"""Workspace storage limits, the spawner's side: admitting ``/data`` and watching the writable
layer.

A mixin of :class:`bench_spawner.spawner.BenchSpawner` (kept apart so the spawner stays an
orchestrator). It relies on the spawner's ``docker``, ``volume``, ``storage_root``, ``user``,
``object_id``, ``schema``, ``log`` and ``_log_name``.

* ``/data`` is admitted by :class:`~benchhub.storage_allocations.StorageAdmission`:
  :meth:`check_storage` refuses options early (the REST API, the form, an edit) and
  :meth:`claim_storage` claims the size under the host-wide lock at start, before anything is
  created; :meth:`settle_storage` gives a claim back when the start fails.
* The writable layer is watched while the workspace runs (:mod:`benchhub.writable_layer`):
  one task per running workspace in the hub, started by ``start`` and, after a hub restart,
  by ``poll``. Over the limit it kills the container (no grace period: writes stop at once)
  and leaves the reason; ``poll`` then takes the usual path of a workspace that stopped on
  its own (``_record_exit`` with that reason, the checkpoint on stop, release).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import cached_property

from docker.errors import APIError, NotFound
from tornado import web
from traitlets.config import LoggingConfigurable

from benchhub.checkpoints.containers import upper_dir_of
from benchhub.checkpoints.workspace import label
from benchhub.labels import RESOURCE_MODEL
from benchhub.resource_models import DEFAULT_DISK_GB, ResourceModel
from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import StorageAdmission, StorageRefused
from benchhub.workspace_spec import FieldError, OptionsError, WorkspaceSpec
from benchhub.writable_layer import (
    WritableLayerWatch,
    format_size,
    next_check_in,
    over_limit_reason,
    restore_refusal,
    run_ceiling,
)

__all__ = ["WorkspaceStorageLimits"]

NEAR_LIMIT = 0.8  # the share of its limit at which a layer is noted in the hub's log


class WorkspaceStorageLimits(LoggingConfigurable):
    """Storage admission for ``/data`` and the writable-layer watch of one workspace."""

    _layer_task: asyncio.Task | None = None
    _layer_stop_reason: str = ""

    @cached_property
    def storage_admission(self) -> StorageAdmission:
        """Configured by ``c.StorageAdmission`` (shared with the clusters service)."""
        return StorageAdmission(roots=[self.storage_root], parent=self, log=self.log)

    @cached_property
    def layer_watch(self) -> WritableLayerWatch:
        """Configured by ``c.WritableLayerWatch`` (shared with the clusters service)."""
        return WritableLayerWatch(parent=self, log=self.log)

    # ---- /data ----------------------------------------------------------------------------

    def _data_request(self, spec: WorkspaceSpec) -> StorageRequest:
        return StorageRequest("storage_gb", self.user.name, spec.storage_gb * GIB, what="/data")

    async def check_storage(self, spec: WorkspaceSpec) -> None:
        """Raise :class:`OptionsError` naming ``storage_gb`` when ``/data`` cannot have
        ``spec.storage_gb`` now (a new volume, or growth of the existing one)."""
        verdict = await asyncio.to_thread(
            self.storage_admission.check_volume, self.volume.dir, self._data_request(spec)
        )
        if not verdict.admitted:
            raise OptionsError([FieldError("storage_gb", verdict.message)])

    async def claim_storage(self, spec: WorkspaceSpec) -> None:
        """Claim ``/data``'s size under the host-wide admission lock; a 400 naming
        ``storage_gb`` (and nothing created) when it does not fit."""
        try:
            await asyncio.to_thread(
                self.storage_admission.admit, self.volume.dir, self._data_request(spec)
            )
        except StorageRefused as e:
            raise web.HTTPError(400, str(e)) from None

    async def settle_storage(self) -> None:
        """After a failed start: the claim becomes what the volume really has."""
        try:
            await asyncio.to_thread(self.storage_admission.settle, self.volume.dir)
        except Exception:
            self.log.warning(
                "%s: could not settle the storage claim", self._log_name, exc_info=True
            )

    # ---- the writable layer ---------------------------------------------------------------

    def refuse_oversized_restore(self, manifest, model: ResourceModel) -> None:
        """A 400 when restoring ``manifest`` would write far more than the model allows."""
        if manifest is None:
            return
        logical = int((manifest.totals or {}).get("logical_bytes") or 0)
        refusal = restore_refusal(logical, int(model.disk_gb * GIB), label(manifest))
        if refusal:
            raise web.HTTPError(400, refusal)

    def watch_writable_layer(self, disk_gb: float, fresh_start: bool) -> None:
        """Watch this run's container (``object_id``) against ``disk_gb`` (the resource
        model's); a run that just started (``fresh_start``) may keep what it was restored
        with (see :func:`~benchhub.writable_layer.run_ceiling`)."""
        if self._layer_task is not None and not self._layer_task.done():
            self._layer_task.cancel()
        self._layer_stop_reason = ""
        limit = int(disk_gb * GIB)
        self._layer_task = asyncio.ensure_future(
            self._watch_layer(self.object_id, limit, fresh_start)
        )

    def keep_watching(self, obj: dict) -> None:
        """From ``poll``: watch a running container no task watches (a restarted hub)."""
        if self._layer_task is not None and not self._layer_task.done():
            return
        if self._layer_stop_reason:
            return  # killed for its limit: poll records it once it has stopped
        name = ((obj.get("Config") or {}).get("Labels") or {}).get(RESOURCE_MODEL, "")
        model = self.schema.resource_models.get(name)  # None: no longer in the catalog
        limit_gb = model.disk_gb if model else DEFAULT_DISK_GB
        self.watch_writable_layer(limit_gb, fresh_start=False)

    def take_layer_stop_reason(self) -> str:
        """Why the watch stopped the container ("" if it did not), forgetting it."""
        reason, self._layer_stop_reason = self._layer_stop_reason, ""
        return reason

    async def _watch_layer(self, container_id: str, limit: int, fresh_start: bool) -> None:
        cadence = self.layer_watch.cadence
        baseline, previous, noted = None, None, False
        while container_id and self.object_id == container_id:
            wait = cadence.max_interval
            try:
                obj = await self.docker("inspect_container", container_id)
                if not obj["State"]["Running"]:
                    return
                usage = await self.layer_watch.usage(upper_dir_of(obj))
                now = time.monotonic()
                if previous is None and fresh_start:
                    baseline = usage.charged  # what the run began with (after any restore)
                ceiling = run_ceiling(limit, baseline)
                reason = over_limit_reason(usage, limit, ceiling)
                if reason:
                    await self._stop_for_disk_limit(container_id, reason)
                    return
                if not noted and usage.charged >= NEAR_LIMIT * limit:  # once per run
                    noted = True
                    self.log.info(
                        "%s: writable layer at %d%% of its %s limit",
                        self._log_name,
                        100 * usage.charged // limit,
                        format_size(limit),
                    )
                rate = 0.0
                if previous is not None:
                    rate = (usage.charged - previous[0]) / max(now - previous[1], 1e-3)
                previous = (usage.charged, now)
                wait = next_check_in(usage.charged, ceiling, rate, cadence)
            except asyncio.CancelledError:
                raise
            except NotFound:
                return
            except Exception:
                self.log.warning(
                    "%s: measuring the writable layer failed", self._log_name, exc_info=True
                )
            await asyncio.sleep(wait)

    async def _stop_for_disk_limit(self, container_id: str, reason: str) -> None:
        self._layer_stop_reason = reason
        self.log.warning("%s: %s; stopping it", self._log_name, reason)
        with contextlib.suppress(NotFound, APIError):  # APIError: it stopped meanwhile
            await self.docker("kill", container_id)
