"""Each image template, started from the spawn form in a real browser (headless Debian chromium,
Playwright), opens its app and the app works: the data-science JupyterLab runs pandas and
scikit-learn, the R kernel loads ggplot2, VS Code (code-server) opens /data and a terminal.

The hub offers the catalogue ``jupyterhub_config.py`` ships (its images and apps), with the test
catalogue's small resource models so that nothing depends on the machine's size.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect
from support.catalogue import shipped_catalogue
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess
from support.waiting import wait

PREFIX = "benchtplb"
MODELS = {"jupyterlab": "test-small", "datascience": "test-medium", "r": "test-medium"}
MODELS["vscode"] = "test-medium"  # code-server and its extension host want more than 0.5 GB
START_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def catalogue() -> dict:
    shipped = shipped_catalogue()["image_templates"]
    assert set(MODELS) <= set(shipped), f"the shipped catalogue changed: {list(shipped)}"
    return {key: {**shipped[key], "resource_model": MODELS[key]} for key in MODELS}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, catalogue):
    missing = [
        t["image"] for t in catalogue.values() if not docker("image", "ls", "-q", t["image"])
    ]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; build them: make images-all", False)
    h = HubProcess(
        tmp_path_factory.mktemp(PREFIX),
        prefix=PREFIX,
        extra_config=(
            f"c.BenchSpawner.image_templates = {json.dumps(catalogue)}\n"
            'c.BenchSpawner.default_image_template = "jupyterlab"\n'
        ),
    )
    cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


@pytest.fixture
def started(hub):
    """Workspaces a test started (``started.append((user, ws))``), stopped after the test and
    after the page's failure screenshot was taken (this fixture comes before ``page``)."""
    workspaces: list[tuple[str, str]] = []
    yield workspaces
    for user, ws in workspaces:
        hub.stop_workspace(user, ws)


def start_from_form(page: Page, hub: HubProcess, user: str, ws: str, template: str) -> None:
    """Open the spawn form of a new workspace, choose ``template`` (and nothing else: its
    resource model is preselected) and start it."""
    page.goto(f"{hub.url}/hub/spawn/{user}/{ws}")
    page.select_option("#bench-image", template)
    expect(page.locator(f"#bench-model-{MODELS[template]}")).to_be_checked()
    page.fill("#bench-storage", "1")
    page.click("#spawn_form [type=submit]")


def run_in_new_notebook(page: Page, kernel_title: str, code: str):
    """Open a notebook of ``kernel_title`` from JupyterLab's launcher, run ``code`` in its first
    cell and return the cell's output area."""
    page.locator(f'.jp-LauncherCard[data-category="Notebook"][title="{kernel_title}"]').click()
    # the kernel has started and is connected (the status bar says so)
    idle = page.get_by_role("button", name=f"{kernel_title} | Idle")
    expect(idle).to_be_visible(timeout=120_000)
    cell = page.locator(".jp-Notebook .jp-Cell").first
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    return cell.locator(".jp-OutputArea-output")


def test_choosing_a_template_shows_what_it_is_and_preselects_its_resource_model(
    hub, page, log_in, catalogue
):
    user = "picker"
    log_in(user)
    page.goto(f"{hub.url}/hub/spawn/{user}/choice")
    description = page.locator("#bench-image-description")
    version = page.locator("#bench-image-version")
    expect(description).to_have_text(catalogue["jupyterlab"]["description"])
    expect(page.locator("#bench-model-test-small")).to_be_checked()

    page.select_option("#bench-image", "vscode")
    expect(description).to_have_text(catalogue["vscode"]["description"])
    expect(version).to_have_text(f"Version {catalogue['vscode']['version']}")
    expect(page.locator("#bench-model-test-medium")).to_be_checked()

    page.select_option("#bench-image", "jupyterlab")
    expect(page.locator("#bench-model-test-small")).to_be_checked()


def test_the_data_science_template_runs_pandas_and_scikit_learn_in_a_notebook(
    started, hub, page, log_in
):
    user, ws = "dana", "analysis"
    log_in(user)
    start_from_form(page, hub, user, ws, "datascience")
    started.append((user, ws))
    page.wait_for_url(f"**/user/{user}/{ws}/lab**", timeout=START_TIMEOUT_MS)
    output = run_in_new_notebook(
        page,
        "Python 3 (ipykernel)",
        "import pandas, sklearn; print('versions', pandas.__version__, sklearn.__version__)",
    )
    expect(output).to_contain_text("versions 3.", timeout=120_000)
    expect(output).not_to_contain_text("Error")


def test_the_r_template_loads_ggplot2_in_the_r_kernel(started, hub, page, log_in):
    user, ws = "rhea", "plots"
    log_in(user)
    start_from_form(page, hub, user, ws, "r")
    started.append((user, ws))
    page.wait_for_url(f"**/user/{user}/{ws}/lab**", timeout=START_TIMEOUT_MS)
    output = run_in_new_notebook(
        page, "R", 'library(ggplot2); cat("ggplot2", format(packageVersion("ggplot2")))'
    )
    expect(output).to_contain_text("ggplot2 3.", timeout=120_000)
    expect(output).not_to_contain_text("Error")


def test_the_vscode_template_opens_code_server_on_data_with_a_working_terminal(
    started, hub, page, log_in
):
    user, ws = "vera", "code"
    container = hub.container_name(user, ws)
    log_in(user)
    start_from_form(page, hub, user, ws, "vscode")
    started.append((user, ws))
    # the workspace opens its app (the server's default URL), not JupyterLab
    page.wait_for_url(f"**/user/{user}/{ws}/app/**", timeout=START_TIMEOUT_MS)
    expect(page.locator(".monaco-workbench")).to_be_visible(timeout=120_000)
    page.keyboard.press("F1")  # the command palette
    palette = page.locator(".quick-input-widget input")
    expect(palette).to_be_visible(timeout=30_000)
    palette.fill(">Terminal: Create New Terminal")
    page.locator(".quick-input-list .monaco-list-row", has_text="Create New Terminal").first.click()
    terminal = page.locator(".terminal-wrapper .xterm").first
    expect(terminal).to_be_visible(timeout=60_000)
    terminal.click()
    page.keyboard.type("pwd > vscode-cwd.txt\n")
    cwd = wait(
        lambda: exec_in(container, "cat /data/vscode-cwd.txt 2>/dev/null").stdout.strip(),
        60,
        "the terminal's command wrote /data/vscode-cwd.txt",
    )
    assert cwd == "/data"  # VS Code opened the workspace's /data

    # its settings and extensions live in the home, which checkpoints keep
    settings = "/home/jovyan/.local/share/code-server/User"
    assert exec_in(container, f"test -d {settings}").returncode == 0
    hub.stop_workspace(user, ws)
    hub.start_workspace(user, ws)
    assert exec_in(container, f"test -d {settings}").returncode == 0
