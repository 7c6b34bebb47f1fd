"""The services' web layer (benchhub.service_web, benchhub.service_pages) on a real tornado server.

Only the hub is stubbed: ``HeaderAuth`` is JupyterHub's own ``HubOAuth`` whose ``get_user``
reads the caller's model from an ``X-Test-Caller`` header instead of asking the hub, so
HubOAuth's access check (the scope ``access:services!service=demo``), its login redirect and
everything after it are the real code. The hub itself is exercised by the integration, security
and browser tests.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from jupyterhub.services.auth import HubOAuth
from tornado import httpserver, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpclient import HTTPRequest as Request
from tornado.testing import bind_unused_port

from benchhub.access import CHANGE, SEE
from benchhub.display_time import display_time
from benchhub.service_pages import MenuEntry, PageTemplates, ServicesMenu, hub_page_context
from benchhub.service_web import NO_CREDENTIALS, ApiError, ServiceHandler, ServicePage

ACCESS = "access:services!service=demo"
ALICE = {"kind": "user", "name": "alice", "admin": False, "scopes": [ACCESS]}
BOB = {"kind": "user", "name": "bob", "admin": False, "scopes": [ACCESS]}
ROOT = {"kind": "user", "name": "root", "admin": True, "scopes": [ACCESS]}
OUTSIDER = {"kind": "service", "name": "other-service", "scopes": ["read:servers"]}
MENU = [MenuEntry("demo", "/services/demo/"), MenuEntry("clusters", "/services/clusters/")]


class HeaderAuth(HubOAuth):
    def get_user(self, handler, *, sync=True):
        raw = handler.request.headers.get("X-Test-Caller")
        return json.loads(raw) if raw else None


AUTH = HeaderAuth(access_scopes={ACCESS}, api_token="unused")


class FakeHub:
    """The hub's ``GET /hub/api/services``, or a refusal (the service lacks the scopes)."""

    def __init__(self, services: dict | None):
        self.services = services
        self.calls = 0

    async def request(self, method, path):
        self.calls += 1
        if self.services is None:
            raise HTTPClientError(403, "Forbidden")
        return self.services


class ItemsApi(ServiceHandler):
    _hub_auth = AUTH

    @web.authenticated
    def get(self, owner):
        self.require(SEE, owner, what=f"{owner}'s items")
        fail = self.get_query_argument("fail", "")
        if fail == "api":
            raise ApiError(400, "colour: one of red, blue", errors=[{"field": "colour"}])
        if fail == "http":
            raise web.HTTPError(404, "item %s: no such item", "x%")
        if fail == "crash":
            raise RuntimeError("secret: /var/lib/benchhub/state")
        self.write({"owner": owner})

    @web.authenticated
    def post(self, owner):
        self.require(CHANGE, owner)
        self.write({"changed": owner})


def page_handler(templates: PageTemplates) -> type:
    class ItemsPage(ServicePage):
        _hub_auth = AUTH

        @web.authenticated
        async def get(self, owner):
            self.require(SEE, owner, what=f"{owner}'s items")
            await self.render_page(
                "items.html",
                "Items",
                owner=owner,
                when=datetime(2026, 11, 30, 7, 4, 31, 123456, tzinfo=UTC),
            )

    ItemsPage.templates = templates
    return ItemsPage


@pytest.fixture
async def server(tmp_path):
    (tmp_path / "items.html").write_text(
        '{% extends "page.html" %}{% block content %}<h1 id="items">Items of {{ owner }}</h1>'
        "<p id=when>{{ when | time }}</p>{% endblock %}"
    )
    menu = ServicesMenu(
        FakeHub(
            {
                "demo": {
                    "name": "demo",
                    "url": "http://127.0.0.1:1",
                    "prefix": "/services/demo/",
                    "display": True,
                }
            }
        ),
        MenuEntry("demo", "/services/demo/"),
    )
    app = web.Application(
        [
            (r"/services/demo/api/items/([^/]+)", ItemsApi),
            (r"/services/demo/items/([^/]+)", page_handler(PageTemplates(tmp_path))),
        ],
        cookie_secret=b"0" * 32,
        services_menu=menu,
    )
    sock, port = bind_unused_port()
    http = httpserver.HTTPServer(app)
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}/services/demo/"
    http.stop()
    await http.close_all_connections()


