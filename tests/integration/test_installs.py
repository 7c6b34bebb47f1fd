"""Installing software in a workspace, as its user would, and finding it again after a restart.

A real workspace through the hub, on the real engine (which remaps user ids: root inside a
workspace is not root on the host). A terminal is ``docker exec`` as uid 1000 with the
container's environment (what JupyterLab's terminal runs with); a notebook cell runs in a real
kernel through the hub (:func:`support.kernels.run_cell`). The package index and the Debian
mirror are reached directly (open access mode). Stop takes a checkpoint and start restores it:
what was installed comes back from the checkpoint, not from the image.
"""

from __future__ import annotations

import json

from support.docker_cli import exec_in
from support.host_ids import container_root_host_uid
from support.kernels import run_cell

USER, WORKSPACE = "ines", "installs"
# Small, pure-Python packages that the image does not ship (checked below), and two tiny
# Debian packages (hello: GNU hello, needs only libc; tree: the same).
TERMINAL_PIP, NOTEBOOK_PIP = "tabulate", "termcolor"
APT_PLAIN, APT_SUDO = "hello", "tree"


def terminal(container: str, script: str):
    """Run ``script`` as the workspace user (uid 1000) in a login-less shell, as a terminal."""
    return exec_in(container, script, user="1000")


def test_pip_and_apt_work_for_the_workspace_user_and_survive_stop_and_start(hub):
    if container_root_host_uid() == 0:
        raise AssertionError("this test needs an engine that remaps user ids (docs/security.md)")
    hub.ensure_user(USER)
    hub.start_workspace(USER, WORKSPACE, {"storage_gb": 1})
    name = hub.container_name(USER, WORKSPACE)
    missing = terminal(name, f"python -c 'import {TERMINAL_PIP}' 2>&1; which {APT_SUDO}; true")
    assert "No module named" in missing.stdout and f"/{APT_SUDO}" not in missing.stdout

    pip = terminal(name, f"pip install {TERMINAL_PIP} 2>&1")
    assert pip.returncode == 0, pip.stdout
    assert f"Successfully installed {TERMINAL_PIP}" in pip.stdout

    cell = run_cell(hub, USER, WORKSPACE, f"%pip install {NOTEBOOK_PIP}\nimport {TERMINAL_PIP}")
    assert cell.status == "ok", (cell.error, cell.output)
    assert f"Successfully installed {NOTEBOOK_PIP}" in cell.output

    plain = terminal(name, f"apt-get install -y {APT_PLAIN} 2>&1")  # no sudo typed
    assert plain.returncode == 0, plain.stdout
    with_sudo = terminal(name, f"sudo apt-get install -y {APT_SUDO} 2>&1")
    assert with_sudo.returncode == 0, with_sudo.stdout

    hub.stop_workspace(USER, WORKSPACE)
    hub.start_workspace(USER, WORKSPACE)
    record = json.loads((hub.storage_root / USER / WORKSPACE / "checkpoints.json").read_text())
    assert record["last"]["reason"] == "restored"  # from the checkpoint taken on stop

    after = terminal(
        name,
        f"python -c 'import {TERMINAL_PIP}, {NOTEBOOK_PIP}; print(\"pip ok\")' && "
        f"{APT_PLAIN} && {APT_SUDO} -L 1 /data >/dev/null && echo apt ok; "
        f"stat -c %U /opt/venv/lib/python3*/site-packages/{TERMINAL_PIP}-*.dist-info",
    )
    assert after.stdout.splitlines() == ["pip ok", "Hello, world!", "apt ok", "jovyan"], after
    again = run_cell(hub, USER, WORKSPACE, f"import {NOTEBOOK_PIP}; print('kernel ok')")
    assert again.output == "kernel ok\n", again
    hub.stop_workspace(USER, WORKSPACE)


def test_a_package_that_does_not_exist_says_so_and_changes_nothing(hub):
    hub.ensure_user(USER)
    hub.start_workspace(USER, "typo", {"storage_gb": 1})
    name = hub.container_name(USER, "typo")
    apt = terminal(name, "apt-get install -y no-such-package-benchhub 2>&1")
    assert apt.returncode != 0 and "Unable to locate package" in apt.stdout
    pip = terminal(name, "pip install no-such-package-benchhub-0 2>&1")
    assert pip.returncode != 0 and "No matching distribution" in pip.stdout
    assert terminal(name, "pip check").returncode == 0  # the environment is still whole
    hub.stop_workspace(USER, "typo")
