"""Spark on workspace clusters for real: the three PySpark kernels of the workspace image,
started as JupyterLab starts them (their kernel specs, through jupyter_client, as the
workspace's user), a Spark standalone master on the cluster's manager and workers on its
members, dynamic allocation driving the auto scaler, and the master UI through the hub.

Hub "benchspark" runs the clusters service with its pacing shortened by configuration (a
pass every second, 2 s stabilisation, members live at least 8 s). The workspace alice/lab and
the members are "standard-small" (2 CPUs, 8 GB; each member offers 1 core to executors).
"""

from __future__ import annotations

import re
import subprocess

import pytest
import requests
from support.cluster_harness import (
    Clusters,
    cluster_env,
    members_in,
    remove_cluster_leftovers,
    run_in_kernel,
)
from support.docker_cli import cleanup
from support.host_ids import workspace_user_host_ids
from support.hub_harness import HubProcess
from support.waiting import wait

PREFIX = "benchspark"
WORKSPACE_IMAGE = "benchhub/jupyterlab:latest"
MEMBER = "standard-small"
UI = "/user/alice/lab/proxy/spark-master:8080/"


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            **cluster_env(scratch, "10.235.0.0/20", 2, 8),
        },
    )
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "test",
            WORKSPACE_IMAGE,
            "-x",
            "/opt/spark/bin/spark-class",
        ],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.fail(f"{WORKSPACE_IMAGE} has no Spark; rebuild it: images/build.sh jupyterlab")
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    for user in ("alice", "bob"):
        hub.ensure_user(user)
    hub.start_workspace("alice", "lab", {"resource_model": MEMBER})
    yield Clusters(hub, scratch)
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def _values(output: str) -> dict[str, str]:
    """``KEY value`` lines the kernel code printed."""
    found = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key.isupper():
            found[key] = value.strip()
    return found


def _start(clusters: Clusters, settings: dict) -> dict:
    r = clusters.api("POST", body={"resource_model": MEMBER, **settings})
    assert r.status_code == 202, r.text
    return wait(
        lambda: (s := clusters.status()) and s["status"] == "running" and s,
        120,
        "the cluster running",
    )


def _stop(clusters: Clusters) -> None:
    assert clusters.api("DELETE").status_code in (202, 204)
    wait(lambda: clusters.status() is None, 90, "the cluster gone")


def test_local_kernel_runs_spark_in_the_workspace_and_remote_ones_say_a_cluster_is_needed(
    clusters,
):
    out = run_in_kernel(
        clusters.workspace,
        "pyspark-local",
        (
            "print('MASTER', sc.master)\n"
            "print('SUM', sc.parallelize(range(1000), 4).map(lambda x: x * 2).sum())\n"
        ),
    )
    assert _values(out) == {"MASTER": "local[*]", "SUM": "999000"}, out
    conf = (clusters.data / ".spark/local/conf/spark-defaults.conf").read_text()
    assert re.search(r"^spark\.master\s+local\[\*\]$", conf, re.M), conf
    written = (clusters.data / ".spark/local/conf/spark-defaults.conf").stat().st_uid
    assert written == workspace_user_host_ids()[0]  # the workspace user's (1000 inside)

    code = "print('SC', sc)\nsc.parallelize([1])"
    out = run_in_kernel(clusters.workspace, "pyspark-remote", code)
    assert _values(out)["SC"].startswith(
        "<no Spark: this kernel runs Spark on the workspace's "
        "cluster, and none is running: start a cluster"
    ), out
    assert "ERROR RuntimeError this kernel runs Spark on the workspace's cluster" in out, out
    kernels = requests.get(
        f"{clusters.hub.url}/user/alice/lab/api/kernelspecs",
        timeout=30,
        headers={"Authorization": f"token {clusters.token('alice')}"},
    )
    names = {spec["spec"]["display_name"] for spec in kernels.json()["kernelspecs"].values()}
    assert {"PySpark – Local", "PySpark – Remote", "PySpark – Remote - Dynamic"} <= names


def _java_on(member: str) -> bool:
    found = subprocess.run(["docker", "exec", member, "pgrep", "java"], capture_output=True)
    assert found.returncode in (0, 1), found  # 1: no such process
    return found.returncode == 0


