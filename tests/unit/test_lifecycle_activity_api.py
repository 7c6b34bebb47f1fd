"""The activity API and page, served by a real tornado server over a real SQLite store.

Only the hub's authentication is stubbed: the handlers are subclassed so ``get_current_user``
returns the user model sent in an ``X-Test-Caller`` header instead of asking the hub. That
part is JupyterHub's own ``HubOAuthenticated``, which the integration tests exercise against
a real hub; everything after it (validation, scoping to the caller, queries, rendering) is
the code under test here.
"""

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import urlencode

import pytest
from tornado import httpserver, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.testing import bind_unused_port

from hub_services.lifecycle.activity_api import activity_handlers
from hub_services.lifecycle.activity_log import ActivityLog

PREFIX = "/services/lifecycle/"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
ADMIN = {"kind": "user", "name": "root", "admin": True}
ALICE = {"kind": "user", "name": "alice", "admin": False}
SERVICE = {"kind": "service", "name": "reporter", "admin": True, "scopes": ["read:users"]}
MONITOR = {"kind": "service", "name": "monitor", "scopes": ["list:users", "read:servers"]}


class StubbedHubAuth:
    def get_current_user(self):
        caller = self.request.headers.get("X-Test-Caller")
        return json.loads(caller) if caller else None


def entry(at, user, workspace, action, description="", uid=None, project=""):
    return {
        "project": project,
        "uid": uid or uuid.uuid4().hex,
        "at": at,
        "user": user,
        "workspace": workspace,
        "actor": user,
        "action": action,
        "description": description or f"{action} {workspace}",
        "fields": {"n": 1},
    }


@pytest.fixture
def store(tmp_path):
    log = ActivityLog(f"sqlite:///{tmp_path / 'activity.sqlite'}")
    log.append_many(
        [
            entry(T0, "alice", "ws1", "created", uid="a1"),
            entry(T0 + H, "alice", "ws1", "started", uid="a2"),
            entry(T0 + 2 * H, "alice", "ws2", "started", uid="a3"),
            entry(T0 + 3 * H, "bob", "ws1", "started", uid="b1", project="genomics"),
            entry(
                T0 + 4 * H,
                "bob",
                "ws1",
                "stopped",
                "<script>alert(1)</script>",
                uid="b2",
                project="genomics",
            ),
        ]
    )
    yield log
    log.close()


@pytest.fixture
async def server(store):
    """The handlers on a real server; yields ``(base_url, blocking_calls)``."""
    calls = []

    def run_blocking(fn, *args):
        calls.append(fn)
        return asyncio.to_thread(fn, *args)

    routes = [
        (pattern, type(f"Stubbed{handler.__name__}", (StubbedHubAuth, handler), {}), kwargs)
        for pattern, handler, kwargs in activity_handlers(PREFIX, store, run_blocking)
    ]
    sock, port = bind_unused_port()
    http = httpserver.HTTPServer(web.Application(routes, cookie_secret=b"0" * 32))
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}{PREFIX}", calls
    http.stop()
    await http.close_all_connections()


async def fetch(url, caller=None, **params):
    headers = {"X-Test-Caller": json.dumps(caller)} if caller else {}
    query = f"?{urlencode(params)}" if params else ""
    try:
        return await AsyncHTTPClient().fetch(url + query, headers=headers, follow_redirects=False)
    except HTTPClientError as error:
        return error.response


async def api(server, caller, **params):
    response = await fetch(server[0] + "api/activity", caller, **params)
    return response.code, json.loads(response.body)


def uids(body):
    return [e["uid"] for e in body["entries"]]


# --- API ------------------------------------------------------------------------------------


async def test_an_admin_sees_everyones_activity_newest_first(server):
    code, body = await api(server, ADMIN)
    assert code == 200
    assert uids(body) == ["b2", "b1", "a3", "a2", "a1"]
    assert body["total"] == 5 and body["offset"] == 0 and body["limit"] == 100
    assert body["entries"][-1] == {
        "uid": "a1",
        "at": "2025-03-01T08:00:00+00:00",
        "user": "alice",
        "workspace": "ws1",
        "actor": "alice",
        "action": "created",
        "description": "created ws1",
        "fields": {"n": 1},
        "project": "",
    }
    assert len(server[1]) == 1, "the query runs through the service's run_blocking"


