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
