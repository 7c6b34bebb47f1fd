"""Sharing a running workspace through a real hub, with real containers (docs/sharing.md).

A project ``lab`` (a JupyterHub group with BenchHub's property, made through the hub's REST API
with the admin token) holds the owner ann and the contributors carl, cora, joe and jill; vera is a
viewer; zed is in no project. ann's workspace ``shared`` belongs to ``lab``.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from support.hub_harness import PASSWORD
from support.waiting import wait

OWNER, WORKSPACE, PROJECT = "ann", "shared", "lab"
CONTRIBUTOR = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
VIEWER = {"role": "viewer", "data_level": "viewer", "upload": True, "download": True}
MEMBERS = {name: CONTRIBUTOR for name in ("ann", "carl", "cora", "joe", "jill")}
CACHE_SECONDS = 1  # HubOAuth.cache_max_age in images/jupyterlab/app/jupyter_server_config.py


def past_cache_age(since: float) -> None:
    """Wait until the server's cached answer from ``since`` (time.monotonic()) has expired:
    it keeps the hub's answers for CACHE_SECONDS (JupyterHub's default would be 300 s)."""
    wait(lambda: time.monotonic() > since + CACHE_SECONDS, 5, "the cache age", step=0.05)


def status_with_token(hub, user_token: str) -> requests.Response:
    """The workspace's own API (its server's status) through the proxy, with a user's token."""
    return requests.get(
        f"{hub.url}/user/{OWNER}/{WORKSPACE}/api/status",
        headers={"Authorization": f"token {user_token}"},
        timeout=30,
    )


def enter(hub, session: requests.Session) -> requests.Response:
    """Open the workspace's JupyterLab in a logged-in browser session, following the hub's
    OAuth and confirming its authorization page as a person clicking "Authorize" does; then
    (when let in) the workspace's API with the login cookie that gave."""
    r = session.get(f"{hub.url}/user/{OWNER}/{WORKSPACE}/lab", timeout=30)
    if r.status_code == 200 and "/hub/api/oauth2/authorize" in r.url and "Authorize" in r.text:
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', r.text))
        r = session.post(r.url, data=fields, timeout=30)
    if r.status_code != 200:
        return r
    return session.get(f"{hub.url}/user/{OWNER}/{WORKSPACE}/api/status", timeout=30)


def logged_in(hub, user: str) -> requests.Session:
    session, r = hub.log_in(user, PASSWORD)
    assert r.status_code == 302, r.text
    return session


def share(hub, owner_token: str, user: str) -> requests.Response:
    return hub.api("POST", f"/shares/{OWNER}/{WORKSPACE}", {"user": user}, token=owner_token)


def shared_with(hub) -> set[str]:
    r = hub.api("GET", f"/shares/{OWNER}/{WORKSPACE}")
    assert r.ok, r.text
    return {s["user"]["name"] for s in r.json()["items"] if s["user"]}


def journal(hub, action: str, until) -> list[dict]:
    """Activity-log entries of ``action`` for the workspace, once ``until`` holds of them."""

    def entries() -> list[dict]:
        r = hub.service_api(
            "lifecycle", "api/activity", user=OWNER, workspace=WORKSPACE, action=action
        )
        return r.json()["entries"] if r.ok else []

    return wait(entries, 30, f"{action} entries", step=0.5, until=until)


@pytest.fixture(scope="module")
def lab(hub):
    for user in [*MEMBERS, "vera", "zed", "olga"]:
        hub.ensure_user(user)
    r = hub.api("POST", f"/groups/{PROJECT}", {"users": [*MEMBERS, "vera"]})
    assert r.status_code in (201, 409), r.text
    properties = {"benchhub_project": {"owner": "olga", "members": {**MEMBERS, "vera": VIEWER}}}
    r = hub.api("PUT", f"/groups/{PROJECT}/properties", properties)
    assert r.ok, r.text
    options = {"storage_gb": 1, "project": PROJECT, "permissions": {"others_may_use": True}}
    hub.start_workspace(OWNER, WORKSPACE, options)
    yield hub.user_token(OWNER)
    hub.stop_workspace(OWNER, WORKSPACE)


def test_the_owner_shares_by_name_with_a_member_who_then_reaches_the_workspace(hub, lab):
    carl = hub.user_token("carl")
    assert status_with_token(hub, carl).status_code == 403  # not shared yet
    refused_at = time.monotonic()
    r = share(hub, lab, "carl")
    assert r.ok, r.text
    past_cache_age(refused_at)
    assert status_with_token(hub, carl).status_code == 200
    entries = journal(hub, "shared", lambda es: any(e["fields"].get("with") == "carl" for e in es))
    assert any(e["actor"] == OWNER for e in entries)


@pytest.mark.parametrize(
    "user, reason",
    [
        ("zed", "zed is not a member of project lab"),
        ("vera", "you need the project role contributor or higher; you are viewer"),
    ],
)
def test_sharing_with_someone_who_may_not_enter_is_refused_with_the_reason(hub, lab, user, reason):
    r = share(hub, lab, user)
    assert r.status_code == 403 and reason in r.json()["message"], r.text
    assert user not in shared_with(hub)
    assert status_with_token(hub, hub.user_token(user)).status_code == 403


