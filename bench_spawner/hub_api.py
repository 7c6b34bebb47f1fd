"""Hub-side HTTP handlers for workspace rules JupyterHub cannot express by configuration.

- Workspace names follow BenchHub's rule (letters, digits, ``-``, ``_``; 1-63 characters),
  on the REST API and on the spawn page alike.
- ``user_options`` are validated by the workspace schema *before* JupyterHub stores them, so a
  bad request is a 400 naming the field and nothing is created or changed.
- Deleting (``remove: true``) a workspace that is running is refused: stop it first.
- ``PATCH`` of ``user_options`` merges the keys given into the stored options; while the
  workspace runs only the run-time policy (shutdown timer, keep-until, reminders) may change.
- Who asked for a start, stop, edit or delete (and a ``reason`` a service gives in a stop's
  body) goes to the workspace's activity journal, and so does an admin (anyone but the owner)
  entering a workspace (completing the OAuth login to its server) and leaving it (logging out
  of the hub, or the workspace being stopped). Who is inside is kept in the hub's memory: a
  hub restart forgets it, so no "exited" entry is written for visits open at that moment.
- ``GET /hub/api/bench/workspaces/<user>`` lists a user's workspaces with status and reason.

Every handler here checks the caller's scopes first, with JupyterHub's own ``needs_scope`` and
the scopes JupyterHub's method has (``start:servers`` for POST/PUT/PATCH, ``delete:servers``
for DELETE, ``servers`` for the spawn page, ``read:servers`` for reading): a refused request
(403 without credentials or scopes, 404 for another user's workspace) has created no record,
written no journal line and noted no actor.

JupyterHub matches routes in order and appends ``extra_handlers`` after its own, so a refined
built-in route has to go in front: :func:`register_handlers` (called from
``jupyterhub_config.py``) prepends these to JupyterHub's handler lists, once.
"""

from __future__ import annotations

import contextlib
import json

from jupyterhub import apihandlers, handlers
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from benchhub.activity_journal import ActivityJournal
from benchhub.resource_models import unavailable_reason
from benchhub.workspace_spec import OptionsError, validate_workspace_name


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


MAX_REASON_CHARS = 500


def actor_name(current, owner: str) -> str:
    """Who acts on ``owner``'s workspace: the owner's name, ``admin:<name>`` for an admin
    acting on someone else's, ``service:<name>`` for a hub service (e.g. the lifecycle policy)."""
    if current is None:
        return "hub"
    if getattr(current, "kind", "user") == "service":
        return f"service:{current.name}"
    if current.name != owner and getattr(current, "admin", False):
        return f"admin:{current.name}"
    return current.name


class RecordsActor:
    """Mixin: remember who (and why) for the spawner's activity journal entries.

    Call only after the caller's scopes were checked: the note names whoever sent the request.
    """

    @contextlib.contextmanager
    def _actor_noted(self, user_name: str, server_name: str, reason: object = ""):
        """Note the actor of the action this request causes, for the block's duration and
        after it, until the spawner takes the note. A request that fails (an exception, or a
        status >= 400 such as the spawn form shown again with its error) takes its note back,
        so the workspace's next entry (e.g. "errored" when its container dies) is not put on
        this caller; so can the block, with the function it is given."""
        from .spawner import BenchSpawner  # the spawner module imports docker: load lazily

        reason = reason.strip()[:MAX_REASON_CHARS] if isinstance(reason, str) else ""
        key, note = (user_name, server_name), (actor_name(self.current_user, user_name), reason)

        def take_back() -> None:
            if BenchSpawner.requested_by.get(key) == note:
                del BenchSpawner.requested_by[key]

        BenchSpawner.requested_by[key] = note
        try:
            yield take_back
        except BaseException:
            take_back()
            raise
        if self.get_status() >= 400:
            take_back()


class WorkspaceServerAPIHandler(RecordsActor, WorkspaceNameRule, UserServerAPIHandler):
    """JupyterHub's ``/users/:name/servers/:server`` with workspace validation."""

    async def _validated(self, user_name, server_name):
        """Validate name and user_options before JupyterHub stores anything. Only after the
        caller's scopes were checked: validating needs a spawner, which this creates (and
        removes again) for a workspace that does not exist yet."""
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
        finally:
            # JupyterHub's handler creates the record itself (its PUT refuses one that exists)
            if not existed:
                user.spawners.pop(server_name, None)
                self.db.delete(spawner.orm_spawner)
                self.db.commit()

    # Each method checks the same scopes as JupyterHub's (which super() checks again) before
    # BenchHub's own steps: validating creates a spawner and noting the actor is remembered.
    @needs_scope("start:servers")
    async def post(self, user_name, server_name=""):
        await self._validated(user_name, server_name)
        with self._actor_noted(user_name, server_name):
            await super().post(user_name, server_name)

    @needs_scope("start:servers")
    async def put(self, user_name, server_name=""):
        await self._validated(user_name, server_name)
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
        with self._actor_noted(user_name, server_name):
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
            if changed:
                new = {key: options[key] for key in changed}
                await spawner.record_activity("edited", f"edited {', '.join(changed)}", new)
        spawner._take_request()

    @needs_scope("delete:servers")
    async def delete(self, user_name, server_name=""):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        body = self.get_json_body() or {}
        if isinstance(body, dict) and body.get("remove"):
            spawner = user.spawners[server_name] if server_name in user.orm_spawners else None
            if spawner is not None and spawner.active:
                raise web.HTTPError(
                    400, f"workspace '{server_name}' is running: stop it first, then delete it"
                )
        reason = body.get("reason") if isinstance(body, dict) else ""
        with self._actor_noted(user_name, server_name, reason) as take_back:
            await super().delete(user_name, server_name)
            if self.get_status() == 204:  # nothing was running: no stop to attribute later
                take_back()
        _record_exits(user_name, server_name, self.users, "the workspace was stopped")


