"""The browser tests' Chromium (headless Debian chromium through Playwright, never a downloaded
browser) and a hub login in it.

``page`` is a fresh browser page per test; when the test fails, a screenshot of the page is
saved and its path printed.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, sync_playwright
from support.hub_harness import PASSWORD

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def page(request, tmp_path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                shot = tmp_path / "failure.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the page at failure ({page.url}): {shot}")
        finally:
            browser.close()


@pytest.fixture
def log_in(hub, page: Page):
    """``log_in(user, password=PASSWORD)``: log ``page`` in through the hub's login form."""

    def log_in(user: str, password: str = PASSWORD) -> None:
        page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
        page.fill("#username_input", user)
        page.fill("#password_input", password)
        page.click("#login_submit")
        page.wait_for_url(f"{hub.url}/hub/home")

    return log_in
