"""Where a scientist's work lands: JupyterLab opens in ``/data`` (the persistent,
size-enforced volume cluster members share), so a notebook made from the launcher is saved
there, not in the container's own layer (headless Debian chromium, Playwright)."""

from __future__ import annotations

from playwright.sync_api import expect
from support.docker_cli import exec_in
from support.waiting import wait


def test_a_notebook_created_from_the_launcher_is_saved_in_data(hub, page, log_in):
    user, ws = "saver", "notes"
    hub.ensure_user(user)
    hub.start_workspace(user, ws, {"storage_gb": 1})
    container = hub.container_name(user, ws)
    assert exec_in(container, "echo x > /data/already-here.txt").returncode == 0
    log_in(user)

    page.goto(f"{hub.url}/user/{user}/{ws}/lab")
    expect(page.locator("#main.jp-LabShell")).to_be_visible(timeout=120_000)
    # the file browser's root is /data: what is there is listed at the top level
    listing = page.locator(".jp-DirListing-itemText", has_text="already-here.txt")
    expect(listing).to_be_visible(timeout=30_000)

    page.locator('.jp-LauncherCard[data-category="Notebook"][title^="Python 3"]').first.click()
    expect(page.locator(".jp-NotebookPanel").first).to_be_visible(timeout=60_000)

    volume = hub.storage_root / user / ws / "mnt"  # the volume behind /data, on the host
    made = wait(lambda: sorted(volume.glob("*.ipynb")), 30, "the new notebook is in /data")
    assert [p.name for p in made] == ["Untitled.ipynb"]
    home = exec_in(container, "find /home/jovyan -name '*.ipynb' | wc -l")
    assert home.stdout.strip() == "0"  # nothing in the container's own layer
    hub.stop_workspace(user, ws)
