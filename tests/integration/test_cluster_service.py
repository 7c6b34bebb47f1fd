"""Workspace clusters for real: the clusters hub service on a real hub, real Grid Engine
containers, jobs submitted from inside the workspace as its user.

Hub "benchclus" runs the service with its pacing shortened by configuration: a pass every
second (and at once on Docker events), 2 s of stabilisation between scale operations and a
minimum member lifetime of 8 s (ICA Bench: 300 s). Members are "standard-small" (2 CPUs, 8 GB;
without a dedicated manager one core is reserved, so each offers 1 core and 7.2 GiB to jobs).
The tests run in order on one workspace, alice/lab; bob is another user.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests
from support.cluster_harness import (
    Clusters,
    cluster_env,
    members_in,
    remove_cluster_leftovers,
)
from support.docker_cli import cleanup, docker, exec_in
from support.host_ids import workspace_user_host_ids
from support.hub_harness import PASSWORD, TOKEN, UNRUNNABLE_MODEL, HubProcess
from support.waiting import wait

from hub_services.clusters.pacing import host_start_window
from hub_services.clusters.spares import default_spares

PREFIX = "benchclus"
WORKSPACE_IMAGE = "benchhub/jupyterlab:latest"  # the hub harness's workspace image
MIN_LIFETIME_S = 8
MEMBER = "standard-small"
JOB = """#!/bin/bash
echo "task=$SGE_TASK_ID host=$(hostname) uid=$(id -u) tmp=$TMPDIR"
"""


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            **cluster_env(scratch, "10.233.0.0/20", 2, MIN_LIFETIME_S),
        },
    )
    probe = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "test", WORKSPACE_IMAGE, "-x", "/usr/bin/qsub"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{WORKSPACE_IMAGE} has no Grid Engine client; rebuild it: images/build.sh jupyterlab"
        )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    for user in ("alice", "bob"):
        hub.ensure_user(user)
    hub.start_workspace("alice", "lab", {"resource_model": "test-small"})
    yield Clusters(hub, scratch)
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def test_others_get_403_and_bad_settings_a_400_naming_the_field(clusters):
    static = {"type": "static", "members": 2, "resource_model": MEMBER}
    for method in ("GET", "POST", "DELETE"):
        r = clusters.api(method, body=static, user="bob")
        assert r.status_code == 403, (method, r.text)
        assert "only alice or an admin" in r.json()["message"]
    refused = {
        "members": {"type": "static", "members": 0},
        "max_members": {"type": "dynamic", "min_members": 3, "max_members": 51},
        "colour": {"type": "static", "members": 1, "colour": "blue"},
        "web_access": {**static, "web_access": "sometimes"},
        "resource_model": {**static, "resource_model": UNRUNNABLE_MODEL},  # 4096 CPUs
    }
    for field, body in refused.items():
        r = clusters.api("POST", body=body)
        assert r.status_code == 400, (field, r.text)
        assert r.json()["message"].startswith(field) or f"; {field}" in r.json()["message"], r.text
    assert "this host has" in clusters.api("POST", body=refused["resource_model"]).json()["message"]
    r = clusters.api("POST", "alice/absent", body=static)
    assert r.status_code == 409 and "not running" in r.json()["message"]
    assert clusters.status() is None  # nothing was created
    assert clusters.api("GET", user="bob").status_code == 403


def test_the_page_in_the_services_menu_starts_and_stops_a_cluster_as_its_script_does(clusters):
    url = clusters.hub.url
    browser = requests.Session()
    browser.get(f"{url}/hub/login")  # sets the _xsrf cookie the form posts back
    form = {"username": "alice", "password": PASSWORD, "_xsrf": browser.cookies["_xsrf"]}
    assert browser.post(f"{url}/hub/login", data=form).ok
    assert "/services/clusters/" in browser.get(f"{url}/hub/home").text  # the Services menu
    page = browser.get(f"{url}/services/clusters/")  # OAuth without a confirm page
    assert page.ok and "<h2>lab</h2>" in page.text and "Start cluster" in page.text
    assert f'value="{UNRUNNABLE_MODEL}" disabled' in page.text  # no host can run it
    assert 'href="/hub/home"' in page.text  # the hub's navbar, with the way back home
    data = re.search(r'<script type="application/json" id="bench-data">(.*?)</script>', page.text)
    xsrf = json.loads(data.group(1))["xsrf"]
    api = f"{url}/services/clusters/api/clusters/alice/lab"
    body = {"type": "static", "members": 1, "resource_model": MEMBER}
    assert browser.post(api, json=body).status_code == 403  # a cookie without the XSRF token
    r = browser.post(api, json=body, headers={"X-XSRFToken": xsrf})
    assert r.status_code == 202, r.text
    assert "Stop cluster" in browser.get(f"{url}/services/clusters/").text
    assert browser.delete(api, headers={"X-XSRFToken": xsrf}).status_code == 202
    wait(lambda: clusters.status() is None, 30, "the cluster is gone")


def test_static_cluster_runs_an_array_job_from_the_workspace_and_qacct_reports_it(clusters):
    r = clusters.api(
        "POST", body={"type": "static", "members": 2, "resource_model": MEMBER, "scratch_gb": 1}
    )
    assert r.status_code == 202, r.text
    started = time.monotonic()
    members = wait(lambda: members_in("idle")(clusters, 2), 60, "2 members are idle")
    print(f"MEASURED static cluster of 2 ready in {time.monotonic() - started:.1f} s")
    names = {m["name"] for m in members}
    assert (clusters.status()["status"], clusters.status()["reason"]) == ("running", "")
    assert all(m["free"] == {"cores": 1, "memory_bytes": 7372 * 1024**2} for m in members)
    assert names <= set(clusters.sh("qhost").split())  # the workspace's client sees them
    clusters.script("job.sh", JOB)
    job = clusters.submit("-cwd", "-o", "/data/out", "-e", "/data/out", "-t", "1-4", "job.sh")
    tasks = wait(
        lambda: clusters.qacct_tasks(job) == ["1", "2", "3", "4"],
        60,
        f"qacct in the workspace reports the 4 tasks of job {job}",
    )
    assert tasks
    outputs = [clusters.data / "out" / f"job.sh.o{job}.{task}" for task in range(1, 5)]
    lines = [dict(kv.split("=", 1) for kv in p.read_text().split()) for p in outputs]
    assert {line["host"] for line in lines} <= names
    assert {line["uid"] for line in lines} == {"1000"}
    assert {p.stat().st_uid for p in outputs} == {workspace_user_host_ids()[0]}
    assert all(line["tmp"].startswith("/scratch/") for line in lines)
    report = clusters.sh(f"qacct -j {job}")
    assert {line.split()[1] for line in report.splitlines() if line.startswith("owner")} == {
        "jovyan"
    }


def test_a_cluster_used_only_through_grid_engine_runs_no_java_on_its_members(clusters):
    # the static cluster of the test before, after its array job ran (issue 17: a Spark
    # worker JVM on every member slowed every member's start)
    status = clusters.status()
    assert status["spark"]["in_use"] is False and status["spark"]["workers"] == 0, status
    for member in status["members"]:
        found = subprocess.run(
            ["docker", "exec", member["name"], "pgrep", "-a", "java"],
            capture_output=True,
            text=True,
        )
        assert found.returncode == 1, (member["name"], found.stdout)  # 1: no such process
    assert "Spark" not in clusters.scaler_log()


def test_consumables_refuse_to_oversubscribe_and_a_never_fitting_job_is_reported(clusters):
    sleepers = [
        clusters.submit(
            "-l", "static_cores=1", "-o", "/dev/null", "-e", "/dev/null", "-b", "y", "sleep", "60"
        )
        for _ in range(3)
    ]
    huge = clusters.submit("-l", "static_mem=20G", "-b", "y", "true")

    def settled():
        status = clusters.status()
        running = sum(m["running_jobs"] for m in status["members"])
        waiting = {p["job_id"] for p in status["pending"]}
        # (a view observed after both submissions: the huge job is pending in it)
        return running == 2 and len(waiting & set(sleepers)) == 1 and huge in waiting and status

    status = wait(settled, 30, "2 jobs run (one core each member) and the third waits")
    assert [u["job_id"] for u in status["unsatisfiable"]] == [huge]
    assert (
        "20 GiB per task, more than one member offers (1 core, 7.2 GiB)"
        in (status["unsatisfiable"][0]["reason"])
    )
    wait(
        lambda: f"never scheduled: job {huge} asks" in clusters.scaler_log(),
        10,
        "the scaler log names the never-fitting job",
    )
    clusters.sh(f"qdel {' '.join(sleepers)} {huge}")
    wait(lambda: not clusters.status()["pending"], 30, "the queue is empty")


def test_a_killed_member_is_replaced_and_its_job_runs_again(clusters):
    clusters.script("survivor.sh", "#!/bin/sh\nsleep 4\nhostname > /data/out/survivor\n")
    job = clusters.submit("-o", "/dev/null", "-e", "/dev/null", "survivor.sh")

    victim = wait(lambda: clusters.running_on(job), 30, f"job {job} runs")
    docker("kill", victim)
    wait(
        lambda: f"member {victim} lost: killed" in clusters.scaler_log(),
        20,
        f"the scaler log reports {victim} lost",
    )
    assert "1 running job rescheduled" in clusters.scaler_log()
    members = wait(lambda: members_in("idle")(clusters, 2), 60, "2 idle members again")
    assert victim not in {m["name"] for m in members}
    survivor = clusters.data / "out" / "survivor"
    # (the file exists from the shell's redirection on, before hostname wrote to it)
    wait(lambda: survivor.exists() and survivor.read_text().strip(), 30, f"job {job} ran again")
    assert survivor.read_text().strip() in {m["name"] for m in members}


def test_restarting_the_service_re_adopts_the_running_cluster(clusters):
    before = clusters.status()
    containers = clusters.containers(before["cluster_id"])
    assert len(containers) == 3  # manager and 2 members
    pid = clusters.service_pid()
    assert pid is not None, "the clusters service is not running"
    os.kill(pid, signal.SIGKILL)
    # the hub notices a dead managed service when it polls it: every 30 s (with jitter)
    wait(lambda: clusters.service_pid() not in (None, pid), 75, "the hub restarted it")
    wait(lambda: clusters.api("GET").ok, 30, "the restarted service answers")
    after = wait(lambda: members_in("idle")(clusters, 2), 30, "it sees both members idle")
    assert {m["name"] for m in after} == {m["name"] for m in before["members"]}
    assert clusters.containers(before["cluster_id"]) == containers  # adopted, not recreated
    job = clusters.submit("-sync", "y", "-o", "/dev/null", "-e", "/dev/null", "-b", "y", "true")
    wait(lambda: clusters.qacct_tasks(job), 10, f"qacct reports job {job}")


def queue_states(clusters) -> dict[str, str]:
    """``{queue instance: its states}`` of the members' hosts, from ``qstat -f`` in the
    workspace (the manager's own queue instance, disabled, left out)."""
    root = ET.fromstring(clusters.sh("qstat -f -xml"))
    states = {q.findtext("name"): q.findtext("state") or "" for q in root.iter("Queue-List")}
    return {name: state for name, state in states.items() if not name.endswith("-manager")}


def test_dynamic_cluster_scales_from_zero_for_pending_work_and_back(clusters):
    old = clusters.status()["cluster_id"]
    assert clusters.api("DELETE").status_code == 202
    wait(
        lambda: clusters.status() is None and not clusters.containers(old),
        30,
        "the static cluster is gone",
    )
    assert not docker("network", "ls", "-q", "--filter", f"name={PREFIX}-cluster-{old}").strip()
    assert not list(clusters.scratch.rglob("data.ext4"))  # the members' scratch went with them
    assert "unable to read qmaster name" in exec_in(clusters.workspace, "qstat", "1000").stderr
    r = clusters.api(
        "POST",
        body={"type": "dynamic", "min_members": 0, "max_members": 3, "resource_model": MEMBER},
    )
    assert r.status_code == 202, r.text
    wait(lambda: clusters.status()["status"] == "running", 60, "the manager runs")
    assert clusters.status()["members"] == []
    # its spares (hub_services/clusters/spares.py): Grid Engine hosts registered ahead of any
    # scale-up, which never reported: their queue instances are unknown ("u"), nothing runs there
    wanted = min(default_spares(host_start_window()), 3)  # two start windows, at most max
    spares = wait(
        lambda: queue_states(clusters),
        30,
        f"{wanted} spare member names registered with Grid Engine",
        until=lambda states: len(states) == wanted,
    )
    assert all("u" in state for state in spares.values()), spares
    assert clusters.status()["members"] == []  # spares are not members
    submitted = time.monotonic()
    job = clusters.submit(
        "-o", "/dev/null", "-e", "/dev/null", "-t", "1-3", "-b", "y", "sleep", "6"
    )
    wait(lambda: len(clusters.status()["members"]) == 3, 30, "3 members for 3 tasks")
    # one round, made Grid Engine hosts by one registration: every one of them takes a job
    wait(
        lambda: [m["state"] for m in clusters.status()["members"]],
        30,
        "each of the 3 members runs a task",
        until=lambda states: states == ["busy"] * 3,
    )
    wait(lambda: clusters.qacct_tasks(job) == ["1", "2", "3"], 60, "the 3 tasks ran")
    done = time.monotonic()
    print(f"MEASURED dynamic 0 -> 3 members and 3 x 6 s tasks done in {done - submitted:.1f} s")
    wait(lambda: clusters.status()["members"] == [], 60, "back to 0 members")
    print(
        f"MEASURED last task end -> 0 members: {time.monotonic() - done:.1f} s"
        f" (minimum lifetime {MIN_LIFETIME_S} s)"
    )
    log = clusters.scaler_log()
    assert "scale up by 3 to 3 members: 3 pending tasks need 3 more members" in log
    assert log.count(" drain ") == 3 and log.count(" remove ") == 3
    assert "failed to start" not in log


def test_a_restricted_workspaces_cluster_has_no_route_out_and_takes_its_jobs(clusters):
    hub = clusters.hub
    hub.start_workspace(
        "alice",
        "closed",
        {"resource_model": "test-small", "access_mode": "restricted", "whitelist": "a.test"},
    )
    closed = hub.container_name("alice", "closed")
    r = clusters.api(
        "POST", "alice/closed", {"type": "static", "members": 1, "resource_model": MEMBER}
    )
    assert r.status_code == 202, r.text
    network = r.json()["network"]
    wait(
        lambda: (
            [m["state"] for m in clusters.api("GET", "alice/closed").json()["members"]] == ["idle"]
        ),
        60,
        "the member is idle",
    )
    assert docker("network", "inspect", "-f", "{{.Internal}}", network).strip() == "true"
    attached = docker(
        "inspect", "-f", "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}", closed
    ).split()
    assert sorted(attached) == sorted([f"{PREFIX}-restricted", network])
    submit = exec_in(closed, "cd /data && qsub -sync y -b y true", user="1000")
    assert submit.returncode == 0 and "exited with exit code 0" in submit.stdout, submit.stderr
    hub.stop_workspace("alice", "closed")
    wait(lambda: clusters.api("GET", "alice/closed").status_code == 404, 20, "it is gone")


def test_stopping_the_workspace_removes_its_cluster(clusters):
    cluster_id = clusters.status()["cluster_id"]
    clusters.submit("-o", "/dev/null", "-e", "/dev/null", "-b", "y", "sleep", "300")
    wait(lambda: members_in("busy")(clusters, 1), 30, "a member runs the long job")
    started = time.monotonic()
    clusters.hub.stop_workspace("alice", "lab")
    print(f"MEASURED workspace stop with a cluster: {time.monotonic() - started:.1f} s")
    wait(
        lambda: not clusters.containers(cluster_id) and clusters.status() is None,
        20,
        "the cluster is gone",
    )
    assert not docker("network", "ls", "-q", "--filter", f"name={PREFIX}-cluster-").strip()
    assert not list(clusters.scratch.rglob("data.ext4"))
    r = requests.get(
        f"{clusters.hub.url}/services/clusters/api/health",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=10,
    )
    assert r.ok and r.json()["clusters"] == 0
