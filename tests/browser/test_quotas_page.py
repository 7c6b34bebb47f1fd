"""The hub's home page shows a user their use against their limits (and nothing when nothing is
limited)."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def test_the_home_page_shows_running_workspaces_against_the_limit_and_where_it_comes_from(
    hub, page: Page, log_in
):
    hub.ensure_user("quinn")
    r = hub.api("PUT", "/bench/quotas/users/quinn", {"max_running_workspaces": 2, "max_cpus": 4})
    assert r.status_code == 200, r.text
    try:
        hub.start_workspace("quinn", "lab", {"resource_model": "test-small", "storage_gb": 1})
        log_in("quinn")
        panel = page.locator("#bench-quotas")
        expect(panel).to_be_visible()
        running = page.locator("#bench-quota-max_running_workspaces td")
        expect(running).to_have_text(["Running workspaces", "1", "2", "user quinn"])
        cpus = page.locator("#bench-quota-max_cpus td")
        expect(cpus).to_have_text(["CPUs", "0.5", "4", "user quinn"])
        expect(page.locator("#bench-quota-max_gpus")).to_have_count(0)  # not limited: no row
    finally:
        hub.api("PUT", "/bench/quotas/users/quinn", {})
        hub.stop_workspace("quinn", "lab")


def test_the_home_page_shows_no_limits_panel_when_nothing_is_limited(hub, page: Page, log_in):
    hub.ensure_user("rory")
    log_in("rory")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#bench-quotas")).to_be_hidden()
