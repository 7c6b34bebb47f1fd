"""A job submitted to a dynamic cluster is seen as it is submitted, not at the next pass
(hub_services/clusters/pending_watch.py), for real: a hub whose clusters service passes only
every 600 s, so that nothing but the pending-job watch in the manager can start a member
within the test's time. Grid Engine, the manager and the members are real containers; jobs
are submitted from inside the workspace as its user.
"""

from __future__ import annotations

import time

import pytest
from support.cluster_harness import Clusters, cluster_env, remove_cluster_leftovers
from support.docker_cli import cleanup
from support.hub_harness import HubProcess
from support.waiting import wait

PREFIX = "benchclja"
INTERVAL_S = 600  # the service's own passes: none falls inside a test
MEMBER = "standard-small"


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    env = cluster_env(scratch, "10.247.0.0/20", 2, 8)
    env["BENCHHUB_CLUSTER_INTERVAL"] = str(INTERVAL_S)
    hub = HubProcess(workdir, prefix=PREFIX, env_overrides=env)
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    hub.ensure_user("alice")
    hub.start_workspace("alice", "lab", {"resource_model": "test-small"})
    yield Clusters(hub, scratch)
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def test_a_qsub_into_an_empty_dynamic_cluster_gets_its_member_long_before_the_next_pass(
    clusters,
):
    r = clusters.api(
        "POST",
        body={"type": "dynamic", "min_members": 0, "max_members": 2, "resource_model": MEMBER},
    )
    assert r.status_code == 202, r.text
    wait(lambda: (clusters.status() or {}).get("status") == "running", 90, "the manager runs")
    assert clusters.status()["members"] == []
    submitted = time.monotonic()
    job = clusters.submit("-o", "/dev/null", "-e", "/dev/null", "-b", "y", "sleep", "1")
    # the service's next own pass is up to 600 s away: only the watch can wake it
    wait(lambda: clusters.status()["members"], 60, "a member for the job")
    decided = time.monotonic() - submitted
    wait(lambda: clusters.finished(job), 120, "the job ran")
    print(f"MEASURED qsub -> member decided {decided:.1f} s (service interval {INTERVAL_S} s)")
    assert "scale up by 1 to 1 members" in clusters.scaler_log()

    # the watch runs again after each pass while the cluster can grow: more work than the
    # member's one core gets the second member, again without waiting for the interval
    jobs = [
        clusters.submit("-o", "/dev/null", "-e", "/dev/null", "-b", "y", "sleep", "5")
        for _ in range(4)
    ]
    wait(lambda: len(clusters.status()["members"]), 60, "a second member", until=lambda n: n == 2)
    wait(lambda: all(clusters.finished(j) for j in jobs), 180, "the 4 jobs ran")
    log = clusters.scaler_log()
    assert "scale up by 1 to 2 members" in log and "failed" not in log
