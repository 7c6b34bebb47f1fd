"""Sharing a running workspace from the home page, in Chromium through the hub
(docs/sharing.md): the owner shares by name and by link; the collaborators get JupyterLab;
a non-member is refused with the reason; after a revoke the collaborator is refused.

The project ``studio`` (a JupyterHub group with BenchHub's property) is made through the hub's
REST API with the admin token.
"""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect
from support.hub_harness import PASSWORD
from support.waiting import wait

OWNER, WORKSPACE, PROJECT = "owen", "studio", "studio"
FULL = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
CACHE_SECONDS = 1  # HubOAuth.cache_max_age in images/jupyterlab/app/jupyter_server_config.py


def make_project(hub) -> None:
    for user in (OWNER, "cole", "cody", "ned"):
        hub.ensure_user(user)
    members = {OWNER: FULL, "cole": FULL, "cody": FULL}
    r = hub.api("POST", f"/groups/{PROJECT}", {"users": list(members)})
    assert r.status_code in (201, 409), r.text
    properties = {"benchhub_project": {"owner": OWNER, "members": members}}
    assert hub.api("PUT", f"/groups/{PROJECT}/properties", properties).ok


def logged_in_page(hub, page: Page, user: str) -> Page:
    """A second browser (its own cookies) logged in as ``user``."""
    other = page.context.browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    other.set_default_timeout(30_000)
    other.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
    other.fill("#username_input", user)
    other.fill("#password_input", PASSWORD)
    other.click("#login_submit")
    other.wait_for_url(f"{hub.url}/hub/home")
    return other


def open_lab(hub, page: Page, url: str) -> None:
    """Open ``url`` and get JupyterLab, confirming the hub's authorization page on the way."""
    page.goto(url)
    authorize = page.get_by_role("button", name="Authorize")
    lab = page.locator("#main.jp-LabShell")
    expect(authorize.or_(lab)).to_be_visible(timeout=60_000)
    if authorize.is_visible():
        authorize.click()
    expect(lab).to_be_visible(timeout=120_000)


def test_the_owner_shares_by_name_and_link_and_a_revoked_collaborator_is_refused(hub, page, log_in):
    make_project(hub)
    options = {"storage_gb": 1, "project": PROJECT}
    hub.start_workspace(OWNER, WORKSPACE, options)
    lab_url = f"{hub.url}/user/{OWNER}/{WORKSPACE}/lab"
    log_in(OWNER)
    page.click(f"#share-{WORKSPACE}")
    details = page.locator(f"#details-{WORKSPACE}")
    message = details.locator(".bench-share-message")

    # a non-member is refused, with the reason
    details.locator(".bench-share-user").fill("ned")
    details.locator(".bench-share-user-btn").click()
    expect(message).to_contain_text("ned is not a member of project studio")

    # by name: cole gets JupyterLab
    details.locator(".bench-share-user").fill("cole")
    details.locator(".bench-share-user-btn").click()
    expect(message).to_have_text("shared with cole")
    expect(details.locator(".bench-share-item[data-user='cole']")).to_be_visible()
    cole = logged_in_page(hub, page, "cole")
    open_lab(hub, cole, lab_url)

    # by link: cody opens it, accepts, gets JupyterLab
    details.locator(".bench-share-code-btn").click()
    link = details.locator(".bench-share-link-url")
    expect(link).to_be_visible()
    cody = logged_in_page(hub, page, "cody")
    cody.goto(link.get_attribute("href"))
    cody.get_by_role("button", name="Accept invitation").click()
    authorize = cody.get_by_role("button", name="Authorize")
    lab = cody.locator("#main.jp-LabShell")
    expect(authorize.or_(lab)).to_be_visible(timeout=60_000)
    if authorize.is_visible():
        authorize.click()
    expect(lab).to_be_visible(timeout=120_000)

    # who is in: the home page lists both collaborators
    page.reload()
    page.click(f"#share-{WORKSPACE}")
    present = page.locator(f"#details-{WORKSPACE} .bench-present-list")
    expect(present).to_contain_text("cole (collaborator)")
    expect(present).to_contain_text("cody (collaborator)")

    # revoke cole: his next request is refused
    details.locator(".bench-share-item[data-user='cole'] .bench-share-revoke-btn").click()
    expect(message).to_have_text("revoked cole")
    revoked_at = time.monotonic()
    wait(lambda: time.monotonic() > revoked_at + CACHE_SECONDS, 5, "the cache age", step=0.05)
    response = cole.goto(lab_url)
    assert response.status == 403, response.status
    expect(cole.locator("body")).to_contain_text("You do not have permission")
    hub.stop_workspace(OWNER, WORKSPACE)
