"""The clusters service's HTTP surface (under its prefix; HubOAuth for people and tokens).

- ``POST   api/clusters/<user>/<workspace>`` — start a cluster for a running workspace. The
  body is the cluster settings (:class:`~.settings.ClusterSchema`); a bad one is a 400 whose
  message names each field and what is allowed, and nothing is created; so is a
  ``scratch_gb`` whose scratch for ``max_members`` members does not fit the host's storage
  capacity or the user's quota (the message says what is free or left). 409 when the
  workspace does not run or already has a cluster, 503 when this host cannot (no subnet
  left, no cluster image). 202 with the cluster's status.
- ``GET    api/clusters/<user>/<workspace>`` — status: manager, members and their state,
  pending jobs, jobs no member can ever run (and why), the scaler's last decision, the tail
  of ``/data/logs/sge-scaler.log``. 404 when the workspace has no cluster.
- ``DELETE api/clusters/<user>/<workspace>`` — stop it (202); no cluster is success (204).
- ``GET    api/clusters`` — every cluster the caller may see; ``GET api/health``.
- ``GET    /`` — the page in the hub's Services menu: the caller's running workspaces, their
  clusters, start and stop.

Only the workspace's owner and the hub's admins (or a token with the ``servers`` scope for
that user) may see or change a cluster; everyone else gets 403. Errors are JSON
``{"status": ..., "message": ...}``.
"""

from __future__ import annotations

import html
import json
import time
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from benchhub.hub_client import HubClient
from benchhub.resource_models import ResourceModel
from benchhub.storage_allocations import StorageRefused
from benchhub.workspace_spec import OptionsError

from .addresses import SubnetsExhausted
from .service import (
    ClusterController,
    ClusterExists,
    ClusterImageMissing,
    WorkspaceNotRunning,
)
from .settings import ClusterSchema, ClusterSettings

__all__ = ["ApiError", "ResourceCatalog", "check_request", "may_see", "make_app"]

_WRITE_SCOPES = ("admin:servers", "servers")
_READ_SCOPES = (*_WRITE_SCOPES, "read:servers")


def may_see(caller: dict, owner: str, change: bool = False) -> bool:
    """Whether ``caller`` (HubOAuth's model of a user or service) may see (``change``: also
    start and stop) the clusters of ``owner``'s workspaces: the owner, an admin, or a token
    whose scopes cover that user's servers."""
    if caller.get("kind", "user") == "user" and (
        caller.get("name") == owner or caller.get("admin") is True
    ):
        return True
    scopes = set(caller.get("scopes") or [])
    wanted = _WRITE_SCOPES if change else _READ_SCOPES
    return any(s in scopes or f"{s}!user={owner}" in scopes for s in wanted)


class ApiError(web.HTTPError):
    """An HTTP error whose ``message`` (and ``extra`` fields) go to the client as JSON."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(status)
        self.message = message
        self.extra = extra

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.message}"


def check_request(
    raw: object, models: dict[str, ResourceModel], unavailable: dict[str, str], default: str
) -> tuple[ClusterSettings, ResourceModel]:
    """A start request's settings and the members' model, or :class:`ApiError` 400 naming
    every field that is wrong: the schema's checks, then what this service cannot do (a model
    this host cannot run). ``default`` is the model when none is named (the
    catalog's first when ``default`` is not in it)."""
    schema = ClusterSchema(models, default if default in models else next(iter(models)))
    try:
        settings = schema.parse(raw)
    except OptionsError as e:
        errors = [{"field": f.field, "message": f.message} for f in e.errors]
        raise ApiError(400, str(e), errors=errors) from None
    problems = []
    if settings.resource_model in unavailable:
        problems.append(("resource_model", f"{settings.resource_model} "
                         f"{unavailable[settings.resource_model]}; choose a smaller model"))
    if problems:
        errors = [{"field": field, "message": message} for field, message in problems]
        raise ApiError(400, "; ".join(f"{f}: {m}" for f, m in problems), errors=errors)
    return settings, models[settings.resource_model]


class ResourceCatalog:
    """The hub's resource models (``GET /hub/api/bench/resource-models``: the same catalog
    workspaces use, with what this host cannot run), cached for ``ttl`` seconds."""

    def __init__(self, hub: HubClient, ttl: float = 60):
        self.hub = hub
        self.ttl = ttl
        self._at = -ttl
        self._models: dict[str, ResourceModel] = {}
        self._unavailable: dict[str, str] = {}

    async def get(self) -> tuple[dict[str, ResourceModel], dict[str, str]]:
        """``({name: ResourceModel}, {name: why this host cannot run it})``."""
        if time.monotonic() - self._at > self.ttl or not self._models:
            body = await self.hub.request("GET", "bench/resource-models")
            models, unavailable = {}, {}
            for entry in body["resource_models"]:
                reason = entry.pop("unavailable_reason", None)
                models[entry["name"]] = ResourceModel(**entry)
                if reason:
                    unavailable[entry["name"]] = reason
            self._models, self._unavailable, self._at = models, unavailable, time.monotonic()
        return self._models, self._unavailable


class _Handler(HubOAuthenticated, web.RequestHandler):
    @property
    def controller(self) -> ClusterController:
        return self.settings["controller"]

    def check(self, user: str, change: bool = False) -> None:
        if not may_see(self.current_user, user, change):
            what = "change" if change else "see"
            raise web.HTTPError(
                403, f"only {user} or an admin may {what} the clusters of {user}'s workspaces"
            )

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "message", None) or getattr(error, "log_message", None)
        body = {"status": status_code, "message": message or self._reason}
        body.update(getattr(error, "extra", {}))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))