async def fetch(url, caller=None, method="GET", body=None):
    headers = {"X-Test-Caller": json.dumps(caller)} if caller else {}
    request = Request(url, method=method, headers=headers, body=body, follow_redirects=False)
    try:
        return await AsyncHTTPClient().fetch(request)
    except HTTPClientError as error:
        return error.response


def as_json(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.body)


# --- the API base -------------------------------------------------------------------------------


async def test_an_api_call_without_credentials_is_a_json_403_not_a_redirect_to_the_login(server):
    response = await fetch(server + "api/items/alice")
    assert response.code == 403 and "Location" not in response.headers
    assert as_json(response) == {"status": 403, "message": NO_CREDENTIALS}
    response = await fetch(server + "api/items/alice", method="POST", body="{}")
    assert response.code == 403
    assert as_json(response) == {"status": 403, "message": NO_CREDENTIALS}
    # and with a login, the same call is answered
    response = await fetch(server + "api/items/alice", ALICE)
    assert response.code == 200 and as_json(response) == {"owner": "alice"}


async def test_a_page_without_credentials_sends_the_browser_to_the_hubs_login(server):
    response = await fetch(server + "items/alice")
    assert response.code == 302
    assert response.headers["Location"].startswith("/hub/api/oauth2/authorize?")


async def test_a_caller_without_access_to_the_service_gets_a_403_naming_the_scope(server):
    response = await fetch(server + "api/items/alice", OUTSIDER)
    assert response.code == 403
    assert as_json(response)["message"] == (
        f"service other-service may not use this service: it needs {ACCESS}"
    )
    page = await fetch(server + "items/alice", OUTSIDER)
    assert page.code == 403 and b"not allowed" in page.body


async def test_another_users_things_are_a_403_saying_who_may_and_which_scope_a_token_needs(
    server,
):
    for method, body, action, scope in (
        ("GET", None, "see", "read:servers"),
        ("POST", "{}", "change", "servers"),
    ):
        response = await fetch(server + "api/items/alice", BOB, method, body)
        assert response.code == 403
        assert as_json(response)["message"].startswith(f"only alice or an admin may {action} ")
        assert as_json(response)["message"].endswith(f"a token needs the scope {scope}!user=alice")
    for caller in (ALICE, ROOT):  # the owner and an admin
        response = await fetch(server + "api/items/alice", caller, "POST", "{}")
        assert response.code == 200 and as_json(response) == {"changed": "alice"}


async def test_errors_are_json_with_status_message_and_the_errors_extra_fields(server):
    response = await fetch(server + "api/items/alice?fail=api", ALICE)
    assert response.code == 400
    assert as_json(response) == {
        "status": 400,
        "message": "colour: one of red, blue",
        "errors": [{"field": "colour"}],
    }
    response = await fetch(server + "api/items/alice?fail=http", ALICE)
    assert response.code == 404
    assert as_json(response) == {"status": 404, "message": "item x%: no such item"}


async def test_a_failure_inside_is_a_500_that_does_not_show_its_details(server):
    response = await fetch(server + "api/items/alice?fail=crash", ALICE)
    assert response.code == 500
    assert as_json(response) == {"status": 500, "message": "Internal Server Error"}


# --- pages ----------------------------------------------------------------------------------------


def navbar_links(body: bytes) -> dict[str, str]:
    nav = body.decode().split('<nav class="navbar', 1)[1].split("</nav>", 1)[0]
    return {
        text.strip(): href
        for href, text in re.findall(
            r'<a[^>]*href="([^"]+)"[^>]*>\s*(?:<i[^>]*></i>)?\s*([^<]*)</a>', nav
        )
    }


