"""Image templates on a real hub: the catalogue API, the resource model a template preselects, a
template's own web app behind the hub's login, and R packages a user installs.

The hub's catalogue here: JupyterLab; "webapp", a tiny web app (``python3 -m http.server`` on
/data, in the JupyterLab image) as any site's own app would be configured, with its own
resource model; the R template; and VS Code as the shipped configuration has it.
"""

from __future__ import annotations

import json

import pytest
import requests
from support.catalogue import shipped_catalogue
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import PASSWORD, HubProcess
from support.waiting import wait

PREFIX = "benchtpl"
WEBAPP = {
    "image": "benchhub/jupyterlab:latest",
    "display_name": "Web app",
    "description": "A directory listing of /data",
    "version": "1",
    "resource_model": "test-medium",
    "app": {
        "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/data"]
        + ["{port}"],
        "port": 8765,
    },
}
CATALOGUE = {
    "jupyterlab": {"image": "benchhub/jupyterlab:latest", "display_name": "JupyterLab"},
    "webapp": WEBAPP,
    "r": {"image": "benchhub/r:latest", "display_name": "R", "version": "R 4.2"},
    "vscode": shipped_catalogue()["image_templates"]["vscode"],  # as the site gets it
}
OWNER, OTHER = "tess", "mallory"
MARKER = "made-by-tess.txt"  # a file in the owner's /data, listed by the app
GIB = 1024**3


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    missing = [t["image"] for t in CATALOGUE.values() if not docker_image_exists(t["image"])]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; build them: make images-all", False)
    h = HubProcess(
        tmp_path_factory.mktemp(PREFIX),
        prefix=PREFIX,
        extra_config=f"c.BenchSpawner.image_templates = {json.dumps(CATALOGUE)}\n",
    )
    cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


def docker_image_exists(image: str) -> bool:
    return bool(docker("image", "ls", "-q", image, check=False).strip())


def user_token(hub: HubProcess, user: str) -> str:
    hub.ensure_user(user)
    r = hub.api("POST", f"/users/{user}/tokens", {"expires_in": 900})
    assert r.ok, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def webapp(hub):
    """The owner's workspace "site" of the web-app template, started over REST without a
    resource model, with a file in its /data."""
    hub.ensure_user(OWNER)
    hub.start_workspace(OWNER, "site", {"image": "webapp", "storage_gb": 1})
    container = hub.container_name(OWNER, "site")
    made = exec_in(container, f"echo hello > /data/{MARKER}")
    assert made.returncode == 0, made.stderr
    return container


# ---- the catalogue API ---------------------------------------------------------------------------


def test_a_signed_in_user_lists_the_templates_with_what_each_opens(hub):
    token = user_token(hub, "lister")
    r = requests.get(
        f"{hub.url}/hub/api/bench/templates", headers={"Authorization": f"token {token}"}
    )
    assert r.status_code == 200, r.text
    templates = {t["name"]: t for t in r.json()["templates"]}
    assert list(templates) == ["jupyterlab", "webapp", "r", "vscode"]
    web = templates["webapp"]
    assert (web["display_name"], web["description"], web["version"]) == (
        "Web app",
        "A directory listing of /data",
        "1",
    )
    assert web["app"]["kind"] == "command" and web["app"]["url"] == "/app/"
    assert web["resource_model"] == "test-medium"
    lab = templates["jupyterlab"]
    assert lab["app"] == {"kind": "jupyterlab", "url": "/lab"}
    assert lab["resource_model"] == "test-small"  # the hub's default model
    assert lab["default"] is True and web["default"] is False


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token not-a-token"}])
def test_the_templates_api_refuses_a_caller_without_a_valid_token(hub, headers):
    r = requests.get(f"{hub.url}/hub/api/bench/templates", headers=headers)
    assert r.status_code == 403
    assert "templates" not in r.text


# ---- the template's resource model and app -------------------------------------------------------


def test_a_start_without_a_resource_model_gets_the_templates_model(hub, webapp):
    options = hub.workspaces(OWNER)["site"]["user_options"]
    assert options["image"] == "webapp" and options["resource_model"] == "test-medium"
    info = json.loads(docker("inspect", webapp))[0]
    assert info["HostConfig"]["Memory"] == GIB  # test-medium, not the default test-small
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["JUPYTERHUB_DEFAULT_URL"] == "/app/"
    assert json.loads(env["BENCHHUB_APP"])["port"] == 8765


