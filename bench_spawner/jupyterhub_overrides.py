"""Where BenchHub relies on JupyterHub beyond its documented hooks: all of it, in one place.

Elsewhere BenchHub uses JupyterHub's public hooks: ``Spawner.handler`` (the requesting
handler, set for each start) says who started a workspace; ``options_from_form`` and
``apply_user_options`` check and store the options; ``LogoutHandler.handle_logout`` notes a
visitor's exit; BenchHub's handlers check JupyterHub's scopes with ``needs_scope`` and then the
workspace name, the options and the delete rule before calling JupyterHub's own method. Two
things have no public hook, and they are here:

1. **Refining JupyterHub's own routes.** ``JupyterHub.extra_handlers`` are added after
   JupyterHub's routes and Tornado takes the first route that matches, so
   :func:`install_routes` puts BenchHub's handlers in front of the lists that
   ``JupyterHub.init_handlers`` reads (``jupyterhub.apihandlers.default_handlers`` and
   ``jupyterhub.handlers.default_handlers``).
2. **Noticing a completed OAuth login** (an admin entering someone else's workspace):
   :class:`ObservedOAuthAuthorizeHandler` extends ``send_oauth_response``, which JupyterHub's
   authorization handler calls exactly when it grants a code, with or without its
   confirmation page.

:func:`incompatibilities` states every assumption these and the hooks above make that the
installed JupyterHub breaks; :func:`install_routes` refuses to set up a hub for which the list
is not empty (the hub does not start, and says why), and the unit test
``tests/unit/test_jupyterhub_overrides.py`` fails with the same sentences.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import jupyterhub
from jupyterhub import apihandlers, handlers
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.shares import (
    ServerShareAPIHandler,
    ServerShareCodeAPIHandler,
    UserShareAPIHandler,
)
from jupyterhub.apihandlers.users import SelfAPIHandler, UserServerAPIHandler
from jupyterhub.app import JupyterHub
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.handlers.pages import AcceptShareHandler, SpawnHandler
from jupyterhub.spawner import Spawner
from jupyterhub.user import User

__all__ = [
    "REFINED_ROUTES",
    "ObservedOAuthAuthorizeHandler",
    "incompatibilities",
    "install_routes",
]

TESTED_WITH = "6.1"

# (JupyterHub's route list, the route, JupyterHub's handler for it) for every route BenchHub
# refines with a subclass of that handler
REFINED_ROUTES = (
    (apihandlers.default_handlers, r"/api/oauth2/authorize", OAuthAuthorizeHandler),
    (apihandlers.default_handlers, r"/api/users/([^/]+)/servers/([^/]*)", UserServerAPIHandler),
    (handlers.default_handlers, r"/logout", LogoutHandler),
    (handlers.default_handlers, r"/spawn/([^/]+)", SpawnHandler),
    (handlers.default_handlers, r"/spawn/([^/]+)/([^/]+)", SpawnHandler),
    # sharing (bench_spawner/sharing.py): the rule at share, accept and entry; revocation
    (apihandlers.default_handlers, r"/api/user", SelfAPIHandler),
    (apihandlers.default_handlers, r"/api/shares/([^/]+)/([^/]*)", ServerShareAPIHandler),
    (
        apihandlers.default_handlers,
        r"/api/users/([^/]+)/shared/([^/]+)/([^/]*)",
        UserShareAPIHandler,
    ),
    (apihandlers.default_handlers, r"/api/share-codes/([^/]+)/([^/]*)", ServerShareCodeAPIHandler),
    (handlers.default_handlers, r"/accept-share", AcceptShareHandler),
)


class ObservedOAuthAuthorizeHandler(OAuthAuthorizeHandler):
    """JupyterHub's OAuth authorization endpoint that calls :meth:`authorized` each time it
    granted an authorization code to a client for the current user."""

    def send_oauth_response(self, headers, body, status):
        super().send_oauth_response(headers, body, status)
        location = next((v for k, v in headers.items() if k.lower() == "location"), "")
        if 300 <= status < 400 and "code" in parse_qs(urlparse(location).query):
            self.authorized(self.get_argument("client_id", ""))

    def authorized(self, client_id: str) -> None:
        """The current user was just granted access to ``client_id`` (e.g. a server's client,
        ``jupyterhub-user-<name>-<server>``). Override; the default does nothing."""


def install_routes(api_routes: list[tuple], page_routes: list[tuple]) -> None:
    """Put BenchHub's API and page routes in front of JupyterHub's own, once (idempotent).

    Raises :class:`RuntimeError` listing :func:`incompatibilities` when the installed
    JupyterHub breaks an assumption of BenchHub's, so such a hub does not start.
    """
    problems = incompatibilities()
    if problems:
        raise RuntimeError(
            f"BenchHub cannot run with the installed JupyterHub {jupyterhub.__version__} "
            f"(it is tested with {TESTED_WITH}): " + "; ".join(problems) + ". Install "
            f"jupyterhub {TESTED_WITH}, or adapt bench_spawner/jupyterhub_overrides.py."
        )
    for routes, ours in [
        (apihandlers.default_handlers, api_routes),
        (handlers.default_handlers, page_routes),
    ]:
        if not any(route in routes for route in ours):
            routes[:0] = ours


@dataclass(frozen=True)
class _Assumption:
    what: str  # what BenchHub assumes about JupyterHub
    why: str  # what breaks without it
    holds: object  # () -> bool


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def _source(function) -> str:
    return inspect.getsource(function)


def _before(text: str, first: str, then: str) -> bool:
    return first in text and then in text and text.index(first) < text.index(then)


def _jupyterhub_route(routes: list, pattern: str, handler: type) -> bool:
    return any(route[0] == pattern and route[1] is handler for route in routes)


def _assumptions() -> list[_Assumption]:
    routes = [
        _Assumption(
            f"JupyterHub serves {pattern} with {handler.__name__}",
            "BenchHub's refinement of that route would answer a route JupyterHub no longer has",
            lambda r=routes, p=pattern, h=handler: _jupyterhub_route(r, p, h),
        )
        for routes, pattern, handler in REFINED_ROUTES
    ]
    init, spawn = _source(JupyterHub.init_handlers), _source(User.spawn)
    return [
        *routes,
        _Assumption(
            "JupyterHub.init_handlers adds handlers.default_handlers and "
            "apihandlers.default_handlers before extra_handlers",
            "BenchHub's routes would not come first, so JupyterHub's would answer",
            lambda: (
                _before(init, "handlers.default_handlers", "self.extra_handlers")
                and _before(init, "apihandlers.default_handlers", "self.extra_handlers")
            ),
        ),
        _Assumption(
            "UserServerAPIHandler.post/put/patch/delete take (user_name, server_name)",
            "the workspace API's validation, edit and delete rules wrap these methods",
            lambda: all(
                _parameters(getattr(UserServerAPIHandler, m))[:3]
                == ["self", "user_name", "server_name"]
                for m in ("post", "put", "patch", "delete")
            ),
        ),
        _Assumption(
            "SpawnHandler.get/post take (user_name, server_name)",
            "the spawn page's name rule wraps these methods",
            lambda: all(
                _parameters(getattr(SpawnHandler, m))[:3] == ["self", "user_name", "server_name"]
                for m in ("get", "post")
            ),
        ),
        _Assumption(
            "BaseHandler.get_current_user_named_server_limit() exists",
            "the per-user workspace limit is checked with it before options are validated",
            lambda: inspect.iscoroutinefunction(BaseHandler.get_current_user_named_server_limit),
        ),
        _Assumption(
            "LogoutHandler.handle_logout() is the custom logout action",
            "a visitor logging out would not be noted as having left",
            lambda: (
                _parameters(LogoutHandler.handle_logout) == ["self"]
                and "await self.handle_logout()" in _source(LogoutHandler.get)
            ),
        ),
        _Assumption(
            "OAuthAuthorizeHandler calls send_oauth_response(headers, body, status) when it "
            "grants a code (from get, through _complete_login, and from post)",
            "an admin entering someone else's workspace would not be journaled",
            lambda: (
                _parameters(OAuthAuthorizeHandler.send_oauth_response)
                == ["self", "headers", "body", "status"]
                and "self.send_oauth_response(" in _source(OAuthAuthorizeHandler.post)
                and "self._complete_login(" in _source(OAuthAuthorizeHandler.get)
                and "self.send_oauth_response(" in _source(OAuthAuthorizeHandler._complete_login)
            ),
        ),
        _Assumption(
            "User.spawn sets spawner.handler to the requesting handler before "
            "apply_user_options and start()",
            "a start's actor (who started) and the options the request already checked "
            "come from spawner.handler",
            lambda: (
                "handler" in Spawner.class_traits()
                and _before(spawn, "spawner.handler = handler", "spawner._run_apply_user_options(")
                and _before(spawn, "spawner.handler = handler", "spawner.start()")
            ),
        ),
        _Assumption(
            "stop and delete act on the spawner object in user.spawners[server_name]",
            "a stop's or delete's actor is noted on that object",
            lambda: (
                "user.spawners[server_name]" in _source(BaseHandler.stop_single_user)
                and "spawner = user.spawners[server_name]" in _source(UserServerAPIHandler.delete)
                and "self.spawners[server_name]" in _source(User.stop)
            ),
        ),
    ]


def incompatibilities() -> list[str]:
    """Each assumption BenchHub makes about JupyterHub that the installed one breaks, as a
    sentence (what is assumed, and what breaks without it); [] when all hold."""
    broken = []
    for assumption in _assumptions():
        try:
            holds = assumption.holds()
        except (AttributeError, OSError, TypeError, ValueError):  # renamed, or no source
            holds = False
        if not holds:
            broken.append(f"{assumption.what} (needed because otherwise {assumption.why})")
    return broken