# (owner, workspace) -> names of people other than the owner who entered it (hub memory)
VISITORS: dict[tuple[str, str], set[str]] = {}


def _record_visit(spawner, visitor: str, action: str, why: str) -> None:
    """Journal an admin entering or leaving someone else's workspace (blocking, one fsync)."""
    if not _is_workspace_spawner(spawner) or not spawner.activity_journal:
        return
    verb = "entered" if action == "admin-entered" else "left"
    ActivityJournal(spawner.activity_journal).record(
        action, spawner.user.name, spawner.name, f"admin:{visitor}", f"{visitor} {verb} ({why})"
    )


def _record_exits(owner: str, workspace: str, users, why: str, visitor: str | None = None):
    """Journal the exit of ``visitor`` (or every visitor) of ``owner``'s ``workspace``."""
    names = VISITORS.get((owner, workspace), set())
    leaving = {visitor} & names if visitor else set(names)
    names -= leaving
    user = users[owner] if owner in users else None
    spawner = user.spawners[workspace] if user and workspace in user.orm_spawners else None
    for name in sorted(leaving):
        if spawner is not None:
            _record_visit(spawner, name, "admin-exited", why)


class WorkspaceOAuthAuthorizeHandler(OAuthAuthorizeHandler):
    """JupyterHub's OAuth authorization, noting who other than the owner enters a workspace."""

    def _complete_login(self, uri, headers, scopes, credentials):
        """Authorized without asking (JupyterHub only skips asking for one's own server)."""
        super()._complete_login(uri, headers, scopes, credentials)
        self._note_entry(credentials["client_id"])

    @web.authenticated
    def post(self):
        """The visitor pressed "Authorize" on JupyterHub's confirmation page."""
        super().post()
        if self.get_status() in (301, 302, 303):
            self._note_entry(self.get_argument("client_id", ""))

    def _note_entry(self, client_id: str) -> None:
        client = self.oauth_provider.fetch_by_client_id(client_id) if client_id else None
        orm_spawner = getattr(client, "spawner", None)
        visitor = self.current_user.name
        if orm_spawner is None or orm_spawner.user.name == visitor:
            return
        owner, workspace = orm_spawner.user.name, orm_spawner.name
        if visitor in VISITORS.setdefault((owner, workspace), set()):
            return  # already inside (a second tab or a renewed login)
        VISITORS[(owner, workspace)].add(visitor)
        _record_visit(self.users[orm_spawner.user].spawners[workspace], visitor,
                      "admin-entered", "opened it from the hub")  # fmt: skip


class WorkspaceLogoutHandler(LogoutHandler):
    """JupyterHub's logout; a visitor logging out has left the workspaces they entered."""

    async def handle_logout(self):
        await super().handle_logout()
        user = self.current_user
        if user is None:
            return
        for owner, workspace in [key for key, names in VISITORS.items() if user.name in names]:
            _record_exits(owner, workspace, self.users, "logged out of the hub", user.name)


class WorkspaceSpawnHandler(RecordsActor, WorkspaceNameRule, SpawnHandler):
    """The spawn page, with BenchHub's workspace-name rule; records who started."""

    @web.authenticated
    async def post(self, user_name=None, server_name="", display_name=""):
        user_name, server_name = user_name or self.current_user.name, server_name or ""
        self._check_may_spawn(user_name=user_name, server_name=server_name)
        with self._actor_noted(user_name, server_name):
            await super().post(user_name, server_name, display_name)

    @needs_scope("servers")
    def _check_may_spawn(self, user_name, server_name):
        """The scope check of JupyterHub's form handler (``servers`` on this server), made
        before the actor is noted: 404 for another user's workspace, nothing remembered."""


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


API_HANDLERS = [
    (r"/api/oauth2/authorize", WorkspaceOAuthAuthorizeHandler),
    (r"/api/users/([^/]+)/servers/([^/]*)", WorkspaceServerAPIHandler),
    (r"/api/bench/workspaces/([^/]+)", WorkspacesAPIHandler),
    (r"/api/bench/resource-models", ResourceModelsAPIHandler),
]
PAGE_HANDLERS = [
    (r"/logout", WorkspaceLogoutHandler),
    (r"/spawn/([^/]+)", WorkspaceSpawnHandler),
    (r"/spawn/([^/]+)/([^/]+)", WorkspaceSpawnHandler),
]


def register_handlers() -> None:
    """Put BenchHub's handlers in front of JupyterHub's own (idempotent)."""
    for routes, ours in ((apihandlers.default_handlers, API_HANDLERS),
                         (handlers.default_handlers, PAGE_HANDLERS)):  # fmt: skip
        if not any(h in routes for h in ours):
            routes[:0] = ours
