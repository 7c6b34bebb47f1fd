"""The spawn form and home page in a real browser (headless Debian chromium, Playwright).

A user logs in, adds a workspace on the home page, fills the options form, lands in JupyterLab,
then stops the workspace from the home page; a bad storage value is refused on the form.
"""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect
from support.docker_cli import docker
from support.hub_harness import ADMIN_PASSWORD, UNRUNNABLE_MODEL
from support.waiting import wait

GIB = 1024**3


def activity(hub, owner: str, ws: str) -> list[tuple[str, str]]:
    """The workspace's activity log as (action, actor), newest first."""
    entries = hub.service_api("lifecycle", "api/activity", user=owner, workspace=ws).json()
    return [(e["action"], e["actor"]) for e in entries["entries"]]


def container_ids(name: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"name=^{name}$").split()


def test_spawn_from_form_into_lab_then_stop(hub, page, log_in):
    user, ws = "browseruser", "lab1"
    container = hub.container_name(user, ws)
    log_in(user)

    # add the workspace on the home page (JupyterHub's JS creates it, then reloads)
    page.fill(".new-server-name", ws)
    page.click(".new-server-btn")
    expect(page.locator(f"#start-{ws}")).to_be_visible()
    expect(page.locator(f"#status-{ws}")).to_have_attribute("data-status", "stopped")
    page.click(f"#start-{ws}")
    page.wait_for_url(f"{hub.url}/hub/spawn/{user}/{ws}")

    # the whitelist shows only for restricted access
    whitelist = page.locator("#bench-whitelist")
    expect(page.locator("#bench-access-open")).to_be_checked()
    expect(whitelist).to_be_hidden()
    page.click("#bench-access-restricted")
    expect(whitelist).to_be_visible()
    page.click("#bench-access-open")
    expect(whitelist).to_be_hidden()

    # a model no host can run (the test catalog's 4096 CPUs) is disabled, and its row says why
    unrunnable = page.locator(f"#bench-model-{UNRUNNABLE_MODEL}")
    expect(unrunnable).to_be_disabled()
    expect(page.locator("#bench-models tr", has=unrunnable)).to_contain_text("4096 CPUs")
    expect(page.locator("#bench-model-test-small")).to_be_enabled()

    page.check("#bench-model-test-small")
    page.fill("#bench-storage", "1")
    page.fill("#bench-description", "opened from the browser test")
    page.click("#spawn_form [type=submit]")

    # spawn progress page -> JupyterLab
    page.wait_for_url(f"**/user/{user}/{ws}/lab**", timeout=120_000)
    expect(page.locator("#main.jp-LabShell")).to_be_visible(timeout=120_000)

    info = json.loads(docker("inspect", container))[0]
    assert info["State"]["Running"]
    assert info["HostConfig"]["Memory"] == GIB // 2
    options = hub.workspaces(user)[ws]["user_options"]
    assert options["resource_model"] == "test-small" and int(options["storage_gb"]) == 1
    assert options["access_mode"] == "open"
    assert options["description"] == "opened from the browser test"

    # the home page shows the next shutdown or restart from the lifecycle service (fetched
    # with the browser's hub login), and "keep until" extends the running workspace
    page.goto(f"{hub.url}/hub/home")
    status = page.locator(f"#status-{ws}")
    expect(status).to_have_attribute("data-status", "running")
    expect(status).to_have_text("running")
    next_event = page.locator(f"#next-{ws} .bench-next-text")
    deadline = time.monotonic() + 30
    while "in" not in next_event.inner_text() and time.monotonic() < deadline:
        time.sleep(1)  # the service's first pass over the new workspace
        page.reload()
    expect(next_event).to_have_text(re.compile(r"^(shutdown|restart) in \d"))
    page.fill(f"#keep-{ws}", "2031-01-02T03:04")
    page.click(f"#next-{ws} .bench-keep-btn")
    expect(next_event).to_have_text("kept until 2031-01-02T03:04")
    keep_until = hub.workspaces(user)[ws]["user_options"]["keep_until"]
    assert keep_until.startswith("2031-01-0"), keep_until  # the browser's timezone applied

    # the activity log page lists what happened, with who did it
    page.goto(f"{hub.url}/services/lifecycle/activity?workspace={ws}")
    deadline = time.monotonic() + 30
    while "edited keep_until" not in page.inner_text("body") and time.monotonic() < deadline:
        time.sleep(1)  # copied from the hub's journal on the service's next pass
        page.reload()
    expect(page.locator("body")).to_contain_text("edited keep_until")
    expect(page.locator("body")).to_contain_text(f"started by {user}")

    # stop from the home page
    page.goto(f"{hub.url}/hub/home")
    page.click(f"#stop-{ws}")
    expect(page.locator(f"#start-{ws}")).to_be_visible(timeout=60_000)  # the stop returned

    def status_after_reload() -> str | None:  # the cell is filled once per page load
        page.reload()
        page.wait_for_selector(f"#status-{ws}[data-status]")
        return status.get_attribute("data-status")

    wait(status_after_reload, 60, "the home page says stopped", until=lambda s: s == "stopped")
    expect(status).to_have_attribute("data-status", "stopped", timeout=1_000)
    expect(status).to_have_text("stopped")
    assert container_ids(container) == []