class ClusterHandler(_Handler):
    """``api/clusters/<user>/<workspace>``."""

    @web.authenticated
    async def get(self, user: str, workspace: str):
        self.check(user)
        status = await self.controller.status(user, workspace)
        if status is None:
            raise ApiError(404, f"{user}/{workspace} has no cluster; start one with POST")
        self.write(status)

    @web.authenticated
    async def post(self, user: str, workspace: str):
        self.check(user, change=True)
        try:
            raw = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ApiError(400, "the body must be a JSON object of cluster settings") from None
        settings, model = await self._settings(raw)
        try:
            await self.controller.start_cluster(user, workspace, settings, model)
        except (WorkspaceNotRunning, ClusterExists) as e:
            raise ApiError(409, str(e)) from None
        except (SubnetsExhausted, ClusterImageMissing) as e:
            raise ApiError(503, str(e)) from None
        except StorageRefused as e:  # the scratch does not fit the host or the user's quota
            raise ApiError(400, str(e), errors=[{"field": e.field, "message": e.message}]) from None
        self.set_status(202)
        self.write(await self.controller.status(user, workspace))

    async def _settings(self, raw):
        models, unavailable = await self.settings["catalog"].get()
        return check_request(raw, models, unavailable, self.settings["default_resource_model"])

    @web.authenticated
    async def delete(self, user: str, workspace: str):
        self.check(user, change=True)
        if await self.controller.stop_cluster(user, workspace):
            self.set_status(202)
            self.write(await self.controller.status(user, workspace) or {})
        else:
            self.set_status(204)


class ClusterListHandler(_Handler):
    @web.authenticated
    async def get(self):
        caller = self.current_user
        shown = []
        for key in self.controller.keys():
            user, workspace = key.split("/", 1)
            if may_see(caller, user) and (status := await self.controller.status(user, workspace)):
                shown.append(status)
        self.write({"clusters": shown})


class HealthHandler(_Handler):
    @web.authenticated
    def get(self):
        self.write(self.controller.health())


class PageHandler(_Handler):
    """The caller's running workspaces with their clusters; start and stop from the page."""

    @web.authenticated
    async def get(self):
        name = self.current_user["name"]
        model = await self.controller.hub.request("GET", f"users/{quote(name)}")
        running = sorted(n for n, s in (model.get("servers") or {}).items() if n and s.get("ready"))
        models, unavailable = await self.settings["catalog"].get()
        options = "".join(
            f"<option value='{html.escape(m)}'{' disabled' if m in unavailable else ''}>"
            f"{html.escape(m)} ({html.escape(models[m].describe())})</option>"
            for m in models
        )
        rows = "".join([await self._row(name, ws, options) for ws in running])
        self.write(PAGE.format(
            xsrf=json.dumps(self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes)
                            else self.xsrf_token),
            api=json.dumps(url_path_join(self.settings["prefix"], "api/clusters")),
            user=json.dumps(name),
            rows=rows or "<p>No running workspace. Start one from the hub's home page.</p>",
        ))  # fmt: skip

    async def _row(self, user: str, workspace: str, options: str) -> str:
        status = await self.controller.status(user, workspace)
        ws = html.escape(workspace)
        if status is None:
            return FORM.format(ws=ws, options=options)
        members = ", ".join(f"{m['name']} ({m['state']})" for m in status["members"]) or "none"
        waiting = "".join(f"<li>{html.escape(u['reason'])}</li>" for u in status["unsatisfiable"])
        log = html.escape("\n".join(status["scaler_log"][-10:]))
        web_ui = status["spark"]["web_ui"]
        spark_line = (f'<p>Spark: {html.escape(status["spark"]["master_url"])}, '
                      f'{status["spark"]["workers"]} workers'
                      + (f' — <a href="{html.escape(web_ui)}" target="_blank">Spark UI</a>'
                         if web_ui else "") + "</p>")  # fmt: skip
        return (
            f"<h2>{ws}</h2><p>Cluster <b>{html.escape(status['status'])}</b> "
            f"{html.escape(status['reason'])} — {html.escape(status['settings']['type'])}, "
            f"members: {html.escape(members)}; pending jobs: {len(status['pending'])}</p>"
            + spark_line
            + (f"<p>Jobs that will never run:</p><ul>{waiting}</ul>" if waiting else "")
            + f"<pre>{log}</pre>"
            f"<button onclick=\"stopCluster('{ws}')\">Stop cluster</button>"
        )


