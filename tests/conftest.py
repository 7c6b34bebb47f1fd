"""Shared fixtures: a real hub on the real Docker Engine, cleaned up after the run.

When a test fails, whatever its fixtures can tell about it is printed (as dockerspawner's own
test suite does), so a CI failure explains itself: the ``failure_sections()`` of every fixture
value that has them (a hub: its log tail and its containers' logs; a cluster: also the
scaler's and Spark's logs) or has a ``hub`` with them, and of the test module if it defines
that function (e.g. the logs of the containers it runs without a hub).
"""

from __future__ import annotations

import pytest
from support.cluster_harness import CLUSTER_IMAGE, image_present
from support.docker_cli import cleanup
from support.hub_harness import TEST_PREFIX, HubProcess

# What `make test` builds before the suite. A test outside tests/unit with one of them absent
# fails (it is a broken build), never skips: a skipped test proves nothing.
IMAGES = ("benchhub/jupyterlab:latest", "benchhub/egress:latest", CLUSTER_IMAGE)


@pytest.fixture(scope="session")
def built_images() -> None:
    missing = [image for image in IMAGES if not image_present(image)]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}; build them: make images", False)


@pytest.fixture(autouse=True)
def _images_built(request):
    if "unit" not in request.path.parts:
        request.getfixturevalue("built_images")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub")
    # Every test module adds workspaces to this one hub (1 GB sparse /data each, kept until the
    # session ends); a fixed capacity keeps their admission independent of the machine's free
    # disk. Admission itself is tested on its own hub (tests/security/test_storage.py).
    h = HubProcess(
        workdir, prefix=TEST_PREFIX, env_overrides={"BENCHHUB_STORAGE_CAPACITY_GB": "1000"}
    )
    cleanup(TEST_PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(TEST_PREFIX, h.storage_root)


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    failed = getattr(request.node, "rep_call", None)
    if not (failed and failed.failed):
        return
    sections: dict[str, str] = {}  # by title: a hub shared by two fixtures is printed once
    sources = [request.module]
    for value in getattr(request.node, "funcargs", {}).values():  # fixtures already set up
        sources.append(value if hasattr(value, "failure_sections") else getattr(value, "hub", None))
    for source in sources:
        if callable(getattr(source, "failure_sections", None)):
            sections.update(source.failure_sections())
    for title, text in sections.items():
        print(f"\n----- {title} -----\n{text}")
