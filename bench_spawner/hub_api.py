"""Hub-side HTTP handlers for workspace rules JupyterHub cannot express by configuration.

- Workspace names follow BenchHub's rule (JupyterHub 6's server-name rule, stated in the
  message), on the REST API and on the spawn page alike, and the per-user workspace limit says
  so in BenchHub's words.
- ``user_options`` are validated by the workspace schema *before* JupyterHub stores them, so a
  bad request is a 400 naming the field and nothing is created or changed; the start uses
  that check (``checked_options``) instead of parsing the options again.
- Deleting (``remove: true``) a workspace that is running is refused: stop it first.
- ``PATCH`` of ``user_options`` merges the keys given into the stored options; while the
  workspace runs only the run-time policy (shutdown timer, keep-until, reminders) may change.
- Who asked for a start, stop, edit or delete (and a ``reason`` a service gives in a stop's
  body) goes to the workspace's activity journal, and so does an admin (anyone but the owner)
  entering a workspace (completing the OAuth login to its server) and leaving it (logging out
  of the hub, or the workspace being stopped). A start's actor comes from JupyterHub's
  ``spawner.handler``; a stop's or delete's is noted on the spawner object JupyterHub stops
  (``spawner.action_request``); an edit's is given to the journal directly. Who is inside is
  kept on the spawner object (``spawner.visitors``), in the hub's memory: a hub restart
  forgets it, so no "exited" entry is written for visits open at that moment.
- ``GET /hub/api/bench/workspaces/<user>`` lists a user's workspaces with status and reason.
- ``GET /hub/api/bench/templates`` lists the image templates users choose from.

Every handler here checks the caller's scopes first, with JupyterHub's own ``needs_scope`` and
the scopes JupyterHub's method has (``start:servers`` for POST/PUT/PATCH, ``delete:servers``
for DELETE, ``servers`` for the spawn page, ``read:servers`` for reading): a refused request
(403 without credentials or scopes, 404 for another user's workspace) has created no record,
written no journal line and noted no actor.

These handlers replace JupyterHub's on its own routes; how (and every other assumption about
JupyterHub beyond its public hooks) is in :mod:`bench_spawner.jupyterhub_overrides`.
:func:`register_handlers` (called from ``jupyterhub_config.py``) installs them.
"""

from __future__ import annotations

import contextlib
import inspect
import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from benchhub.activity_journal import ActivityJournal
from benchhub.resource_models import unavailable_reason
from benchhub.workspace_spec import OptionsError, validate_workspace_name

from .actors import ActionRequest
from .jupyterhub_overrides import ObservedOAuthAuthorizeHandler, install_routes
from .presence import presence_of
from .projects_api import PROJECT_HANDLERS
from .projects_page import ProjectsPageHandler
from .quotas_api import QUOTA_HANDLERS


def _is_workspace_spawner(spawner) -> bool:
    return hasattr(spawner, "validate_options")