def test_remote_kernel_runs_executors_on_the_members_and_the_ui_is_the_owners_only(clusters):
    status = _start(clusters, {"type": "static", "members": 2, "web_access": True})
    assert status["spark"]["web_ui"] == UI
    wait(lambda: members_in("idle")(clusters, 2), 120, "2 members idle")
    members = {m["name"] for m in clusters.status()["members"]}
    # no Spark used yet: the members run no Spark worker (no JVM at all) ...
    assert clusters.status()["spark"]["workers"] == 0
    assert not any(_java_on(m) for m in members)

    conf = clusters.data / ".spark/remote/conf/spark-defaults.conf"
    conf.unlink(missing_ok=True)  # written again with the defaults for these members
    code = (
        "import socket, time\n"
        "print('MASTER', sc.master)\n"
        "print('APP', sc.appName)\n"
        "def host(x):\n"
        "    time.sleep(1)\n"
        "    return socket.gethostname()\n"
        "hosts = sc.parallelize(range(8), 8).map(host)\n"
        "print('HOSTS', ','.join(sorted(set(hosts.collect()))))\n"
        "print('EXECUTORS', sc._jsc.sc().getExecutorMemoryStatus().size() - 1)\n"
    )
    out = _values(run_in_kernel(clusters.workspace, "pyspark-remote", code))
    assert out["MASTER"] == "spark://spark-master:7077" and out["APP"] == "pyspark-remote", out
    assert out["HOSTS"] and set(out["HOSTS"].split(",")) <= members, out
    assert int(out["EXECUTORS"]) >= 1, out
    # ... until the kernel's application registered: then every member got its worker
    assert clusters.status()["spark"]["in_use"] is True
    wait(lambda: clusters.status()["spark"]["workers"] == 2, 60, "2 Spark workers")
    assert all(_java_on(m) for m in members)
    assert re.search(
        r"Spark is in use \(1 Spark application registered with the master\)", clusters.scaler_log()
    ), clusters.scaler_log()
    text = conf.read_text()
    assert re.search(r"^spark\.executor\.cores\s+1$", text, re.M), text  # a member's 1 core

    # a change to spark-defaults.conf takes effect when the kernel starts again
    conf.write_text(text.replace("pyspark-remote", "edited-by-alice"))
    out = _values(run_in_kernel(clusters.workspace, "pyspark-remote", "print('APP', sc.appName)"))
    assert out["APP"] == "edited-by-alice", out

    owner = requests.get(
        f"{clusters.hub.url}{UI}",
        timeout=30,
        headers={"Authorization": f"token {clusters.token('alice')}"},
    )
    assert owner.status_code == 200, owner.text[:500]
    assert "Spark Master at spark://spark-master:7077" in owner.text
    assert f"{UI}static/" in owner.text  # links go through the proxy too (reverse proxy)
    other = requests.get(
        f"{clusters.hub.url}{UI}",
        timeout=30,
        allow_redirects=False,
        headers={"Authorization": f"token {clusters.token('bob')}"},
    )
    assert other.status_code == 403, (other.status_code, other.text[:300])
    _stop(clusters)
    assert not (clusters.data / ".spark/cluster.json").exists()


def test_remote_dynamic_kernel_adds_executors_the_cluster_scales_for_and_removes_them(clusters):
    status = _start(clusters, {"type": "dynamic", "min_members": 0, "max_members": 2})
    assert status["members"] == [] and status["spark"]["web_ui"] is None
    conf = clusters.data / ".spark/remote/conf-dynamic/spark-defaults.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "spark.master                                 spark://spark-master:7077\n"
        "spark.driver.host                            workspace\n"
        "spark.driver.bindAddress                     0.0.0.0\n"
        "spark.executor.cores                         1\n"
        "spark.executor.memory                        1g\n"
        "spark.dynamicAllocation.enabled              true\n"
        "spark.dynamicAllocation.shuffleTracking.enabled true\n"
        "spark.dynamicAllocation.executorIdleTimeout  5s\n"
        "spark.dynamicAllocation.maxExecutors         2\n"
    )
    code = (
        "import time\n"
        "status = sc._jsc.sc().getExecutorMemoryStatus\n"
        "print('BEFORE', status().size() - 1)\n"
        "total = sc.parallelize(range(4), 4).map(lambda x: (time.sleep(3), x)[1]).sum()\n"
        "print('SUM', total)\n"
        "print('PEAK', status().size() - 1)\n"
        "deadline = time.time() + 180\n"
        "while status().size() > 1 and time.time() < deadline:\n"
        "    time.sleep(1)\n"
        "print('AFTER', status().size() - 1)\n"
    )
    out = _values(run_in_kernel(clusters.workspace, "pyspark-remote-dynamic", code))
    assert out["BEFORE"] == "0" and out["SUM"] == "6" and out["AFTER"] == "0", out
    assert 1 <= int(out["PEAK"]) <= 2, out
    log = clusters.scaler_log()
    assert re.search(r"scale up by [12] to [12] members: \d+ pending tasks? need", log), log
    wait(lambda: clusters.status()["members"] == [], 120, "back to 0 members")
    assert re.search(r"remove \S+-m\d+: ", clusters.scaler_log())

    refused = requests.get(
        f"{clusters.hub.url}{UI}",
        timeout=30,
        headers={"Authorization": f"token {clusters.token('alice')}"},
    )
    assert refused.status_code == 403, refused.status_code  # web access is off
    _stop(clusters)
