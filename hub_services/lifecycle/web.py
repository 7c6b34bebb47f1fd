"""The lifecycle service's HTTP surface (under its prefix, HubOAuth for people and tokens).

- ``GET api/workspaces[?user=NAME][&project=NAME]`` — each running workspace's next event
  (shutdown or restart), the time remaining, the reason, whether a reminder is due, the policy
  and the activity figures behind it: the workspaces the caller may see (:mod:`benchhub.access`:
  their own, a project's for its members, everyone's for admins), or one user's (403 if the
  caller may not see theirs), or one project's.
- ``GET api/workspaces.js`` — the same for the hub's home page, as a script (see below).
- ``GET api/health`` — when the last pass ran and what it saw.
- ``GET api/activity``, ``GET activity`` — the activity log (:mod:`.activity_api`).
- ``GET api/usage``, ``GET api/usage.csv``, ``GET usage`` — the usage ledger (:mod:`.usage_api`).
- ``GET /`` — a page with the workspaces, their next event and a link to the log.
"""

from __future__ import annotations

import asyncio
import json

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web

from benchhub.access import SEE, may
from benchhub.service_metrics import metrics_route
from benchhub.service_pages import ServicesMenu
from benchhub.service_web import ServiceHandler, ServicePage

from .activity_api import TEMPLATES, activity_handlers
from .ledger import Ledger
from .service import LifecycleService
from .usage_api import UsageRates, usage_handlers

__all__ = ["make_app", "remaining", "visible_schedule"]


def visible_schedule(
    entries, caller: dict, wanted: str | None, project: str | None = None
) -> list[dict]:
    """The schedule ``entries`` ``caller`` may see, sorted by user and workspace: ``wanted``'s
    only when named (403 if the caller may not see that user's), ``project``'s only when
    named, else every one the access rule lets them see (a project member sees the project's
    workspaces)."""
    if wanted is not None and not may(caller, SEE, wanted):
        raise web.HTTPError(
            403, f"user: only your own workspaces unless you are an admin, got {wanted!r}"
        )
    shown = (
        e
        for e in entries
        if (wanted is None or e["user"] == wanted)
        and (project is None or e.get("project", "") == project)
    )
    return sorted(
        (e for e in shown if may(caller, SEE, e["user"], e["workspace"], e.get("project"))),
        key=lambda e: (e["user"], e["workspace"]),
    )


class _Schedule:
    @property
    def service(self) -> LifecycleService:
        return self.settings["lifecycle"]

    def visible(self) -> list[dict]:
        wanted = self.get_query_argument("user", None) or None
        project = self.get_query_argument("project", None) or None
        return visible_schedule(self.service.schedule.values(), self.current_user, wanted, project)


class ScheduleHandler(_Schedule, ServiceHandler):
    @web.authenticated
    def get(self):
        self.write({"workspaces": self.visible()})


class ScheduleScriptHandler(_Schedule, ServiceHandler):
    """``api/workspaces.js``: the caller's schedule for the hub's home page, as a script that
    calls ``window.benchShowSchedule(data)``. A page script on the hub can load it with the
    browser's login (a same-origin script GET needs no XSRF token, unlike ``fetch``); other
    sites cannot, because the service's cookie is SameSite=Lax."""

    # the home page loads it as a <script>: the first time, HubOAuth's redirect through the
    # hub's login is what gives the browser the service's cookie
    login_redirect = True

    @web.authenticated
    def get(self):
        data = json.dumps({"workspaces": self.visible()}).replace("<", "\\u003c")
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.write(f"window.benchShowSchedule && window.benchShowSchedule({data});\n")


class HealthHandler(ServiceHandler):
    @web.authenticated
    def get(self):
        self.write(self.settings["lifecycle"].health())


def remaining(seconds: float | None) -> str:
    """``5400`` -> ``"1 h 30 min"``, ``None`` -> ``"—"``."""
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    return (f"{days} d " if days else "") + f"{rest // 60} h {rest % 60} min"


class PageHandler(_Schedule, ServicePage):
    templates = TEMPLATES

    @web.authenticated
    async def get(self):
        await self.render_page(
            "schedule.html",
            "Workspace lifecycle",
            entries=self.visible(),
            project=self.get_query_argument("project", ""),
            remaining=remaining,
            activity_url=url_path_join(self.settings["prefix"], "activity"),
            usage_url=url_path_join(self.settings["prefix"], "usage"),
        )


def make_app(
    service: LifecycleService,
    prefix: str,
    cookie_secret: bytes,
    ledger: Ledger | None = None,
    rates: UsageRates | None = None,
) -> web.Application:
    """The service's application; ``ledger`` and ``rates`` serve the usage ledger's API and
    page (:mod:`.usage_api`; without a ledger they answer 503)."""

    async def run_blocking(fn, *args):
        return await asyncio.to_thread(fn, *args)

    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/workspaces"), ScheduleHandler),
            (url_path_join(prefix, r"api/workspaces\.js"), ScheduleScriptHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            metrics_route(prefix, service.metrics.registry),
            *activity_handlers(prefix, service.activity_log, run_blocking),
            *usage_handlers(prefix, ledger, rates or UsageRates(), run_blocking),
            (prefix, PageHandler),
        ],
        lifecycle=service,
        prefix=prefix,
        cookie_secret=cookie_secret,
        services_menu=ServicesMenu.from_environment(),
    )
