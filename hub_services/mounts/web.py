"""The mounts service's HTTP API (under its prefix; HubOAuth for tokens).

- ``POST api/mounts/<user>/<workspace>`` ``{"mount_path", "source", "mode"}`` — mount a
  directory of ``/data/project`` at ``mount_path`` in the running workspace and its cluster
  members: 201 with the mount and each member's outcome.
- ``GET api/mounts/<user>/<workspace>`` — the workspace's fast mounts, from its mount table:
  ``{"workspace", "project_data": "read-only" | "read-write" | "none", "mounts": [...]}``.
- ``DELETE api/mounts/<user>/<workspace>?mount_path=...`` — unmount everywhere and remove the
  empty mount point: 200 (also when it was not mounted).

Who may: a token whose scopes grant ``access:servers!server=<user>/<workspace>``
(:mod:`.rules`): the owner's token, an admin's, or the workspace's own server token (what
``workspace-ctl`` sends); 403 otherwise, and without credentials. Making a mount also re-checks
the project standing with the group as the hub has it now. Errors are JSON
``{"status", "message", "field"?, "holder"?}``; a refused request changes nothing.

- ``GET metrics`` — the service's Prometheus series (:mod:`.metrics`), for a token with
  ``read:metrics``: mounts made and deleted, requests refused by reason.
"""

from __future__ import annotations

import functools
import json
from urllib.parse import quote

from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import HTTPClientError

from benchhub.service_metrics import metrics_route
from benchhub.service_web import ApiError, ServiceHandler

from .mountinfo import project_mount
from .namespace import HelperFailed, Refused
from .paths import FieldProblem, parse_mount_path, parse_mount_request
from .rules import access_scope, may_use, mode_refusal, project_refusal
from .service import Conflict, MountService, Running

__all__ = ["make_app"]

MAX_BODY = 16 * 1024  # bytes of a request body read at most


class MountRefused(ApiError):
    """A refused request (4xx), counted as ``refusal`` (:data:`.metrics.REFUSAL_REASONS`)
    when it was one to make or delete a mount."""

    def __init__(self, refusal: str, status: int, message: str, **extra):
        super().__init__(status, message, **extra)
        self.refusal = refusal


def counted(operation: str):
    """Count a ``create``/``delete`` handler's refusals and failures in the metrics."""

    def decorate(method):
        @functools.wraps(method)
        async def handle(self, *args):
            try:
                return await method(self, *args)
            except ApiError as e:
                metrics = self.service.metrics
                if e.status_code >= 500:
                    metrics.failed.labels(operation).inc()
                else:
                    metrics.refusal(getattr(e, "refusal", "invalid"))
                raise

        return handle

    return decorate