async def test_a_user_sees_only_their_own_activity(server):
    code, body = await api(server, ALICE)
    assert code == 200 and uids(body) == ["a3", "a2", "a1"]
    code, body = await api(server, ALICE, user="alice", workspace="ws1")
    assert code == 200 and uids(body) == ["a2", "a1"]


async def test_a_project_member_sees_what_the_projects_workspaces_did(server):
    member = {**ALICE, "groups": ["genomics"]}
    code, body = await api(server, member, project="genomics")
    assert code == 200 and uids(body) == ["b2", "b1"]
    assert {e["project"] for e in body["entries"]} == {"genomics"}
    code, body = await api(server, ADMIN, project="genomics")
    assert code == 200 and uids(body) == ["b2", "b1"]


async def test_someone_outside_a_project_cannot_read_its_activity(server):
    outsider = {**ALICE, "groups": ["other"]}
    code, body = await api(server, outsider, project="genomics")
    assert code == 403
    assert body["message"] == (
        "project: only the activity of a project you are a member of, got 'genomics'"
    )
    # a service that may see only some users' cannot read a project through its name either
    code, _ = await api(
        server, {**MONITOR, "scopes": ["read:servers!user=bob"]}, project="genomics"
    )
    assert code == 403


async def test_a_user_asking_for_someone_elses_activity_is_refused(server):
    assert await api(server, ALICE, user="bob") == (
        403,
        {
            "status": 403,
            "message": "user: only your own activity (alice) unless you are an admin, got 'bob'",
        },
    )


async def test_a_service_sees_only_its_own_unless_its_role_reads_every_server(server):
    code, body = await api(server, SERVICE, user="alice")
    assert code == 403 and body["message"].startswith("user: only your own activity (reporter)")
    code, body = await api(server, SERVICE)
    assert code == 200 and body["entries"] == [] and body["total"] == 0
    code, body = await api(server, MONITOR, user="alice")
    assert code == 200 and body["entries"] and {e["user"] for e in body["entries"]} == {"alice"}


async def test_an_unauthenticated_api_call_is_a_json_403_not_a_login_redirect(server):
    code, body = await api(server, None)
    assert code == 403 and body["status"] == 403 and "hub API token" in body["message"]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"workspace": "ws1", "action": "started"}, ["b1", "a2"]),
        ({"since": "2025-03-01T09:00:00Z", "until": "2025-03-01T11:00:00Z"}, ["a3", "a2"]),
        ({"since": "2025-03-01T11:00:00+02:00"}, ["b2", "b1", "a3", "a2"]),
        ({"user": "bob", "workspace": "", "action": ""}, ["b2", "b1"]),
        ({"limit": "2", "offset": "1"}, ["b1", "a3"]),
        ({"offset": "9"}, []),
    ],
)
async def test_filters_and_paging(server, params, expected):
    code, body = await api(server, ADMIN, **params)
    assert code == 200 and uids(body) == expected
    assert body["limit"] == int(params.get("limit", 100))


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"action": "rebooted"},
            "action: one of created, started, stopped, errored, edited, "
            "deleted, admin-entered, admin-exited, reminded, "
            "policy-skipped, restarting, shared, share-revoked, share-code-created, "
            "share-code-revoked, share-code-used, moved, got 'rebooted'",
        ),
        (
            {"since": "2025-03-01T08:00:00"},
            "since: an ISO 8601 time with a timezone, "
            "e.g. 2025-03-01T08:00:00Z, got '2025-03-01T08:00:00'",
        ),
        ({"until": "tomorrow"}, "until: an ISO 8601 time with a timezone"),
        (
            {"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"},
            "until: a time later than since (2025-03-02T00:00:00Z), got '2025-03-01T00:00:00Z'",
        ),
        ({"offset": "-1"}, "offset: a whole number >= 0, got '-1'"),
        ({"limit": "0"}, "limit: a whole number from 1 to 1000, got '0'"),
        ({"limit": "1001"}, "limit: a whole number from 1 to 1000, got '1001'"),
        ({"limit": "ten"}, "limit: a whole number from 1 to 1000, got 'ten'"),
        ({"offset": "9" * 5000}, "offset: a whole number >= 0, got '999"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since: an ISO 8601 time with a timezone"),
        (
            {"usr": "bob"},
            "usr: not a parameter (use user, workspace, action, since, until, "
            "offset, limit, project), got ['bob']",
        ),
    ],
)
async def test_each_bad_value_is_a_400_naming_the_field(server, params, message):
    code, body = await api(server, ADMIN, **params)
    assert code == 400 and body["status"] == 400
    assert body["message"].startswith(message)
    assert server[1] == [], "nothing is queried for a refused request"


