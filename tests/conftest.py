"""Shared fixtures: a real hub on the real Docker Engine, cleaned up after the run.

When a test fails, the hub's log tail and the logs of the run's workspace containers are
printed (as dockerspawner's own test suite does), so a CI failure explains itself.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_harness import HubProcess  # noqa: E402

from hub_services.egress import firewall  # noqa: E402

PREFIX = "benchtest"


def docker(*args: str, check: bool = True) -> str:
    """Run the docker CLI; return stdout."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def exec_in(container: str, script: str, user: str | None = None) -> subprocess.CompletedProcess:
    """Run a shell script inside a workspace container (as its own user unless given)."""
    argv = ["docker", "exec"] + (["-u", user] if user else []) + [container, "sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def _cleanup(prefix: str, storage_root: Path) -> None:
    ids = docker("ps", "-aq", "--filter", f"name=^{prefix}-", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    restricted = docker("network", "ls", "-q", "--no-trunc", "--filter",
                        f"name=^{prefix}-restricted$", check=False).split()  # fmt: skip
    for net_id in restricted:
        asyncio.run(firewall.remove(net_id))
    for net in (f"{prefix}-open", f"{prefix}-restricted", f"{prefix}-egress-out"):
        docker("network", "rm", net, check=False)
    if storage_root.exists():
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
        for target in mounts.stdout.split():
            if target.startswith(str(storage_root)):
                subprocess.run(["umount", "-l", target], check=False)
        for image in storage_root.rglob("data.ext4"):
            loops = subprocess.run(["losetup", "-j", str(image), "-O", "NAME", "-n"],
                                   capture_output=True, text=True).stdout.split()  # fmt: skip
            for loop in loops:
                subprocess.run(["losetup", "-d", loop], check=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub")
    h = HubProcess(workdir, prefix=PREFIX)
    _cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    _cleanup(PREFIX, h.storage_root)


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    failed = getattr(request.node, "rep_call", None)
    if not (failed and failed.failed) or "hub" not in request.fixturenames:
        return
    h = request.getfixturevalue("hub")
    print(f"\n----- hub log (tail) -----\n{h.log_tail()}")
    for name in docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{PREFIX}-",
                       check=False).split():  # fmt: skip
        print(f"----- docker logs {name} -----")
        print(docker("logs", "--tail", "30", name, check=False))
