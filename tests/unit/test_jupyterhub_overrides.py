"""BenchHub's assumptions about JupyterHub's internals hold for the installed JupyterHub, and
the check that guards them can fail (a JupyterHub that breaks one is named and refused)."""

from __future__ import annotations

import pytest
from jupyterhub import apihandlers, handlers
from jupyterhub.apihandlers.users import UserServerAPIHandler
from jupyterhub.handlers.login import LogoutHandler

from bench_spawner import jupyterhub_overrides
from bench_spawner.jupyterhub_overrides import incompatibilities, install_routes


def test_every_assumption_about_the_installed_jupyterhub_holds():
    assert incompatibilities() == []


def test_a_jupyterhub_whose_logout_hook_changed_is_named(monkeypatch):
    async def get(self):  # a logout that no longer calls handle_logout
        self.redirect("/")

    monkeypatch.setattr(LogoutHandler, "get", get)
    problems = incompatibilities()
    assert len(problems) == 1
    assert "LogoutHandler.handle_logout()" in problems[0]
    assert "logging out would not be noted" in problems[0]


def test_a_jupyterhub_without_a_refined_route_is_named(monkeypatch):
    routes = [r for r in apihandlers.default_handlers if r[1] is not UserServerAPIHandler]
    monkeypatch.setattr(apihandlers, "default_handlers", routes)
    monkeypatch.setattr(
        jupyterhub_overrides,
        "REFINED_ROUTES",
        tuple(
            (routes if r is jupyterhub_overrides.REFINED_ROUTES[1][0] else r, p, h)
            for r, p, h in jupyterhub_overrides.REFINED_ROUTES
        ),
    )
    assert any("UserServerAPIHandler" in p for p in incompatibilities())


def test_install_routes_refuses_a_jupyterhub_that_breaks_an_assumption(monkeypatch):
    monkeypatch.setattr(jupyterhub_overrides, "incompatibilities", lambda: ["X (needed)"])
    before = list(handlers.default_handlers)
    refused = r"cannot run with the installed JupyterHub .*X \(needed\)"
    with pytest.raises(RuntimeError, match=refused):
        install_routes([], [(r"/never", LogoutHandler)])
    assert handlers.default_handlers == before


def test_install_routes_puts_benchhub_routes_first_once(monkeypatch):
    api, pages = list(apihandlers.default_handlers), list(handlers.default_handlers)
    monkeypatch.setattr(apihandlers, "default_handlers", api)
    monkeypatch.setattr(handlers, "default_handlers", pages)

    class OurLogout(LogoutHandler):
        pass

    ours = [(r"/logout", OurLogout)]
    install_routes([], ours)
    install_routes([], ours)
    assert pages[0] == ours[0] and pages.count(ours[0]) == 1