class WorkspaceNameRule:
    """Mixin for JupyterHub handlers: BenchHub's workspace-name rule and its wording of the
    per-user workspace limit, checked before JupyterHub's own check."""

    async def check_workspace_name(self, user, server_name: str) -> None:
        """400 when ``server_name`` breaks the name rule, or names a new workspace beyond the
        user's limit (``JupyterHub.named_server_limit_per_user``)."""
        if not self.allow_named_servers:
            raise web.HTTPError(400, "Named servers are not enabled.")
        try:
            validate_workspace_name(server_name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        if server_name in user.orm_spawners:
            return
        limit = await self.get_current_user_named_server_limit()
        count = len([name for name in user.orm_spawners if name])
        if limit and count >= limit:
            raise web.HTTPError(
                400, f"{user.name} already has the maximum of {limit} workspaces; delete one first"
            )


@contextlib.contextmanager
def _noted(handler, spawner, request: ActionRequest):
    """Note ``request`` as the actor of the action this request causes on ``spawner`` (the
    object JupyterHub stops or deletes), for the block's duration and after it, until the
    spawner takes it. A request that fails (an exception, or a status >= 400) takes its note
    back, so the workspace's next entry (e.g. "errored" when its container dies) is not put on
    this caller; so can the block, with the function it is given. Call only after the
    caller's scopes were checked: the note names whoever sent the request."""

    def take_back() -> None:
        if spawner.action_request is request:
            spawner.action_request = None

    spawner.action_request = request
    try:
        yield take_back
    except BaseException:
        take_back()
        raise
    if handler.get_status() >= 400:
        take_back()


class WorkspaceServerAPIHandler(WorkspaceNameRule, UserServerAPIHandler):
    """JupyterHub's ``/users/:name/servers/:server`` with workspace validation."""

    # (the user_options this request validated, their spec): a start of these very options
    # uses the spec instead of parsing them again (the spawner reads it via spawner.handler)
    checked_options = None

    async def _validated(self, user_name, server_name, starting=False):
        """Check the name (a new workspace's, or any name when ``starting``) and the
        ``user_options`` before JupyterHub stores anything; the spec of the options, or None
        when none are given. Only after the caller's scopes were checked: validating needs a
        spawner, which this creates (and removes again) for a workspace that does not exist
        yet."""
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        body = self.get_json_body() or {}
        options = body.get("user_options") if isinstance(body, dict) else None
        existed = server_name in user.orm_spawners
        if server_name and (starting or not existed):
            await self.check_workspace_name(user, server_name)
        if options is None or not server_name:
            return None
        if not isinstance(options, dict):
            raise web.HTTPError(400, "user_options must be a JSON object")
        spawner = user.get_or_create_spawner(server_name, server_name, replace_failed=True)
        try:
            if not _is_workspace_spawner(spawner):
                return None
            spec = await spawner.validate_options(options)
            self.checked_options = (options, spec)
            return spec
        finally:
            # JupyterHub's handler creates the record itself (its PUT refuses one that exists)
            if not existed:
                user.spawners.pop(server_name, None)
                self.db.delete(spawner.orm_spawner)
                self.db.commit()

    # Each method checks the same scopes as JupyterHub's (which super() checks again) before
    # BenchHub's own steps: validating creates a spawner, and the start reads who asked from
    # this handler (spawner.handler) once JupyterHub starts it.
    @needs_scope("start:servers")
    async def post(self, user_name, server_name=""):
        await self._validated(user_name, server_name, starting=True)
        await super().post(user_name, server_name)

    @needs_scope("start:servers")
    async def put(self, user_name, server_name=""):
        spec = await self._validated(user_name, server_name)
        if spec is not None:  # JupyterHub's PUT stores what it is given: the canonical form
            body = {**self.get_json_body(), "user_options": spec.to_user_options()}
            self.request.body = json.dumps(body).encode()
        await super().put(user_name, server_name)

    @needs_scope("start:servers")
    async def patch(self, user_name, server_name=""):
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        if body.get("name") is not None:
            try:
                validate_workspace_name(body["name"])
            except OptionsError as e:
                raise web.HTTPError(400, str(e)) from None
        user = self.find_user(user_name)
        spawner = user.spawners[server_name] if user and server_name in user.orm_spawners else None
        if spawner is None or "user_options" not in body or not _is_workspace_spawner(spawner):
            if spawner is not None and spawner.active:
                raise web.HTTPError(
                    400, f"workspace '{server_name}' is running: stop it before renaming it"
                )
            await self._validated(user_name, server_name)
            return await super().patch(user_name, server_name)
        options, changed = await spawner.edit_options(body["user_options"])
        if spawner.active and set(body) - {"user_options"}:
            raise web.HTTPError(
                400, f"workspace '{server_name}' is running: stop it before renaming it"
            )
        if spawner.active:
            spawner.orm_spawner.user_options = options
            spawner.user_options = options
            self.db.commit()
            self.set_header("Content-Type", "application/json")
            self.write(self.server_model(spawner.orm_spawner, user=user))
        else:
            # JupyterHub's own PATCH stores what it is given: give it the merged options
            self.request.body = json.dumps({**body, "user_options": options}).encode()
            await super().patch(user_name, server_name)
        if changed and self.get_status() < 400:
            new = {key: options[key] for key in changed}
            actor = ActionRequest.by(self.current_user, user_name).actor
            await spawner.record_activity("edited", f"edited {', '.join(changed)}", new, actor)

    @needs_scope("delete:servers")
    async def delete(self, user_name, server_name=""):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        body = self.get_json_body() or {}
        body = body if isinstance(body, dict) else {}
        spawner = user.spawners[server_name] if server_name in user.orm_spawners else None
        if body.get("remove") and spawner is not None and spawner.active:
            raise web.HTTPError(
                400, f"workspace '{server_name}' is running: stop it first, then delete it"
            )
        if spawner is None or not _is_workspace_spawner(spawner):
            return await super().delete(user_name, server_name)
        request = ActionRequest.by(self.current_user, user_name, body.get("reason"))
        with _noted(self, spawner, request) as take_back:
            await super().delete(user_name, server_name)
            if self.get_status() == 204:  # nothing was running: no stop to attribute later
                take_back()


def _record_entry(spawner, visitor: str) -> None:
    """Journal an admin entering someone else's workspace (blocking, one fsync: JupyterHub
    calls the hook synchronously). Their exit: ``spawner.record_visitors_left``."""
    if not spawner.activity_journal:
        return
    ActivityJournal(spawner.activity_journal).record(
        "admin-entered",
        spawner.user.name,
        spawner.name,
        f"admin:{visitor}",
        f"{visitor} entered (opened it from the hub)",
    )


class WorkspaceOAuthAuthorizeHandler(ObservedOAuthAuthorizeHandler):
    """JupyterHub's OAuth authorization, noting who other than the owner enters a workspace."""

    def authorized(self, client_id: str) -> None:
        client = self.oauth_provider.fetch_by_client_id(client_id) if client_id else None
        orm_spawner = getattr(client, "spawner", None)
        visitor = self.current_user.name
        if orm_spawner is None or orm_spawner.user.name == visitor:
            return
        spawner = self.users[orm_spawner.user].spawners[orm_spawner.name]
        if not _is_workspace_spawner(spawner) or visitor in spawner.visitors:
            return  # already inside (a second tab or a renewed login)
        spawner.visitors.add(visitor)
        _record_entry(spawner, visitor)


class WorkspaceLogoutHandler(LogoutHandler):
    """JupyterHub's logout; a visitor logging out has left the workspaces they entered."""

    async def handle_logout(self):
        await super().handle_logout()
        user = self.current_user
        if user is None:
            return
        for owner in list(self.users.values()):
            for spawner in list(owner.spawners.values()):
                if user.name in getattr(spawner, "visitors", ()):
                    await spawner.record_visitors_left("logged out of the hub", user.name)


class WorkspaceSpawnHandler(WorkspaceNameRule, SpawnHandler):
    """The spawn page, with BenchHub's workspace-name rule (after JupyterHub's scope check)."""

    @web.authenticated
    async def get(self, user_name=None, server_name=""):
        user_name, server_name = user_name or self.current_user.name, server_name or ""
        await self._check_spawn_request(user_name=user_name, server_name=server_name)
        page = super().get(user_name, server_name)
        if inspect.isawaitable(page):
            await page

    @web.authenticated
    async def post(self, user_name=None, server_name="", display_name=""):
        user_name, server_name = user_name or self.current_user.name, server_name or ""
        await self._check_spawn_request(user_name=user_name, server_name=server_name)
        await super().post(user_name, server_name, display_name)

    @needs_scope("servers")
    async def _check_spawn_request(self, user_name, server_name):
        """The scope check of JupyterHub's page (``servers`` on this server: 404 for another
        user's workspace), then the name rule for a named workspace."""
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {user_name}")
        if server_name:
            await self.check_workspace_name(user, server_name)


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
                    # who used its server lately (owner, collaborators, admins): presence.py
                    "present": presence_of(self, spawner.orm_spawner),
                }
            )
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"user": user.name, "workspaces": workspaces}))