async def test_a_page_has_the_hubs_navbar_the_services_menu_and_times_for_people(server):
    response = await fetch(server + "items/alice", ALICE)
    assert response.code == 200
    body = response.body.decode()
    assert '<h1 id="items">Items of alice</h1>' in body
    links = navbar_links(response.body)
    assert links["Home"] == "/hub/home" and links["Token"] == "/hub/token"
    assert links["demo"] == "/services/demo/" and links["Logout"] == "/hub/logout"
    assert "Admin" not in links
    assert '<span class="me-1">alice</span>' in body
    assert 'href="/hub/static/css/style.min.css"' in body
    assert "<p id=when>2026-11-30 07:04 UTC</p>" in body
    admin = await fetch(server + "items/alice", ROOT)
    assert navbar_links(admin.body)["Admin"] == "/hub/admin"


async def test_a_refused_page_is_the_hubs_page_with_the_reason(server):
    response = await fetch(server + "items/alice", BOB)
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "only alice or an admin may see alice&#39;s items" in response.body.decode()
    assert navbar_links(response.body)["Home"] == "/hub/home"


def test_a_user_name_cannot_end_the_pages_script():
    context = hub_page_context({"kind": "user", "name": 'a"</script>'}, "/hub/", MENU, "x", "/l")
    page = PageTemplates().render(
        "error.html",
        {**context, "page_title": "t", "status_code": 400, "reason": "Bad", "message": "m"},
    )
    script = page.split("window.jhdata = {", 1)[1].split("};", 1)[0]
    assert "</script>" not in script and 'user: "a\\"\\u003c/script>"' in script


def test_a_service_with_a_hub_prefix_links_to_that_hub():
    context = hub_page_context(ALICE, "/bench/hub/", MENU, "x", "/l")
    assert context["base_url"] == "/bench/hub/" and context["prefix"] == "/bench/"
    assert context["static_url"]("css/style.min.css") == "/bench/hub/static/css/style.min.css"
    assert context["logout_url"] == "/bench/hub/logout"


# --- the Services menu ----------------------------------------------------------------------------


async def test_the_services_menu_lists_the_hubs_displayed_services_and_is_kept_a_while():
    hub = FakeHub(
        {
            "lifecycle": {
                "name": "lifecycle",
                "url": "http://127.0.0.1:1",
                "display": True,
                "prefix": "/services/lifecycle/",
            },
            "hidden": {
                "name": "hidden",
                "url": "http://127.0.0.1:2",
                "display": False,
                "prefix": "/services/hidden/",
            },
            "tester": {"name": "tester", "url": "", "display": True, "prefix": ""},
        }
    )
    menu = ServicesMenu(hub, MenuEntry("lifecycle", "/services/lifecycle/"), ttl=60)
    assert await menu.entries() == [MenuEntry("lifecycle", "/services/lifecycle/")]
    await menu.entries()
    assert hub.calls == 1


async def test_without_the_scope_to_list_services_the_menu_shows_this_service():
    menu = ServicesMenu(FakeHub(None), MenuEntry("clusters", "/services/clusters/"), ttl=0)
    assert await menu.entries() == [MenuEntry("clusters", "/services/clusters/")]


# --- times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime(2026, 11, 30, 7, 4, 59, 999999, tzinfo=UTC), "2026-11-30 07:04 UTC"),
        (datetime(2026, 11, 30, 8, 4, tzinfo=timezone(timedelta(hours=1))), "2026-11-30 07:04 UTC"),
        (datetime(2026, 11, 30, 7, 4, 31), "2026-11-30 07:04 UTC"),  # naive: stored as UTC
        ("2026-11-30T07:04:31.123456+00:00", "2026-11-30 07:04 UTC"),
        ("2026-11-30T07:04:31Z", "2026-11-30 07:04 UTC"),
        (1796022271.5, "2026-11-30 07:04 UTC"),
        (None, "—"),
        ("", "—"),
        ("not a time", "—"),
    ],
)
def test_times_for_people_are_utc_to_the_minute(value, shown):
    assert display_time(value) == shown