def test_invalid_storage_is_refused_on_the_form(hub, page, log_in):
    user, ws = "browserbad", "bad1"
    container = hub.container_name(user, ws)
    log_in(user)
    page.goto(f"{hub.url}/hub/spawn/{user}/{ws}")
    storage = page.locator("#bench-storage")
    storage.evaluate("el => el.removeAttribute('min')")
    storage.fill("0")
    page.click("#spawn_form [type=submit]")

    error = page.locator(".spawn-error-msg")
    expect(error).to_be_visible()
    expect(error).to_contain_text("storage_gb")
    expect(page.locator("#bench-storage")).to_be_visible()  # the form is shown again
    assert f"/hub/spawn/{user}/{ws}" in page.url
    assert container_ids(container) == []
    assert hub.workspaces(user).get(ws, {}).get("status") != "running"


def test_an_admin_entering_and_leaving_someone_elses_workspace_is_logged(hub, page, log_in):
    owner, ws = "visited", "lab2"
    hub.ensure_user(owner)
    hub.start_workspace(owner, ws)
    log_in("admin", ADMIN_PASSWORD)
    page.goto(f"{hub.url}/user/{owner}/{ws}/lab")
    page.click("button:has-text('Authorize')")  # JupyterHub asks before opening another's
    expect(page.locator("#main.jp-LabShell")).to_be_visible(timeout=120_000)
    page.goto(f"{hub.url}/hub/logout")
    page.wait_for_url("**/hub/login**")

    # copied into the log on the service's next pass
    found = wait(
        lambda: activity(hub, owner, ws),
        30,
        "the admin's exit is in the log",
        step=1,
        until=lambda seen: ("admin-exited", "admin:admin") in seen,
    )
    assert found[:2] == [("admin-exited", "admin:admin"), ("admin-entered", "admin:admin")]
    hub.stop_workspace(owner, ws)


def test_an_admin_inside_a_workspace_that_dies_is_logged_as_having_left(hub, page, log_in):
    owner, ws = "visited", "dies"
    hub.ensure_user(owner)
    hub.start_workspace(owner, ws)
    log_in("admin", ADMIN_PASSWORD)
    page.goto(f"{hub.url}/user/{owner}/{ws}/lab")
    page.click("button:has-text('Authorize')")
    expect(page.locator("#main.jp-LabShell")).to_be_visible(timeout=120_000)
    docker("kill", hub.container_name(owner, ws))  # dies with the admin inside, no logout

    # the hub notices the death at its next poll; the service copies the entries at its next pass
    found = wait(
        lambda: activity(hub, owner, ws),
        90,
        "the admin's exit is in the log",
        step=1,
        until=lambda seen: ("admin-exited", "admin:admin") in seen,
    )
    assert ("admin-entered", "admin:admin") in found and ("errored", "hub") in found
    assert found.index(("admin-exited", "admin:admin")) < found.index(
        ("admin-entered", "admin:admin")
    )  # newest first: the exit came after the entry
