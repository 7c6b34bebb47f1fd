"""Hub-side HTTP handlers for workspace rules JupyterHub cannot express by configuration.

- Workspace names follow BenchHub's rule (letters, digits, ``-``, ``_``; 1-63 characters),
  on the REST API and on the spawn page alike.
- ``user_options`` are validated by the workspace schema *before* JupyterHub stores them, so a
  bad request is a 400 naming the field and nothing is created or changed.
- Deleting (``remove: true``) a workspace that is running is refused: stop it first.
- ``GET /hub/api/bench/workspaces/<user>`` lists a user's workspaces with status and reason.

JupyterHub matches routes in order and appends ``extra_handlers`` after its own, so a refined
built-in route has to go in front: :func:`register_handlers` (called from
``jupyterhub_config.py``) prepends these to JupyterHub's handler lists, once.
"""

from __future__ import annotations

import json

from jupyterhub import apihandlers, handlers
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from .options import OptionsError, validate_workspace_name
from .resource_models import unavailable_reason


class WorkspaceNameRule:
    """Mixin: BenchHub's workspace-name rule and JupyterHub's named-server limit."""

    async def _check_named_server_request(self, user, server_name, display_name, check_limit=True):
        if not self.allow_named_servers:
            raise web.HTTPError(400, "Named servers are not enabled.")
        try:
            validate_workspace_name(server_name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        if check_limit and server_name not in user.orm_spawners:
            limit = await self.get_current_user_named_server_limit()
            count = len([n for n in user.orm_spawners if n])
            if limit and count >= limit:
                raise web.HTTPError(
                    400,
                    f"{user.name} already has the maximum of {limit} workspaces; delete one first",
                )


def _is_workspace_spawner(spawner) -> bool:
    return hasattr(spawner, "validate_options")


class WorkspaceServerAPIHandler(WorkspaceNameRule, UserServerAPIHandler):
    """JupyterHub's ``/users/:name/servers/:server`` with workspace validation."""

    async def _validated(self, user_name, server_name):
        """Validate name and user_options before JupyterHub stores anything."""
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        body = self.get_json_body() or {}
        options = body.get("user_options") if isinstance(body, dict) else None
        existed = server_name in user.orm_spawners
        if not existed and server_name:
            await self._check_named_server_request(user, server_name, server_name)
        if options is None or not server_name:
            return
        if not isinstance(options, dict):
            raise web.HTTPError(400, "user_options must be a JSON object")
        spawner = user.get_or_create_spawner(server_name, server_name, replace_failed=True)
        try:
            if _is_workspace_spawner(spawner):
                await spawner.validate_options(options)
        except web.HTTPError:
            if not existed:  # nothing created on error
                user.spawners.pop(server_name, None)
                self.db.delete(spawner.orm_spawner)
                self.db.commit()
            raise

    async def post(self, user_name, server_name=""):
        await self._validated(user_name, server_name)
        await super().post(user_name, server_name)

    async def put(self, user_name, server_name=""):
        await self._validated(user_name, server_name)
        await super().put(user_name, server_name)

    async def patch(self, user_name, server_name=""):
        body = self.get_json_body() or {}
        if isinstance(body, dict) and body.get("name") is not None:
            try:
                validate_workspace_name(body["name"])
            except OptionsError as e:
                raise web.HTTPError(400, str(e)) from None
        user = self.find_user(user_name)
        if user is not None and server_name in user.spawners and user.spawners[server_name].active:
            raise web.HTTPError(
                400, f"workspace '{server_name}' is running: stop it before editing it"
            )
        await self._validated(user_name, server_name)
        await super().patch(user_name, server_name)

    async def delete(self, user_name, server_name=""):
        user = self.find_user(user_name)
        body = self.get_json_body() or {}
        if user is not None and isinstance(body, dict) and body.get("remove"):
            spawner = user.spawners[server_name] if server_name in user.orm_spawners else None
            if spawner is not None and spawner.active:
                raise web.HTTPError(
                    400, f"workspace '{server_name}' is running: stop it first, then delete it"
                )
        await super().delete(user_name, server_name)


class WorkspaceSpawnHandler(WorkspaceNameRule, SpawnHandler):
    """The spawn page, with BenchHub's workspace-name rule."""


class WorkspacesAPIHandler(APIHandler):
    """``GET /hub/api/bench/workspaces/<user>``: each workspace with status and reason."""

    @needs_scope("read:servers")
    async def get(self, user_name):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        workspaces = []
        for name in sorted(n for n in user.orm_spawners if n):
            spawner = user.spawners[name]
            status = await spawner.workspace_status() if _is_workspace_spawner(spawner) else {}
            workspaces.append(
                {
                    "name": name,
                    **status,
                    "url": user.server_url(name) if spawner.ready else None,
                    "user_options": spawner.orm_spawner.user_options or {},
                }
            )
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"user": user.name, "workspaces": workspaces}))


class ResourceModelsAPIHandler(APIHandler):
    """``GET /hub/api/bench/resource-models``: the catalog, with availability on this host."""

    @web.authenticated
    async def get(self):
        spawner_class = self.settings["spawner_class"]
        probe = spawner_class(config=self.settings["config"], user=self.current_user)
        host = await probe.host_capacity()
        models = [
            {**vars(m), "unavailable_reason": unavailable_reason(m, host)}
            for m in probe.schema.resource_models.values()
        ]
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"resource_models": models, "host": vars(host)}))


API_HANDLERS = [
    (r"/api/users/([^/]+)/servers/([^/]*)", WorkspaceServerAPIHandler),
    (r"/api/bench/workspaces/([^/]+)", WorkspacesAPIHandler),
    (r"/api/bench/resource-models", ResourceModelsAPIHandler),
]
PAGE_HANDLERS = [
    (r"/spawn/([^/]+)", WorkspaceSpawnHandler),
    (r"/spawn/([^/]+)/([^/]+)", WorkspaceSpawnHandler),
]


def register_handlers() -> None:
    """Put BenchHub's handlers in front of JupyterHub's own (idempotent)."""
    for routes, ours in ((apihandlers.default_handlers, API_HANDLERS),
                         (handlers.default_handlers, PAGE_HANDLERS)):  # fmt: skip
        if not any(h in routes for h in ours):
            routes[:0] = ours
