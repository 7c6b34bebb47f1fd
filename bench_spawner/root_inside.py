"""Root inside a workspace, the spawner's side: whether this start's container gets it.

A mixin of :class:`bench_spawner.spawner.BenchSpawner`. The rule is
:func:`bench_spawner.container.root_inside` (root only on an engine that remaps user ids, and
only if the operator allows it); this asks the engine and says in the start's progress why a
workspace has no root. Relies on the spawner's ``_emit``.
"""

from __future__ import annotations

import asyncio

from traitlets import Bool
from traitlets.config import LoggingConfigurable

from benchhub.user_namespace import engine_id_map

from .container import root_inside

__all__ = ["WorkspaceRoot"]


class WorkspaceRoot(LoggingConfigurable):
    """``c.BenchSpawner.workspace_root`` and the check a container plan uses."""

    workspace_root = Bool(
        True,
        help="""Give the workspace user root inside its workspace (sudo, `apt-get install`)
        when the Docker engine remaps user ids (root there is an unprivileged host uid, with
        the few capabilities package installation needs; docs/security.md). Never without
        remapping. False: no workspace gets root on any engine.""",
    ).tag(config=True)

    async def root_inside_decision(self) -> tuple[bool, str | None]:
        """Whether this workspace has root inside, and what its start says when it has not:
        the one decision its container and its apt installs both follow."""
        remaps = not (await asyncio.to_thread(engine_id_map)).is_identity
        return root_inside(remaps, self.workspace_root)

    async def _root_inside(self) -> bool:
        allowed, notice = await self.root_inside_decision()
        if notice:
            self._emit(35, notice)
        return allowed
