"""Every service page in a real browser: the hub's navbar, and the way back to the hub's home.

A user logs in on the hub, opens each service's page (lifecycle's schedule and activity log,
checkpoints, clusters, egress) and finds the hub's navbar styled as on the hub's own pages
(the hub's stylesheet applies), their name, the Services menu with the page's service, and a
Home link that leads back to the hub's home page. An admin's navbar has the Admin link.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support.hub_harness import ADMIN_PASSWORD
from support.waiting import wait

PAGES = [
    ("lifecycle", "", "Running workspaces"),
    ("lifecycle", "activity", "Workspace activity"),
    ("checkpoints", "", "Checkpoints of navuser's workspaces"),
    ("clusters", "", "Workspace clusters"),
    ("egress", "", "Restricted workspaces"),
]


@pytest.mark.parametrize(("service", "path", "heading"), PAGES)
def test_a_service_page_has_the_hubs_navbar_and_its_home_link_leads_back_to_the_hub(
    hub, page, log_in, service, path, heading
):
    log_in("navuser")
    page.goto(f"{hub.url}/services/{service}/{path}")
    expect(page.locator("h1")).to_have_text(heading)

    navbar = page.locator("nav.navbar")
    expect(navbar).to_be_visible()
    # styled by the hub's stylesheet (Bootstrap's navbar is a flex box; an unstyled nav is not)
    assert navbar.evaluate("nav => getComputedStyle(nav).display") == "flex"
    expect(page.locator("#jupyterhub-logo img")).to_be_visible()
    expect(page.locator("#login_widget")).to_contain_text("navuser")
    expect(page.locator("#logout")).to_have_attribute("href", "/hub/logout")
    expect(navbar.get_by_role("link", name="Admin")).to_have_count(0)

    page.click("nav.navbar .dropdown-toggle:has-text('Services')")
    entry = page.locator(f".dropdown-menu a.dropdown-item[href='/services/{service}/']")
    expect(entry).to_be_visible()

    navbar.get_by_role("link", name="Home", exact=True).click()
    page.wait_for_url(f"{hub.url}/hub/home")
    expect(page.locator("h2", has_text="Workspaces")).to_be_visible()


def test_an_admins_navbar_on_a_service_page_has_the_admin_link(hub, page, log_in):
    log_in("admin", ADMIN_PASSWORD)
    page.goto(f"{hub.url}/services/clusters/")
    expect(page.locator("h1")).to_have_text("Workspace clusters")
    page.locator("nav.navbar").get_by_role("link", name="Admin").click()
    page.wait_for_url(f"{hub.url}/hub/admin**")


def test_checkpoint_now_on_the_page_takes_a_named_one_and_a_taken_name_is_refused_in_words(
    hub, page, log_in
):
    user, ws = "pageuser", "lab"
    hub.ensure_user(user)
    hub.start_workspace(user, ws)
    alerts: list[str] = []

    def answer(dialog) -> None:  # the page's prompt asks for a name; its alert says what failed
        if dialog.type == "prompt":
            dialog.accept("kept-by-page")
        else:
            alerts.append(dialog.message)
            dialog.accept()

    page.on("dialog", answer)
    try:
        log_in(user)
        page.goto(f"{hub.url}/services/checkpoints/")
        take = page.locator(f"button[data-action='take'][data-workspace='{ws}']")
        take.click()  # the page reloads with the new checkpoint
        expect(page.locator("td", has_text="kept-by-page")).to_be_visible(timeout=60_000)
        assert alerts == []

        take.click()  # the same name again: the service refuses, the page says why
        # (Playwright delivers the dialog while it waits, hence its own short waits here)
        refused = wait(lambda: alerts or page.wait_for_timeout(100), 30, "the refusal's alert")
        assert "kept-by-page" in refused[0], refused
        expect(page.locator("td", has_text="kept-by-page")).to_have_count(1)
    finally:
        page.remove_listener("dialog", answer)
        hub.stop_workspace(user, ws)


def test_a_refused_cluster_start_on_the_page_says_why_and_starts_nothing(hub, page, log_in):
    user, ws = "pageuser", "nocluster"
    hub.ensure_user(user)
    hub.start_workspace(user, ws)
    try:
        log_in(user)
        page.goto(f"{hub.url}/services/clusters/")
        form = page.locator(f"form.bench-start[data-workspace='{ws}']")
        form.locator("select[name=type]").select_option("static")
        members = form.locator("input[name=members]")
        members.evaluate("el => el.removeAttribute('max')")  # past the browser's own check
        members.fill("500")
        form.locator("[type=submit]").click()
        expect(page.locator("#error")).to_contain_text("members")
        status = hub.service_api("clusters", f"api/clusters/{user}/{ws}", user=user)
        assert status.status_code == 404, status.text  # no cluster was started
    finally:
        hub.stop_workspace(user, ws)
