"""The service pages' look: JupyterHub's own page, navbar included, around each service's content.

Every service page is a Jinja template that extends ``page.html`` (in ``benchhub/templates``),
which extends the hub's ``page.html`` (as ``templates/page.html``, the name the hub's own
templates use for it). The hub serves the stylesheet, scripts and logo under its prefix
(``/hub/static/...``, ``/hub/logo``), so a service page looks and behaves like the hub's:
logo, Home, Token, Admin (for admins), the Services menu, the user's name and Logout.

:func:`hub_page_context` is the pure part: the variables the hub's template reads, from the
caller and the hub's URLs. :class:`ServicesMenu` reads the hub's displayed services.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.utils import url_path_join

from .display_time import display_time
from .hub_client import HubClient

__all__ = ["HUB_TEMPLATES", "MenuEntry", "PageTemplates", "ServicesMenu", "hub_page_context"]

log = logging.getLogger(__name__)

# the hub's own templates (page.html: head, navbar, scripts), as the hub itself finds them
HUB_TEMPLATES = Path(DATA_FILES_PATH) / "templates"
CORE_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class MenuEntry:
    """One entry of the Services menu (the attributes the hub's template reads)."""

    name: str
    href: str


def hub_page_context(
    caller: Mapping | None,
    hub_prefix: str,
    services: Sequence[MenuEntry],
    xsrf_token: str,
    login_url: str,
    hub_host: str = "",
) -> dict:
    """The variables JupyterHub's ``page.html`` reads, for a page shown to ``caller`` (the
    HubOAuth model, None when nobody is logged in). ``hub_prefix`` is the hub's URL prefix
    (``/hub/``), ``hub_host`` its origin when the hub runs on another domain."""
    base_url = hub_host + hub_prefix
    person = caller if caller and caller.get("kind") == "user" else None
    admin = bool(person and (person.get("admin") is True or "admin-ui" in person.get("scopes", ())))
    user = None
    if person:
        # like the hub's User.json_escaped_name, and no "</script>" out of a name
        escaped = json.dumps(person["name"])[1:-1].replace("<", "\\u003c")
        user = {"name": person["name"], "json_escaped_name": escaped}

    def static_url(path: str, include_version: bool = True) -> str:
        return url_path_join(base_url, "static", path)

    return {
        "base_url": base_url,
        "prefix": hub_prefix.removesuffix("hub/") or "/",
        "logo_url": "",
        "static_url": static_url,
        "version_hash": "",
        "user": user,
        "parsed_scopes": {"admin-ui"} if admin else set(),
        "admin_access": admin,
        "no_spawner_check": True,  # a service knows nothing of the user's spawner
        "services": list(services),
        "login_url": login_url,
        "logout_url": url_path_join(base_url, "logout"),
        "xsrf_token": xsrf_token,
        "announcement": None,
    }


class PageTemplates:
    """The Jinja templates of one service's pages: its own ``directory`` first, then the core's
    (``page.html``, ``error.html``), then the hub's own under ``templates/``. Autoescaped; an
    undefined variable is an error (a page never shows a blank where a value belongs). The
    filter ``time`` shows a time as :func:`~benchhub.display_time.display_time` does."""

    def __init__(self, directory: Path | None = None):
        search = [str(directory)] if directory else []
        search.append(str(CORE_TEMPLATES))
        hub = jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader(str(HUB_TEMPLATES))})
        self.environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(search), hub]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.environment.filters["time"] = display_time

    def render(self, name: str, context: Mapping) -> str:
        """Template ``name`` with ``context`` (a :func:`hub_page_context` and the page's own
        variables, ``page_title`` among them)."""
        return self.environment.get_template(name).render(context)


class ServicesMenu:
    """The hub's Services menu: services with a URL and ``display`` on, as the hub's pages list
    them (the hub also hides those the user may not access; every BenchHub user may access
    every BenchHub service). Read with the service's own token (``GET /hub/api/services``,
    which needs the scopes ``list:services`` and ``read:services``), kept ``ttl`` seconds.
    Without those scopes, or while the hub does not answer, the menu lists this service only.
    """

    def __init__(self, hub: HubClient, this: MenuEntry | None, ttl: float = 60):
        self.hub = hub
        self.this = this
        self.ttl = ttl
        self._entries: list[MenuEntry] = [this] if this else []
        self._read_at: float | None = None
        self._warned = False

    @classmethod
    def from_environment(cls) -> ServicesMenu:
        """The menu of the service the hub started (``JUPYTERHUB_SERVICE_NAME`` and
        ``_PREFIX``), read with its token (``JUPYTERHUB_API_URL``, ``_TOKEN``)."""
        name = os.environ.get("JUPYTERHUB_SERVICE_NAME")
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        return cls(HubClient(), MenuEntry(name, prefix) if name and prefix else None)

    def cached(self) -> list[MenuEntry]:
        """The entries last read (for error pages, which cannot wait for the hub)."""
        return list(self._entries)

    async def entries(self) -> list[MenuEntry]:
        """The menu, read again from the hub once ``ttl`` seconds have passed."""
        if self._read_at is not None and time.monotonic() - self._read_at < self.ttl:
            return self.cached()
        self._read_at = time.monotonic()
        try:
            services = await self.hub.request("GET", "services")
        except Exception as error:  # the menu is a convenience: the page is shown anyway
            if not self._warned:
                log.warning(
                    "the Services menu lists only this service: the hub refused the list of "
                    "services (%s); give the service's role the scopes list:services and "
                    "read:services",
                    error,
                )
                self._warned = True
            return self.cached()
        self._entries = [
            MenuEntry(model["name"], model.get("prefix") or f"/services/{model['name']}/")
            for model in services.values()
            if model.get("url") and model.get("display", True)
        ]
        return self.cached()
