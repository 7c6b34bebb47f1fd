"""A workspace's clusters die with it: the spawner's side of cluster teardown.

A mixin of :class:`bench_spawner.spawner.BenchSpawner`, used when a run is released. Relies on
the spawner's ``docker``, ``prefix``, ``user``, ``name``, ``log`` and ``_log_name``.
"""

from __future__ import annotations

import contextlib

from docker.errors import NotFound
from traitlets.config import LoggingConfigurable

from benchhub.labels import cluster_label

__all__ = ["WorkspaceClusterTeardown"]


class WorkspaceClusterTeardown(LoggingConfigurable):
    """Removes the cluster containers of a workspace that stops."""

    async def _stop_clusters(self) -> None:
        """Remove the Grid Engine cluster containers that share this workspace's /data (they
        die with it): the manager first, so it takes its address out of /data/.sge. The
        clusters service then removes their network, scratch volumes and record. Done here so
        the volume can be detached even while that service is down."""
        filters = {
            "label": [
                f"{cluster_label('prefix')}={self.prefix}",
                f"{cluster_label('user')}={self.user.name}",
                f"{cluster_label('workspace')}={self.name}",
            ]
        }
        found = await self.docker("containers", all=True, filters=filters)
        found.sort(key=lambda c: c["Labels"].get(cluster_label("role")) != "manager")
        for container in found:
            self.log.info("%s: removing cluster container %s", self._log_name, container["Id"][:12])
            with contextlib.suppress(NotFound):
                await self.docker("stop", container["Id"], timeout=1)
                await self.docker("remove_container", container["Id"], v=True, force=True)