class ResourceModelsAPIHandler(APIHandler):
    """``GET /hub/api/bench/resource-models``: the catalog, with availability on this host.
    For anyone signed in (users and services); without credentials a 403, as JupyterHub's own
    API answers (``web.authenticated`` would redirect an API client to the login page)."""

    async def get(self):
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        spawner_class = self.settings["spawner_class"]
        probe = spawner_class(config=self.settings["config"], user=self.current_user)
        host = await probe.host_capacity()
        models = [
            {**vars(m), "unavailable_reason": unavailable_reason(m, host)}
            for m in probe.schema.resource_models.values()
        ]
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"resource_models": models, "host": vars(host)}))


class TemplatesAPIHandler(APIHandler):
    """``GET /hub/api/bench/templates``: the image templates a user may choose (every one in
    the catalogue), with description, version, image, app, the resource model choosing it
    preselects, and which one the form preselects. For anyone signed in; without
    credentials a 403, as ``/api/bench/resource-models``."""

    async def get(self):
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        spawner_class = self.settings["spawner_class"]
        probe = spawner_class(config=self.settings["config"], user=self.current_user)
        schema = probe.schema
        templates = [
            {
                **template.as_json(),
                "resource_model": schema.model_of(key),
                "default": key == schema.default_image,
            }
            for key, template in probe.templates.items()
        ]
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"templates": templates}))


API_HANDLERS = [
    (r"/api/oauth2/authorize", WorkspaceOAuthAuthorizeHandler),
    (r"/api/users/([^/]+)/servers/([^/]*)", WorkspaceServerAPIHandler),
    (r"/api/bench/workspaces/([^/]+)", WorkspacesAPIHandler),
    (r"/api/bench/resource-models", ResourceModelsAPIHandler),
    (r"/api/bench/templates", TemplatesAPIHandler),
    *PROJECT_HANDLERS,  # projects: roles and workspaces by project rule (projects_api)
    *QUOTA_HANDLERS,  # limits per user and group (quotas_api)
]
PAGE_HANDLERS = [
    (r"/logout", WorkspaceLogoutHandler),
    (r"/spawn/([^/]+)", WorkspaceSpawnHandler),
    (r"/spawn/([^/]+)/([^/]+)", WorkspaceSpawnHandler),
    (r"/projects", ProjectsPageHandler),  # the Projects page (docs/projects.md)
]


def register_handlers() -> None:
    """Put BenchHub's handlers in front of JupyterHub's own (idempotent); refuses, saying
    why, when the installed JupyterHub breaks what they rely on."""
    # sharing's handlers refine some of this module's (imported here: sharing imports them)
    from .sharing import SHARING_API_HANDLERS, SHARING_PAGE_HANDLERS

    install_routes(SHARING_API_HANDLERS + API_HANDLERS, SHARING_PAGE_HANDLERS + PAGE_HANDLERS)
