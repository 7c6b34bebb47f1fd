"""The checkpoints service's HTTP surface (under its prefix; HubOAuth for people and tokens).

Who may see (GET) and change (everything else) a user's checkpoints is the one access rule
(:mod:`benchhub.access`: the owner, an admin, a token with ``read:servers`` / ``servers`` for
that user; 403 otherwise). JSON errors are ``{"status": 4xx, "message": "<what and how to fix
it>"}`` (:mod:`benchhub.service_web`).

- ``GET api/workspaces[?user=NAME]`` — a user's workspaces with checkpoint status, and
  ``named_checkpoints``: ``{"used_bytes", "quota_bytes"}`` (the named-checkpoint quota;
  ``used_bytes`` is null while the store cannot be read). ``?project=NAME`` instead: the
  project's workspaces with checkpoint status, for its members (and admins).
- A member of a workspace's project sees (GET) its checkpoints; changing them stays the
  owner's and admins'.
- ``GET api/workspaces/<user>/<ws>/checkpoints`` — newest first: id, name, kind, reason,
  created, sizes (``size_bytes`` of files, ``stored_bytes`` compressed, ``new_stored_bytes``
  this checkpoint added), lineage (``parent``, ``origin``); and the workspace's record
  (``periodic_error``, ``unsaved``, ``origin``).
- ``POST api/workspaces/<user>/<ws>/checkpoints`` ``{"name"?}`` — checkpoint a running
  workspace now (201; 409 if it is stopped, or if naming it would pass the user's
  named-checkpoint quota: then it is kept as an automatic checkpoint).
- ``PATCH …/checkpoints/<id>`` ``{"name"}`` — name or rename (400 bad name, 409 taken or
  over the named-checkpoint quota, the message naming the quota and the use now);
  ``{"name": null}`` un-names it (automatic again, pruned like the others).
- ``POST …/checkpoints/<id>/verify`` — read every chunk: ``{"ok", "problem"?}``.
- ``POST …/checkpoints/<id>/start-as-new`` ``{"name", "user_options"?}`` — a new workspace
  of the same user from this checkpoint (201; 409 name in use; 400 image change).
- ``POST …/checkpoints/<id>/restore-at-next-start`` — the stopped workspace's next start
  restores this checkpoint (sets its ``restore_checkpoint`` option).
- ``POST api/gc`` (admins, or a token with ``servers`` on every user) — delete deleted
  workspaces' checkpoints and unreferenced chunks.
- ``GET api/health`` — the last pass and cleanup.
- ``GET /[?user=NAME]`` — the page (Services menu): workspaces, checkpoints, actions.
"""

from __future__ import annotations

import asyncio
import json

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import HTTPClientError

from benchhub.access import CHANGE, SEE, Action, may_for_everyone
from benchhub.checkpoints.errors import (
    CheckpointNameTaken,
    CheckpointNotFound,
    InvalidCheckpointName,
)
from benchhub.service_metrics import metrics_route
from benchhub.service_pages import ServicesMenu
from benchhub.service_web import ServiceHandler, ServicePage
from benchhub.workspace_spec import OptionsError, validate_workspace_name

from .page import TEMPLATES, TITLE, page_context
from .service import CheckpointService, NamedQuotaExceeded, NotRunning, OptionRefused

__all__ = ["make_app"]

_STATUS = (
    (CheckpointNotFound, 404),
    (CheckpointNameTaken, 409),
    (InvalidCheckpointName, 400),
    (NotRunning, 409),
    (OptionRefused, 400),
    (FileExistsError, 409),
    (OptionsError, 400),
    (NamedQuotaExceeded, 409),
)
# refusals before anything is taken: not checkpoint failures (over the quota, one was taken)
_NOT_TAKEN = tuple(kind for kind, _ in _STATUS if kind is not NamedQuotaExceeded)


class _Checkpoints:
    @property
    def service(self) -> CheckpointService:
        return self.settings["checkpoints"]

    def owner(self, user: str | None, action: Action = SEE, workspace: str | None = None) -> str:
        """The user whose checkpoints are asked for (the caller by default); 403 if the
        caller may not ``action`` them (those of ``workspace``, when one is named)."""
        user = user or self.current_user["name"]
        self.require(action, user, workspace, what=f"the checkpoints of {user}'s workspaces")
        return user


class _Handler(_Checkpoints, ServiceHandler):
    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data

    async def answer(self, coro, status: int = 200) -> None:
        """Await the operation and write its JSON; map known errors to 4xx (see module)."""
        try:
            result = await coro
        except HTTPClientError as e:  # the hub refused: pass its status and sentence on
            raise web.HTTPError(e.code, _hub_message(e)) from None
        except Exception as e:
            for kind, code in _STATUS:
                if isinstance(e, kind):
                    raise web.HTTPError(code, str(e)) from None
            raise
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(result))


def _hub_message(error: HTTPClientError) -> str:
    try:
        return json.loads(error.response.body)["message"]
    except (AttributeError, ValueError, KeyError, TypeError):
        return f"the hub refused: {error}"


class WorkspacesHandler(_Handler):
    @web.authenticated
    async def get(self):
        project = self.get_query_argument("project", None)
        if project is not None:
            self.require_project(project)
            await self.answer(_project_workspaces(self.service, project))
            return
        user = self.owner(self.get_query_argument("user", None))
        await self.answer(_workspaces(self.service, user))


