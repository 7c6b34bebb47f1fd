"""The egress service's HTTP surface (under its prefix; HubOAuth for people and tokens).

- ``GET api/health`` — proxy running or down, how many workspaces it serves, the last pass.
- ``GET api/refusals/<user>/<workspace>`` — refused hosts with counts and times, from the
  last 4 MiB of the proxy's access log.
- ``GET /[?user=NAME]`` — a page listing the user's (by default the caller's) restricted
  workspaces and their refusals.

Who may see a user's refusals is the one access rule (:mod:`benchhub.access`: the owner, an
admin, a token with ``read:servers`` for that user; 403 otherwise). Errors are JSON
``{"status": ..., "message": ...}`` (:mod:`benchhub.service_web`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web

from benchhub.access import SEE
from benchhub.service_metrics import metrics_route
from benchhub.service_pages import PageTemplates, ServicesMenu
from benchhub.service_web import ServiceHandler, ServicePage

from .service import EgressService

__all__ = ["make_app"]

TEMPLATES = PageTemplates(Path(__file__).parent / "templates")


class _Egress:
    @property
    def service(self) -> EgressService:
        return self.settings["egress"]

    def check(self, user: str, workspace: str | None = None) -> None:
        self.require(SEE, user, workspace, what=f"the refusals of {user}'s workspaces")


class HealthHandler(_Egress, ServiceHandler):
    @web.authenticated
    async def get(self):
        service = self.service
        last = service.last_pass_at  # epoch seconds; ISO 8601 as every service reports it
        self.write(
            {
                "proxy": "running" if await service.proxy.healthy() else "down",
                "workspaces": len(await asyncio.to_thread(service.state.registered)),
                "last_pass_at": datetime.fromtimestamp(last, UTC).isoformat() if last else None,
                "last_error": service.last_error,
            }
        )


class RefusalsHandler(_Egress, ServiceHandler):
    @web.authenticated
    async def get(self, user_name: str, workspace: str):
        self.check(user_name, workspace)
        self.write(await asyncio.to_thread(self.service.refusals, f"{user_name}/{workspace}"))


class PageHandler(_Egress, ServicePage):
    templates = TEMPLATES

    @web.authenticated
    async def get(self):
        user = self.get_query_argument("user", None) or self.current_user["name"]
        self.check(user)
        registered = await asyncio.to_thread(self.service.state.registered)
        workspaces = [
            await asyncio.to_thread(self.service.refusals, key)
            for key in sorted(k for k in registered if k.startswith(f"{user}/"))
        ]
        await self.render_page(
            "egress.html",
            "Restricted workspaces",
            owner=user,
            own=user == self.current_user["name"],
            workspaces=workspaces,
            proxy_running=await self.service.proxy.healthy(),
        )


def make_app(service: EgressService, prefix: str, cookie_secret: bytes) -> web.Application:
    return web.Application(
        [
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            metrics_route(prefix, service.metrics.registry),
            (url_path_join(prefix, r"api/refusals/([^/]+)/([^/]+)"), RefusalsHandler),
            (prefix, PageHandler),
        ],
        egress=service,
        prefix=prefix,
        cookie_secret=cookie_secret,
        services_menu=ServicesMenu.from_environment(),
    )
