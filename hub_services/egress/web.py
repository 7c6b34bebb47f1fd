"""The egress service's HTTP surface (under its prefix; HubOAuth for people and tokens).

- ``GET api/health`` — proxy running or down, how many workspaces it serves, the last pass.
- ``GET api/refusals/<user>/<workspace>`` — refused hosts with counts and times, from the
  last 4 MiB of the proxy's access log (the owner or an admin; 403 otherwise).
- ``GET /`` — a page listing the caller's restricted workspaces and their refusals.
"""

from __future__ import annotations

import asyncio
import html
import json
import time

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from .service import EgressService

__all__ = ["make_app"]


class _Handler(HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> EgressService:
        return self.settings["egress"]

    def allowed(self, user_name: str) -> bool:
        user = self.current_user
        return user["name"] == user_name or user.get("admin", False)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"status": status_code, "message": message}))


class HealthHandler(_Handler):
    @web.authenticated
    async def get(self):
        service = self.service
        self.write({
            "proxy": "running" if await service.proxy.healthy() else "down",
            "workspaces": len(await asyncio.to_thread(service.state.registered)),
            "last_pass_at": service.last_pass_at,
            "last_error": service.last_error,
        })  # fmt: skip


class RefusalsHandler(_Handler):
    @web.authenticated
    async def get(self, user_name: str, workspace: str):
        if not self.allowed(user_name):
            raise web.HTTPError(403, f"only {user_name} or an admin may see these refusals")
        self.write(await asyncio.to_thread(self.service.refusals, f"{user_name}/{workspace}"))


class PageHandler(_Handler):
    @web.authenticated
    async def get(self):
        name = self.current_user["name"]
        registered = await asyncio.to_thread(self.service.state.registered)
        rows = []
        for key in sorted(k for k in registered if k.startswith(f"{name}/")):
            data = await asyncio.to_thread(self.service.refusals, key)
            cells = (
                "".join(
                    f"<tr><td>{html.escape(r['host'])}</td><td>{r['count']}</td>"
                    f"<td>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r['last']))}</td></tr>"
                    for r in data["refusals"]
                )
                or "<tr><td colspan=3>nothing refused</td></tr>"
            )
            rows.append(
                f"<h2>{html.escape(key)}</h2><table class='table'><tr><th>Refused host</th>"
                f"<th>Requests</th><th>Last (UTC)</th></tr>{cells}</table>"
            )
        healthy = await self.service.proxy.healthy()
        self.write(
            "<!doctype html><title>Egress</title><h1>Restricted workspaces</h1>"
            f"<p>Egress proxy: {'running' if healthy else 'DOWN: no outside access'}</p>"
            + ("".join(rows) or "<p>No running restricted workspace.</p>")
            + "<p>Ask an admin to add a refused host to the workspace's whitelist; it applies at"
            " the next start.</p>"
        )


def make_app(service: EgressService, prefix: str, cookie_secret: bytes) -> web.Application:
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            (url_path_join(prefix, r"api/refusals/([^/]+)/([^/]+)"), RefusalsHandler),
            (prefix, PageHandler),
        ],
        egress=service,
        cookie_secret=cookie_secret,
    )
