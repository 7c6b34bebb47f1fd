"""Shared fixtures: a real hub on the real Docker Engine, cleaned up after the run.

When a test fails, the hub's log tail and the logs of the run's workspace containers are
printed (as dockerspawner's own test suite does), so a CI failure explains itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docker_cli import cleanup, docker  # noqa: E402
from hub_harness import TEST_PREFIX, HubProcess  # noqa: E402


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub")
    h = HubProcess(workdir, prefix=TEST_PREFIX)
    cleanup(TEST_PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(TEST_PREFIX, h.storage_root)


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    failed = getattr(request.node, "rep_call", None)
    if not (failed and failed.failed) or "hub" not in request.fixturenames:
        return
    h = request.getfixturevalue("hub")
    print(f"\n----- hub log (tail) -----\n{h.log_tail()}")
    for name in docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{TEST_PREFIX}-",
                       check=False).split():  # fmt: skip
        print(f"----- docker logs {name} -----")
        print(docker("logs", "--tail", "30", name, check=False))
