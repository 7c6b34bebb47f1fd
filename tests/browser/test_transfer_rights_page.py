"""Upload and download rights as a user meets them in JupyterLab, through the hub in headless
Chromium (Playwright): with the rights off, the file browser's Upload shows the refusal and
nothing lands in /data, and a file's Download fails (the server refuses it and logs why);
with the rights on (the default) the same upload and download work."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from playwright.sync_api import expect
from support.waiting import wait

NO_UPLOADS = "Uploads are not allowed in this workspace (its upload rights are off)"
NO_DOWNLOADS = "Downloads are not allowed in this workspace (its download rights are off)"


def open_lab(hub, page, log_in, user: str, ws: str, options: dict):
    hub.ensure_user(user)
    hub.start_workspace(user, ws, {"storage_gb": 1, **options})
    volume = hub.storage_root / user / ws / "mnt"  # /data, seen from the host
    (volume / "report.txt").write_text("results\n")
    log_in(user)
    page.goto(f"{hub.url}/user/{user}/{ws}/lab")
    expect(page.locator("#main.jp-LabShell")).to_be_visible(timeout=120_000)
    item = page.locator(".jp-DirListing-itemText", has_text="report.txt")
    expect(item).to_be_visible(timeout=30_000)
    return volume


def upload_through_the_file_browser(page, path) -> None:
    """Click the file browser's Upload button and pick ``path`` in the file chooser."""
    with page.expect_file_chooser() as chooser:
        page.locator(".jp-FileBrowser-toolbar .jp-ToolbarButtonComponent[title^='Upload']").click()
    chooser.value.set_files(str(path))


def download_from_the_context_menu(page, name: str):
    """Right-click ``name`` in the file browser and choose "Download": Chromium's download."""
    page.locator(".jp-DirListing-itemText", has_text=name).click(button="right")
    with page.expect_download() as started:
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Download$")).click()
    return started.value


def server_log(container: str) -> str:
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def test_without_the_rights_jupyterlab_shows_the_refused_upload_and_download(
    hub, page, log_in, tmp_path
):
    user, ws = "tilda", "sealed"
    volume = open_lab(
        hub, page, log_in, user, ws, {"permissions": {"upload": False, "download": False}}
    )
    local = tmp_path / "measurements.csv"
    local.write_text("a,b\n1,2\n")

    upload_through_the_file_browser(page, local)
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text(NO_UPLOADS, timeout=30_000)
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)
    page.locator(".jp-FileBrowser-toolbar [title^='Refresh']").first.click()
    expect(page.locator(".jp-DirListing-itemText", has_text="measurements.csv")).to_have_count(0)
    assert not (volume / "measurements.csv").exists()

    refused = download_from_the_context_menu(page, "report.txt")
    assert refused.failure() is not None  # Chromium's download failed: the server said 403
    refusal = f"refused download (download rights are off): GET /user/{user}/{ws}/files/report.txt"
    wait(
        lambda: server_log(hub.container_name(user, ws)),
        30,
        "the refused download in the server's log",
        until=lambda log: refusal in log,
    )
    # the file itself still opens in the editor: what is on screen is not prevented
    page.locator(".jp-DirListing-itemText", has_text="report.txt").dblclick()
    expect(page.locator(".jp-FileEditor .cm-content")).to_contain_text("results", timeout=30_000)
    hub.stop_workspace(user, ws)


def test_with_the_rights_the_same_upload_and_download_work(hub, page, log_in, tmp_path):
    user, ws = "tilda", "open"
    volume = open_lab(hub, page, log_in, user, ws, {})
    local = tmp_path / "measurements.csv"
    local.write_text("a,b\n1,2\n")

    upload_through_the_file_browser(page, local)
    uploaded = volume / "measurements.csv"
    wait(uploaded.exists, 30, "the uploaded file is in /data")
    assert uploaded.read_text() == "a,b\n1,2\n"
    expect(page.locator(".jp-DirListing-itemText", has_text="measurements.csv")).to_be_visible()
    expect(page.locator(".jp-Dialog")).to_have_count(0)

    got = download_from_the_context_menu(page, "report.txt")
    assert got.failure() is None
    assert Path(got.path()).read_text() == "results\n"
    hub.stop_workspace(user, ws)