async def _project_workspaces(service: CheckpointService, project: str) -> dict:
    """The checkpoint status of ``project``'s workspaces that have checkpoints."""
    members = await service.hub.project_workspaces(project)
    rows = []
    for user in sorted({user for user, _ in members}):
        rows += [
            row for row in await service.workspaces(user) if (user, row["workspace"]) in members
        ]
    return {"project": project, "workspaces": rows}


async def _workspaces(service: CheckpointService, user: str) -> dict:
    """The workspaces' status (from their records) and the named-checkpoint use (from the
    store: ``used_bytes`` null while the store cannot be read, so the status still shows)."""
    named = {"used_bytes": None, "quota_bytes": int(service.named_quota_gb * 1024**3)}
    try:
        named["used_bytes"] = await asyncio.to_thread(service.named_use, user)
    except Exception:
        service.log.warning("named-checkpoint use of %s unknown", user, exc_info=True)
    return {"workspaces": await service.workspaces(user), "named_checkpoints": named}


class CheckpointsHandler(_Handler):
    @web.authenticated
    async def get(self, user, name):
        what = f"the checkpoints of {user}'s workspaces"
        await self.require_seeing(self.service.hub, user, name, what=what)
        await self.answer(self.service.list(user, name))

    @web.authenticated
    async def post(self, user, name):
        user = self.owner(user, CHANGE, name)
        body = self.body()
        kind = "on_request" if body.get("name") is None else "named"
        taking = self.service.take_now(user, name, body.get("name"))
        await self.answer(self.service.metrics.measure(kind, taking, _NOT_TAKEN), 201)


class CheckpointHandler(_Handler):
    @web.authenticated
    async def patch(self, user, name, checkpoint):
        user = self.owner(user, CHANGE, name)
        body = self.body()
        new_name = body.get("name")
        if not isinstance(new_name, str) and not ("name" in body and new_name is None):
            raise web.HTTPError(
                400,
                'name: give the new name as {"name": "before upgrade"} '
                '(or {"name": null} to un-name it)',
            )
        await self.answer(self.service.rename(user, name, checkpoint, new_name))


class VerifyHandler(_Handler):
    @web.authenticated
    async def post(self, user, name, checkpoint):
        # a POST that reads every chunk: for those who may change the checkpoints
        user = self.owner(user, CHANGE, name)
        await self.answer(self.service.verify(user, name, checkpoint))


class StartAsNewHandler(_Handler):
    @web.authenticated
    async def post(self, user, name, checkpoint):
        user = self.owner(user, CHANGE, name)
        body = self.body()
        new_name, changes = body.get("name"), body.get("user_options") or {}
        if not isinstance(new_name, str) or not isinstance(changes, dict):
            raise web.HTTPError(400, 'give {"name": "<new workspace>", "user_options": {...}}')
        try:
            validate_workspace_name(new_name)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        await self.answer(self.service.start_as_new(user, name, checkpoint, new_name, changes), 201)


class RestoreNextHandler(_Handler):
    @web.authenticated
    async def post(self, user, name, checkpoint):
        user = self.owner(user, CHANGE, name)
        await self.answer(self.service.restore_at_next_start(user, name, checkpoint))


class CollectHandler(_Handler):
    @web.authenticated
    async def post(self):
        if not may_for_everyone(self.current_user, CHANGE):
            raise web.HTTPError(
                403, "only admins may run the cleanup; a token needs the scope servers"
            )
        await self.answer(self.service.collect())


class HealthHandler(_Handler):
    @web.authenticated
    def get(self):
        self.write(self.service.health())


class PageHandler(_Checkpoints, ServicePage):
    templates = TEMPLATES

    @web.authenticated
    async def get(self):
        project = self.get_query_argument("project", None)
        if project is not None:  # the project's checkpoints, to look at (members and admins)
            self.require_project(project)
            rows = (await _project_workspaces(self.service, project))["workspaces"]
            details = [await self.service.list(r["user"], r["workspace"]) for r in rows]
            prefix = self.settings["prefix"]
            context = page_context(f"project {project}", details, prefix, "", readonly=True)
            await self.render_page("checkpoints.html", TITLE, **context)
            return
        user = self.owner(self.get_query_argument("user", None))
        details = []
        for row in await self.service.workspaces(user):
            details.append(await self.service.list(user, row["workspace"]))
        context = page_context(user, details, self.settings["prefix"], self.xsrf_token)
        await self.render_page("checkpoints.html", TITLE, **context)


def make_app(service: CheckpointService, prefix: str, cookie_secret: bytes) -> web.Application:
    ws = url_path_join(prefix, r"api/workspaces/([^/]+)/([^/]+)/checkpoints")
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/workspaces"), WorkspacesHandler),
            (ws, CheckpointsHandler),
            (ws + r"/([^/]+)", CheckpointHandler),
            (ws + r"/([^/]+)/verify", VerifyHandler),
            (ws + r"/([^/]+)/start-as-new", StartAsNewHandler),
            (ws + r"/([^/]+)/restore-at-next-start", RestoreNextHandler),
            (url_path_join(prefix, "api/gc"), CollectHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            metrics_route(prefix, service.metrics.registry),
            (prefix, PageHandler),
        ],
        checkpoints=service,
        prefix=prefix,
        cookie_secret=cookie_secret,
        services_menu=ServicesMenu.from_environment(),
    )