def test_the_workspace_link_opens_the_web_app_for_its_owner(hub, webapp):
    session, answer = hub.log_in(OWNER, PASSWORD)
    assert answer.status_code == 302
    # the link on the home page is the server's URL: it opens the app (through the OAuth login)
    r = session.get(f"{hub.url}/user/{OWNER}/site/", timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.url == f"{hub.url}/user/{OWNER}/site/app/"
    assert MARKER in r.text  # the app's own page: its listing of /data


def test_another_user_does_not_reach_the_web_app(hub, webapp):
    hub.ensure_user(OTHER)
    session, answer = hub.log_in(OTHER, PASSWORD)
    assert answer.status_code == 302
    r = session.get(f"{hub.url}/user/{OWNER}/site/app/", timeout=60)
    assert r.status_code == 403
    assert MARKER not in r.text
    token = user_token(hub, OTHER)
    r = requests.get(
        f"{hub.url}/user/{OWNER}/site/app/",
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=60,
    )
    assert r.status_code in (302, 403)
    assert MARKER not in r.text


def test_without_a_login_the_web_app_sends_the_browser_to_the_hub_login(hub, webapp):
    r = requests.get(f"{hub.url}/user/{OWNER}/site/app/", timeout=60)
    assert r.url.startswith(f"{hub.url}/hub/login")
    assert MARKER not in r.text


# ---- R: install.packages as the workspace user, kept across a restart ----------------------------

# A tiny source package in a local CRAN-like repository (CRAN itself is not reachable from
# these machines): install.packages() sees the same thing it sees on a mirror.
LOCAL_REPOSITORY = r"""
set -e
mkdir -p /tmp/pkg/benchhello/R /tmp/repo/src/contrib
cd /tmp/pkg
printf '%s\n' 'Package: benchhello' 'Version: 0.1.0' 'Title: Says Hello' \
  'Description: A package for the test.' 'License: MIT' 'Author: Bench Hub' \
  'Maintainer: Bench Hub <bench@example.org>' 'Encoding: UTF-8' > benchhello/DESCRIPTION
echo 'export(hello)' > benchhello/NAMESPACE
echo 'hello <- function() "hello from benchhello"' > benchhello/R/hello.R
R CMD build --no-manual benchhello
cp benchhello_0.1.0.tar.gz /tmp/repo/src/contrib/
Rscript -e 'tools::write_PACKAGES("/tmp/repo/src/contrib", type = "source")'
"""


@pytest.fixture(scope="module")
def r_workspace(hub) -> tuple[str, str]:
    """(user, workspace) of a running workspace of the R template."""
    hub.ensure_user("rosa")
    hub.start_workspace("rosa", "stats", {"image": "r", "storage_gb": 1})
    return "rosa", "stats"


def test_the_r_template_has_the_r_kernel_and_the_common_packages(hub, r_workspace):
    container = hub.container_name(*r_workspace)
    kernels = exec_in(container, "jupyter kernelspec list --json")
    assert "ir" in json.loads(kernels.stdout)["kernelspecs"]
    loaded = exec_in(
        container,
        'Rscript -e \'for (p in c("ggplot2", "dplyr", "data.table")) '
        'library(p, character.only = TRUE); cat("ok")\'',
    )
    assert loaded.returncode == 0 and loaded.stdout.endswith("ok"), loaded.stderr


def test_install_packages_in_the_r_template_goes_to_the_home_library_and_is_kept(hub, r_workspace):
    user, ws = r_workspace
    container = hub.container_name(user, ws)
    made = exec_in(container, LOCAL_REPOSITORY)
    assert made.returncode == 0, made.stdout + made.stderr
    installed = exec_in(
        container,
        'Rscript -e \'install.packages("benchhello", repos = "file:///tmp/repo"); '
        'cat(find.package("benchhello"))\'',
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.strip().endswith("/home/jovyan/R/library/benchhello")

    # the stop takes a checkpoint of the container's files (the home too); the start restores it
    hub.stop_workspace(user, ws)
    hub.start_workspace(user, ws)
    loaded = exec_in(container, "Rscript -e 'library(benchhello); cat(hello())'")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "hello from benchhello"


# ---- VS Code follows the workspace's upload and download rights ----------------------------------


def code_server_arguments(hub: HubProcess, user: str, ws: str) -> str:
    """code-server's command line in the workspace, once the app answers through the hub (the
    server starts it at the first request)."""
    token = user_token(hub, user)

    def answers() -> bool:
        r = requests.get(
            f"{hub.url}/user/{user}/{ws}/app/",
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        return r.status_code == 200

    wait(answers, 120, f"code-server answers in {user}/{ws}", step=1)
    ps = exec_in(hub.container_name(user, ws), "ps -eo args | grep -e '[-]-bind-addr=127.0.0.1'")
    return ps.stdout


def test_vscode_refuses_its_own_upload_and_download_when_the_rights_are_off_and_not_otherwise(hub):
    user, ws = "vera", "code"
    hub.ensure_user(user)
    sealed = {"image": "vscode", "storage_gb": 1, "resource_model": "test-medium"}
    sealed["permissions"] = {"upload": False, "download": False}
    hub.start_workspace(user, ws, sealed)
    arguments = code_server_arguments(hub, user, ws)
    assert "--disable-file-uploads" in arguments and "--disable-file-downloads" in arguments
    hub.stop_workspace(user, ws)

    r = hub.api("PATCH", f"/users/{user}/servers/{ws}", {"user_options": {"permissions": {}}})
    assert r.ok, r.text
    hub.start_workspace(user, ws)
    arguments = code_server_arguments(hub, user, ws)
    assert "/data" in arguments, arguments  # it is code-server's command line ...
    assert "--disable-file" not in arguments  # ... with the rights on (the default)
    hub.stop_workspace(user, ws)