def test_a_share_code_is_refused_to_a_non_member_with_a_page_that_says_why(hub, lab):
    r = hub.api("POST", f"/share-codes/{OWNER}/{WORKSPACE}", {}, token=lab)
    assert r.ok, r.text
    accept_url = f"{hub.url}{r.json()['accept_url']}"
    zed = logged_in(hub, "zed")
    page = zed.get(accept_url, timeout=30)
    assert page.status_code == 403 and "zed is not a member of project lab" in page.text
    posted = zed.post(accept_url, data={"_xsrf": zed.cookies["_xsrf"]}, timeout=30)
    assert posted.status_code == 403 and "zed is not a member of project lab" in posted.text
    assert "zed" not in shared_with(hub)


def test_a_member_accepts_a_share_code_and_enters_and_leaving_the_project_shuts_them_out(hub, lab):
    r = hub.api("POST", f"/share-codes/{OWNER}/{WORKSPACE}", {}, token=lab)
    accept_url = f"{hub.url}{r.json()['accept_url']}"
    cora = logged_in(hub, "cora")
    assert cora.get(accept_url, timeout=30).status_code == 200  # the accept page
    accepted = cora.post(accept_url, data={"_xsrf": cora.cookies["_xsrf"]}, timeout=30)
    assert accepted.ok, accepted.text
    assert "cora" in shared_with(hub)
    assert enter(hub, cora).status_code == 200
    journal(hub, "share-code-used", lambda es: any(e["actor"] == "cora" for e in es))

    # cora leaves the project: her share is still there, but no longer lets her in
    r = hub.api("DELETE", f"/groups/{PROJECT}/users", {"users": ["cora"]})
    assert r.ok, r.text
    assert status_with_token(hub, hub.user_token("cora")).status_code == 403
    fresh = logged_in(hub, "cora")
    refused = enter(hub, fresh)
    assert refused.status_code == 403 and "cora is not a member of project lab" in refused.text


def test_revoking_a_share_refuses_the_collaborators_next_request(hub, lab):
    assert share(hub, lab, "carl").ok
    carl = logged_in(hub, "carl")
    carl_token = hub.user_token("carl")
    assert enter(hub, carl).status_code == 200
    assert status_with_token(hub, carl_token).status_code == 200
    last_allowed = time.monotonic()

    r = hub.api("PATCH", f"/shares/{OWNER}/{WORKSPACE}", {"user": "carl"}, token=lab)
    assert r.ok, r.text
    past_cache_age(last_allowed)
    assert carl.get(f"{hub.url}/user/{OWNER}/{WORKSPACE}/api/status", timeout=30).status_code == 403
    assert status_with_token(hub, carl_token).status_code == 403
    entries = journal(
        hub, "share-revoked", lambda es: any(e["fields"].get("with") == "carl" for e in es)
    )
    assert entries[0]["actor"] == OWNER


def test_who_is_in_lists_a_collaborator_who_entered_also_after_a_hub_restart(hub, lab):
    assert share(hub, lab, "joe").ok
    assert enter(hub, logged_in(hub, "joe")).status_code == 200

    def present() -> dict:
        return {p["name"]: p["who"] for p in hub.workspaces(OWNER)[WORKSPACE]["present"]}

    assert present().get("joe") == "collaborator"
    hub.stop()
    hub.start()
    assert present().get("joe") == "collaborator"


def test_a_contributor_joins_a_workspace_that_allows_it_and_not_one_that_does_not(hub, lab):
    jill = hub.user_token("jill")
    r = requests.post(
        f"{hub.url}/hub/api/bench/workspaces/{OWNER}/{WORKSPACE}/join",
        headers={"Authorization": f"token {jill}"},
        timeout=30,
    )
    assert r.ok and r.json()["url"] == f"/user/{OWNER}/{WORKSPACE}/", r.text
    assert status_with_token(hub, jill).status_code == 200
    # a workspace that does not allow others (created, not started)
    r = hub.api(
        "PUT",
        f"/users/{OWNER}/servers/private",
        {"user_options": {"storage_gb": 1, "project": PROJECT}},
    )
    assert r.status_code in (200, 201), r.text
    r = requests.post(
        f"{hub.url}/hub/api/bench/workspaces/{OWNER}/private/join",
        headers={"Authorization": f"token {jill}"},
        timeout=30,
    )
    assert r.status_code == 403 and "others_may_use is off" in r.json()["message"], r.text


def test_a_project_administrator_joins_any_workspace_and_their_entry_is_logged(hub, lab):
    r = requests.post(
        f"{hub.url}/hub/api/bench/workspaces/{OWNER}/{WORKSPACE}/join",
        headers={"Authorization": f"token {hub.user_token('olga')}"},  # the project's owner
        timeout=30,
    )
    assert r.ok and r.json()["shared"], r.text
    assert enter(hub, logged_in(hub, "olga")).status_code == 200
    journal(hub, "admin-entered", lambda es: any(e["actor"] == "admin:olga" for e in es))
    present = {p["name"]: p["who"] for p in hub.workspaces(OWNER)[WORKSPACE]["present"]}
    assert present.get("olga") == "admin"
