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
- ``GET    api/clusters[?project=NAME]`` — every cluster the caller may see (or the
  project's, for its members and admins; 403 for anyone else); ``GET api/health``.
- ``GET    /[?user=NAME]`` — the page in the hub's Services menu: the user's (by default the
  caller's) running workspaces, their clusters, start and stop.

Who may see (GET) and start or stop a cluster is the one access rule (:mod:`benchhub.access`:
the workspace's owner, the hub's admins, a token with ``read:servers`` to see or ``servers`` to
change, for that user); everyone else gets 403. Errors are JSON ``{"status": ..., "message":
...}`` (:mod:`benchhub.service_web`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from prometheus_client import CollectorRegistry
from tornado import web

from benchhub.access import CHANGE, SEE, may
from benchhub.hub_client import HubClient
from benchhub.resource_models import ResourceModel
from benchhub.service_metrics import metrics_route
from benchhub.service_pages import PageTemplates, ServicesMenu
from benchhub.service_web import ApiError, ServiceHandler, ServicePage
from benchhub.storage_allocations import StorageRefused
from benchhub.workspace_spec import OptionsError

from .addresses import SubnetsExhausted
from .quota_gate import ClusterQuotaGate, QuotaUnknown
from .service import (
    ClusterController,
    ClusterExists,
    ClusterImageMissing,
    WorkspaceNotRunning,
)
from .settings import ClusterSchema, ClusterSettings

__all__ = ["ResourceCatalog", "check_request", "make_app"]

TEMPLATES = PageTemplates(Path(__file__).parent / "templates")


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
        problems.append(
            (
                "resource_model",
                f"{settings.resource_model} "
                f"{unavailable[settings.resource_model]}; choose a smaller model",
            )
        )
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


class _Clusters:
    @property
    def controller(self) -> ClusterController:
        return self.settings["controller"]

    def check(self, user: str, workspace: str | None = None, change: bool = False) -> None:
        self.require(
            CHANGE if change else SEE, user, workspace, what=f"the clusters of {user}'s workspaces"
        )


class _Handler(_Clusters, ServiceHandler):
    pass


class ClusterHandler(_Handler):
    """``api/clusters/<user>/<workspace>``."""

    @web.authenticated
    async def get(self, user: str, workspace: str):
        await self.require_seeing(
            self.controller.hub, user, workspace, what=f"the clusters of {user}'s workspaces"
        )
        status = await self.controller.status(user, workspace)
        if status is None:
            raise ApiError(404, f"{user}/{workspace} has no cluster; start one with POST")
        self.write(status)

    @web.authenticated
    async def post(self, user: str, workspace: str):
        self.check(user, workspace, change=True)
        try:
            raw = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ApiError(400, "the body must be a JSON object of cluster settings") from None
        settings, model = await self._settings(raw)
        await self._within_limits(user, workspace, settings, model)
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

    async def _within_limits(self, user, workspace, settings, model) -> None:
        """A 403 naming the limit when the first members exceed the user's (quota_gate)."""
        try:
            refusal = await self.settings["quotas"].start_refusal(user, workspace, settings, model)
        except QuotaUnknown as e:
            raise ApiError(503, str(e)) from None
        if refusal:
            raise ApiError(403, refusal)

    async def _settings(self, raw):
        models, unavailable = await self.settings["catalog"].get()
        return check_request(raw, models, unavailable, self.settings["default_resource_model"])

    @web.authenticated
    async def delete(self, user: str, workspace: str):
        self.check(user, workspace, change=True)
        if await self.controller.stop_cluster(user, workspace):
            self.set_status(202)
            self.write(await self.controller.status(user, workspace) or {})
        else:
            self.set_status(204)


class ClusterListHandler(_Handler):
    @web.authenticated
    async def get(self):
        caller = self.current_user
        project = self.get_query_argument("project", None)
        if project is not None:  # the project's clusters, for its members (and admins)
            self.require_project(project)
            keys = {f"{u}/{w}" for u, w in await self.controller.hub.project_workspaces(project)}
        shown = []
        for key in self.controller.keys():
            user, workspace = key.split("/", 1)
            if project is not None:
                visible = key in keys
            else:
                visible = may(caller, SEE, user, workspace)
            if visible and (status := await self.controller.status(user, workspace)):
                shown.append(status)
        self.write({"clusters": shown})


class HealthHandler(_Handler):
    @web.authenticated
    def get(self):
        self.write(self.controller.health())


class PageHandler(_Clusters, ServicePage):
    """A user's running workspaces (the caller's by default) with their clusters; start and
    stop from the page. ``?project=NAME``: the clusters of the project's workspaces, for its
    members and admins, to look at (starting and stopping stay the owners')."""

    templates = TEMPLATES

    async def _project_page(self, project: str) -> None:
        self.require_project(project)
        keys = await self.controller.hub.project_workspaces(project)
        shown = [(f"{u}/{w}", await self.controller.status(u, w)) for u, w in keys]
        await self.render_page(
            "clusters.html",
            "Workspace clusters",
            owner=f"project {project}",
            own=False,
            may_change=False,
            workspaces=[(key, status) for key, status in shown if status is not None],
            models={},
            unavailable={},
            data={"api": url_path_join(self.settings["prefix"], "api/clusters"), "user": ""},
        )

    @web.authenticated
    async def get(self):
        project = self.get_query_argument("project", None)
        if project is not None:
            await self._project_page(project)
            return
        user = self.get_query_argument("user", None) or self.current_user["name"]
        self.check(user)
        model = await self.controller.hub.request("GET", f"users/{quote(user)}")
        running = sorted(n for n, s in (model.get("servers") or {}).items() if n and s.get("ready"))
        models, unavailable = await self.settings["catalog"].get()
        workspaces = [(ws, await self.controller.status(user, ws)) for ws in running]
        xsrf = self.xsrf_token
        await self.render_page(
            "clusters.html",
            "Workspace clusters",
            owner=user,
            own=user == self.current_user["name"],
            may_change=may(self.current_user, CHANGE, user),
            workspaces=workspaces,
            models=models,
            unavailable=unavailable,
            data={
                "api": url_path_join(self.settings["prefix"], "api/clusters"),
                "user": user,
                "xsrf": xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            },
        )


def make_app(
    controller: ClusterController,
    prefix: str,
    cookie_secret: bytes,
    default_resource_model: str = "standard-medium",
    metrics: CollectorRegistry | None = None,
    quotas: ClusterQuotaGate | None = None,
) -> web.Application:
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/clusters"), ClusterListHandler),
            (url_path_join(prefix, "api/clusters/([^/]+)/([^/]+)"), ClusterHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            metrics_route(prefix, metrics if metrics is not None else CollectorRegistry()),
            (prefix, PageHandler),
        ],
        controller=controller,
        catalog=ResourceCatalog(controller.hub),
        quotas=quotas or ClusterQuotaGate(controller.hub),
        default_resource_model=default_resource_model,
        prefix=prefix,
        cookie_secret=cookie_secret,
        services_menu=ServicesMenu.from_environment(),
    )
