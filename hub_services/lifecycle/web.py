"""The lifecycle service's HTTP surface (under its prefix, HubOAuth for people and tokens).

- ``GET api/workspaces[?user=NAME]`` — each running workspace's next event (shutdown or
  restart), the time remaining, the reason, whether a reminder is due, the policy and the
  activity figures behind it. People see their own workspaces; admins any user's, or all.
- ``GET api/workspaces.js`` — the same for the hub's home page, as a script (see below).
- ``GET api/health`` — when the last pass ran and what it saw.
- ``GET api/activity``, ``GET activity`` — the activity log (:mod:`.activity_api`).
- ``GET /`` — a page with the user's workspaces, their next event and a link to the log.
"""

from __future__ import annotations

import asyncio
import html
import json

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from .access import sees_everyone
from .activity_api import activity_handlers
from .service import LifecycleService

__all__ = ["make_app"]


class _Handler(HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> LifecycleService:
        return self.settings["lifecycle"]

    def visible(self) -> list[dict]:
        """Schedule entries the caller may see, filtered by ``?user=`` (403 for another
        user's unless admin)."""
        caller = self.current_user
        wanted = self.get_query_argument("user", None)
        if not sees_everyone(caller):
            if wanted not in (None, caller["name"]):
                raise web.HTTPError(403, f"user: only your own workspaces, got {wanted!r}")
            wanted = caller["name"]
        entries = self.service.schedule.values()
        return sorted(
            (e for e in entries if wanted is None or e["user"] == wanted),
            key=lambda e: (e["user"], e["workspace"]),
        )

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"status": status_code, "message": message}))


class ScheduleHandler(_Handler):
    @web.authenticated
    def get(self):
        self.write({"workspaces": self.visible()})


class ScheduleScriptHandler(_Handler):
    """``api/workspaces.js``: the caller's schedule for the hub's home page, as a script that
    calls ``window.benchShowSchedule(data)``. A page script on the hub can load it with the
    browser's login (a same-origin script GET needs no XSRF token, unlike ``fetch``); other
    sites cannot, because the service's cookie is SameSite=Lax."""

    @web.authenticated
    def get(self):
        data = json.dumps({"workspaces": self.visible()}).replace("<", "\\u003c")
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.write(f"window.benchShowSchedule && window.benchShowSchedule({data});\n")


class HealthHandler(_Handler):
    @web.authenticated
    def get(self):
        self.write(self.service.health())


def _remaining(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    return (f"{days} d " if days else "") + f"{rest // 60} h {rest % 60} min"


class PageHandler(_Handler):
    @web.authenticated
    def get(self):
        rows = "".join(
            f"<tr><td>{html.escape(e['user'])}</td><td>{html.escape(e['workspace'])}</td>"
            f"<td>{html.escape(e.get('next_event') or e.get('policy_error', ''))}</td>"
            f"<td>{html.escape(e.get('next_event_at') or '')}</td>"
            f"<td>{_remaining(e.get('remaining_seconds'))}</td>"
            f"<td>{html.escape(e.get('reason', ''))}</td></tr>"
            for e in self.visible()
        )
        activity = url_path_join(self.settings["prefix"], "activity")
        self.write(
            "<!doctype html><title>Workspace lifecycle</title>"
            '<link rel="stylesheet" href="/hub/static/css/style.min.css">'
            "<div class='container'><h1>Running workspaces</h1>"
            "<table class='table'><tr><th>User</th><th>Workspace</th><th>Next event</th>"
            "<th>At (UTC)</th><th>Remaining</th><th>Why</th></tr>"
            + (rows or "<tr><td colspan=6>No running workspace.</td></tr>")
            + f"</table><p><a href='{activity}'>Activity log</a></p>"
            "<p>Every workspace restarts 30 days after it started, for security, and stops when"
            " nobody used it for 7 days. Change a workspace's shutdown timer, keep-until time"
            " and reminders from the hub's home page (or the API) while it runs.</p></div>"
        )


def make_app(service: LifecycleService, prefix: str, cookie_secret: bytes) -> web.Application:
    async def run_blocking(fn, *args):
        return await asyncio.to_thread(fn, *args)

    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/workspaces"), ScheduleHandler),
            (url_path_join(prefix, r"api/workspaces\.js"), ScheduleScriptHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            *activity_handlers(prefix, service.activity_log, run_blocking),
            (prefix, PageHandler),
        ],
        lifecycle=service,
        prefix=prefix,
        cookie_secret=cookie_secret,
    )