class MountsHandler(ServiceHandler):
    @property
    def service(self) -> MountService:
        return self.settings["mounts"]

    def _check_access(self, user: str, workspace: str) -> None:
        if not may_use(self.current_user, user, workspace):
            caller = self.current_user
            raise MountRefused(
                "forbidden",
                403,
                f"{caller.get('kind')} {caller.get('name')} may not change the mounts of "
                f"{user}/{workspace}: only its owner, an admin or the workspace itself may "
                f"(a token needs the scope {access_scope(user, workspace)})",
            )

    async def _running(self, user: str, workspace: str) -> Running:
        running = await self.service.workspace(user, workspace)
        if running is None:
            raise MountRefused(
                "not_running", 409, f"{user}/{workspace} is not running: start it first"
            )
        return running

    async def _options_and_group(self, user: str, workspace: str) -> tuple[dict, dict | None]:
        """The workspace's options and its project's group model as the hub has them now."""
        hub = self.service.hub
        server = await hub.server(user, workspace)
        if server is None:
            raise MountRefused(
                "not_running", 409, f"{user}/{workspace} is not running: start it first"
            )
        options = server.get("user_options") or {}
        project = options.get("project") or ""
        if not project:
            return options, None
        try:
            group = await hub.request("GET", f"groups/{quote(project, safe='')}")
        except HTTPClientError as e:
            if e.code != 404:
                raise
            group = None
        return options, group

    @web.authenticated
    async def get(self, user: str, workspace: str):
        self._check_access(user, workspace)
        running = await self._running(user, workspace)
        table = await self.service.mount_table(running.pid)
        project = project_mount(table)
        mounts = await self.service.list(running)
        self.write(
            {
                "workspace": f"{user}/{workspace}",
                "project_data": "none"
                if project is None
                else ("read-only" if project.read_only else "read-write"),
                "mounts": [m.as_json() for m in mounts],
            }
        )

    @web.authenticated
    @counted("create")
    async def post(self, user: str, workspace: str):
        self._check_access(user, workspace)
        try:
            if len(self.request.body) > MAX_BODY:
                raise FieldProblem("body", f"must be at most {MAX_BODY} bytes of JSON")
            try:
                body = json.loads(self.request.body or b"null")
            except ValueError:
                raise FieldProblem("body", "must be JSON: {mount_path, source, mode}") from None
            request = parse_mount_request(body)
        except FieldProblem as e:
            raise MountRefused("invalid", 400, f"{e.field} {e.message}", field=e.field) from None
        running = await self._running(user, workspace)
        options, group = await self._options_and_group(user, workspace)
        refusal = project_refusal(self.current_user, user, options, group)
        if refusal:  # 409: the project is gone
            why = "forbidden" if refusal.status == 403 else "no_project_data"
            raise MountRefused(why, refusal.status, refusal.message)
        project = project_mount(await self.service.mount_table(running.pid))
        if project is None:
            raise MountRefused(
                "no_project_data",
                409,
                f"{user}/{workspace} has no /data/project (its project has no shared data, or "
                "its project data level is no access): there is nothing to mount",
                field="source",
            )
        if not request.read_only:
            refusal = mode_refusal(user, options, group, project.read_only)
            if refusal:
                raise MountRefused("forbidden", refusal.status, refusal.message, field="mode")
        try:
            result = await self.service.create(f"{user}/{workspace}", running, request, project)
        except Conflict as e:
            extra = {"holder": e.holder} if e.holder else {}
            raise MountRefused(e.reason, 409, e.message, field=e.field, **extra) from None
        except Refused as e:
            raise MountRefused("invalid", 400, f"{e.field}: {e.message}", field=e.field) from None
        except HelperFailed as e:
            self.log.error("mount in %s/%s failed: %s", user, workspace, e)
            raise ApiError(500, f"the mount could not be made: {e}") from None
        self.service.metrics.created.inc()
        self.set_status(201)
        self.write(result)

    @web.authenticated
    @counted("delete")
    async def delete(self, user: str, workspace: str):
        self._check_access(user, workspace)
        try:
            target = parse_mount_path(self.get_query_argument("mount_path", None))
        except FieldProblem as e:
            raise MountRefused("invalid", 400, f"{e.field} {e.message}", field=e.field) from None
        running = await self._running(user, workspace)
        try:
            result = await self.service.delete(f"{user}/{workspace}", running, target)
        except HelperFailed as e:
            self.log.error("unmount in %s/%s failed: %s", user, workspace, e)
            raise ApiError(500, f"the mount could not be removed: {e}") from None
        if result["was_mounted"]:
            self.service.metrics.deleted.inc()
        self.write(result)

    def check_xsrf_cookie(self):
        """Token callers only (a script, ``workspace-ctl``): no form posts to protect."""


def make_app(service: MountService, prefix: str, cookie_secret: bytes) -> web.Application:
    return web.Application(
        [
            (url_path_join(prefix, r"api/mounts/([^/]+)/([^/]+)"), MountsHandler),
            metrics_route(prefix, service.metrics.registry),
        ],
        mounts=service,
        cookie_secret=cookie_secret,
    )