async def test_a_repeated_parameter_is_refused(server):
    response = await fetch(server[0] + "api/activity?user=a&user=b", ADMIN)
    assert response.code == 400
    assert json.loads(response.body)["message"] == "user: give it at most once, got ['a', 'b']"


# --- page -----------------------------------------------------------------------------------


def table_rows(body: bytes) -> list[list[str]]:
    tbody = body.decode().split("<tbody>")[1].split("</tbody>")[0]
    return [
        [unescape(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", tbody, re.S)
    ]


async def test_the_page_shows_date_user_workspace_actor_action_and_description(server):
    response = await fetch(server[0] + "activity", ADMIN)
    assert response.code == 200
    rows = table_rows(response.body)
    assert rows[0] == [
        "2025-03-01 12:00 UTC",
        "bob",
        "ws1",
        "genomics",
        "bob",
        "stopped",
        "<script>alert(1)</script>",
    ]
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)
    assert b"<script>alert" not in response.body, "descriptions are escaped"
    assert b'id="filter-user"' in response.body


async def test_a_users_page_shows_only_their_rows_and_no_user_filter(server):
    response = await fetch(server[0] + "activity", ALICE, action="started")
    rows = table_rows(response.body)
    assert [(row[1], row[5]) for row in rows] == [("alice", "started"), ("alice", "started")]
    assert {row[3] for row in rows} == {"personal"}
    assert b'id="filter-user"' not in response.body
    assert b'<option value="started" selected>' in response.body


async def test_the_page_links_to_older_and_newer_pages(server):
    base = server[0]
    first = await fetch(base + "activity", ADMIN, limit="2")
    assert b"activity-newer" not in first.body
    older = re.search(rb'id="activity-older" href="([^"]+)"', first.body).group(1)
    second = await fetch(base.split(PREFIX)[0] + unescape(older.decode()), ADMIN)
    assert [row[1:3] for row in table_rows(second.body)] == [["alice", "ws2"], ["alice", "ws1"]]
    assert b"Entries 3 to 4 of 5." in second.body
    assert b"activity-newer" in second.body and b"activity-older" in second.body


async def test_a_bad_filter_on_the_page_says_what_to_fix(server):
    response = await fetch(server[0] + "activity", ADMIN, since="yesterday")
    assert response.code == 400
    assert b"since: an ISO 8601 time with a timezone" in response.body
    assert b'value="yesterday"' in response.body
    assert table_rows(response.body) == [["No activity matches."]]


async def test_the_page_refuses_someone_elses_activity(server):
    response = await fetch(server[0] + "activity", ALICE, user="bob")
    assert response.code == 403
    assert b"only your own activity (alice)" in response.body
    assert table_rows(response.body) == [["No activity matches."]]


async def test_paging_links_keep_the_filters(server):
    base = server[0]
    first = await fetch(base + "activity", ADMIN, limit="1", since="2025-03-01T10:00:00+01:00")
    older = re.search(rb'id="activity-older" href="([^"]+)"', first.body).group(1)
    second = await fetch(base.split(PREFIX)[0] + unescape(older.decode()), ADMIN)
    assert [row[0] for row in table_rows(second.body)] == ["2025-03-01 11:00 UTC"]
    assert b"Entries 2 to 2 of 4." in second.body