FORM = """<h2>{ws}</h2><form onsubmit="return startCluster(this, '{ws}')">
<label>Type <select name="type"><option>static</option><option>dynamic</option></select></label>
<label>Members (static) <input name="members" type="number" min="1" max="50" value="2"></label>
<label>Min / max (dynamic) <input name="min_members" type="number" min="0" max="50" value="0">
<input name="max_members" type="number" min="1" max="50" value="4"></label>
<label>Member model <select name="resource_model">{options}</select></label>
<label>Scratch GB per member <input name="scratch_gb" type="number" min="0" value="0"></label>
<label><input name="dedicated_manager" type="checkbox"> Dedicated manager</label>
<label><input name="preemptible" type="checkbox"> Economy (preemptible members)</label>
<label><input name="web_access" type="checkbox"> Web access (Spark UI)</label>
<button>Start cluster</button></form>"""

PAGE = """<!doctype html><title>Workspace clusters</title>
<link rel="stylesheet" href="/hub/static/css/style.min.css">
<div class="container"><h1>Workspace clusters</h1>
<p>A cluster is a Grid Engine manager and members attached to a running workspace: use
<code>qsub</code>, <code>qstat</code>, <code>qacct</code> in the workspace, with
<code>-l static_cores=N -l static_mem=XG</code>, and the kernels "PySpark – Remote" and
"PySpark – Remote - Dynamic" run Spark executors on the members. The auto scaler logs to
<code>/data/logs/sge-scaler.log</code>.</p>
<p id="error" style="color:#a00"></p>{rows}</div>
<script>
const XSRF = {xsrf}, API = {api}, USER = {user};
async function call(method, ws, body) {{
  const r = await fetch(API + "/" + encodeURIComponent(USER) + "/" + encodeURIComponent(ws),
    {{method, headers: {{"X-XSRFToken": XSRF, "Content-Type": "application/json"}},
     body: body ? JSON.stringify(body) : undefined}});
  if (!r.ok && r.status !== 204) {{
    document.getElementById("error").textContent = (await r.json()).message; return;
  }}
  location.reload();
}}
function startCluster(form, ws) {{
  const f = new FormData(form), t = f.get("type"), body = {{type: t,
    resource_model: f.get("resource_model"), scratch_gb: Number(f.get("scratch_gb")),
    dedicated_manager: f.has("dedicated_manager"), preemptible: f.has("preemptible"),
    web_access: f.has("web_access")}};
  if (t === "static") body.members = Number(f.get("members"));
  else {{ body.min_members = Number(f.get("min_members"));
         body.max_members = Number(f.get("max_members")); }}
  call("POST", ws, body); return false;
}}
function stopCluster(ws) {{ call("DELETE", ws); }}
</script>"""


def make_app(
    controller: ClusterController, prefix: str, cookie_secret: bytes,
    default_resource_model: str = "standard-medium",
) -> web.Application:  # fmt: skip
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/clusters"), ClusterListHandler),
            (url_path_join(prefix, "api/clusters/([^/]+)/([^/]+)"), ClusterHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            (prefix, PageHandler),
        ],
        controller=controller,
        catalog=ResourceCatalog(controller.hub),
        default_resource_model=default_resource_model,
        prefix=prefix,
        cookie_secret=cookie_secret,
    )
