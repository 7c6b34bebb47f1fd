"""A real Son of Grid Engine cluster in containers: a manager and members of benchhub/cluster,
configured only through hub_services.clusters.sge, on a network with its own subnet.

What a user of a workspace cluster notices: members join, an array job's tasks all run as the
user and write to the shared /data, qacct reports them, the scheduler runs every second (so a
trivial job does not wait Grid Engine's default 15 s), and a job larger than any member waits
while the auto scaler calls it unsatisfiable instead of adding members. The tests wait for
conditions and assert no durations; join time and job latency are printed (run with -s) and
benchmarks/clusters.py measures them.
The image is $BENCHHUB_CLUSTER_IMAGE (default benchhub/cluster:latest, built by images/build.sh);
the tests skip without it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.cluster_harness import CLUSTER_IMAGE
from support.docker_cli import container_logs, docker
from support.host_ids import workspace_user_host_ids
from support.waiting import wait

from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from hub_services.clusters import sge
from hub_services.clusters.scaling import Member, decide
from hub_services.clusters.settings import ClusterSchema

PREFIX = "clustertest"
NETWORK = f"{PREFIX}-net"
SUBNET, MANAGER_IP = "10.230.7.0/24", "10.230.7.2"
MANAGER = f"{PREFIX}-manager"
MODELS = load_catalog(DEFAULT_RESOURCE_MODELS)
SETTINGS = ClusterSchema(MODELS).parse({"type": "dynamic", "min_members": 2, "max_members": 5})
POLICY = SETTINGS.scaling_policy(MODELS[SETTINGS.resource_model])  # standard-medium: 3 cores
TASK = """#!/bin/bash
echo "task=$SGE_TASK_ID host=$(hostname) uid=$(id -u) tmp=$TMPDIR" > /data/out/task.$SGE_TASK_ID
"""


def qexec(
    *argv: str,
    user: str | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run ``argv`` in the manager container (as ``user``, in /data)."""
    cmd = ["docker", "exec", "-i", "-w", "/data"] + (["-u", user] if user else [])
    out = subprocess.run(
        [*cmd, MANAGER, *argv], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr}")
    return out


def members_now() -> dict[str, sge.HostState]:
    """The execution hosts but the manager (a disabled placeholder without capacity)."""
    qhost = qexec(*sge.HOSTS_ARGV).stdout
    hosts = sge.parse_members(qhost, qexec(*sge.QUEUES_ARGV).stdout)
    return {name: host for name, host in hosts.items() if name != MANAGER}


def remove_everything() -> None:
    names = docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).split()
    if names:
        docker("rm", "-f", "-v", *names, check=False)
    docker("network", "rm", NETWORK, check=False)


def logs(name: str, tail: str = "all") -> str:
    """A container's log; the daemons and the entry point write to stderr."""
    out = subprocess.run(
        ["docker", "logs", "--tail", tail, name], capture_output=True, text=True, timeout=30
    )
    return out.stdout + out.stderr


def failure_sections() -> dict[str, str]:
    """Printed when a test here fails (tests/conftest.py): the containers' logs."""
    return container_logs(PREFIX, tail=40)


def start_member(name: str, ip: str, data: Path, register: bool = True) -> float:
    """Add ``name`` on the manager (unless ``register`` is False: it was), start its
    container; seconds until it reports."""
    if register:
        config = sge.exec_host_config(name, POLICY.capacity)
        qexec("bench-sge", "add-member", name, ip, stdin=config)
    started = time.monotonic()
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        name,
        "--network",
        NETWORK,
        "--ip",
        ip,
        "-v",
        f"{data}:/data",
        CLUSTER_IMAGE,
        "member",
        MANAGER,
    )
    wait(
        lambda: (host := members_now().get(name)) is not None and host.reporting,
        60,
        f"{name} reports to the manager",
    )
    return time.monotonic() - started


class Cluster:
    """The running test cluster: its shared /data on the host and what was measured."""

    def __init__(self, data: Path):
        self.data = data
        self.started_at: dict[str, datetime] = {}
        self.measured: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    remove_everything()
    config, data = tmp_path_factory.mktemp("sge-config"), tmp_path_factory.mktemp("sge-data")
    config.chmod(0o755)  # as the service's: container root is another host uid, not its owner
    for path, text in sge.config_bundle().items():
        (config / path).parent.mkdir(parents=True, exist_ok=True)
        (config / path).write_text(text)
    (data / "out").mkdir()
    (data / "task.sh").write_text(TASK)
    (data / "task.sh").chmod(0o755)
    for path in (data, data / "out", data / "task.sh"):
        os.chown(path, *workspace_user_host_ids())
    state = Cluster(data)
    try:
        docker(
            "network",
            "create",
            "--subnet",
            SUBNET,
            "-o",
            "com.docker.network.driver.mtu=1400",
            NETWORK,
        )
        started = time.monotonic()
        docker(
            "run",
            "-d",
            "--name",
            MANAGER,
            "--hostname",
            MANAGER,
            "--network",
            NETWORK,
            "--ip",
            MANAGER_IP,
            "--network-alias",
            "spark-master",  # its Spark master's name
            "-v",
            f"{config}:/etc/bench-sge:ro",
            "-v",
            f"{data}:/data",
            CLUSTER_IMAGE,
            "manager",
        )
        wait(lambda: "manager ready" in logs(MANAGER), 60, "the manager is ready")
        state.measured["manager ready s"] = time.monotonic() - started
        # the first two as a scale-up's round: registered in one go (bench-sge add-members)
        first = {f"{PREFIX}-m{index}": f"10.230.7.{10 + index}" for index in (1, 2)}
        configs = sge.exec_host_configs(list(first), POLICY.capacity)
        argv = [part for member in first.items() for part in member]
        qexec("bench-sge", "add-members", *argv, stdin=configs)
        for name, ip in first.items():
            state.measured[f"{name} join s"] = start_member(name, ip, data, register=False)
            state.started_at[name] = datetime.now(UTC)
        yield state
    except BaseException:  # a failed set-up is no test failure: print the logs here
        for title, text in failure_sections().items():
            print(f"----- {title} -----\n{text}")
        raise
    finally:
        for key, value in state.measured.items():
            print(f"MEASURED {key}: {value:.2f}")
        remove_everything()


def test_members_join_with_their_model_capacity(cluster):
    hosts = members_now()
    assert sorted(hosts) == [f"{PREFIX}-m1", f"{PREFIX}-m2"]
    for host in hosts.values():
        assert host.reporting and not host.disabled and host.running_jobs == 0
        assert host.free == POLICY.capacity  # 3 cores, 14745M: standard-medium less headroom


def test_array_job_tasks_all_run_as_the_user_and_qacct_reports_them(cluster):
    job = qexec(
        "qsub",
        "-terse",
        "-cwd",
        "-o",
        "/data/out",
        "-e",
        "/data/out",
        "-t",
        "1-4",
        "/data/task.sh",
        user="1000",
    ).stdout.strip()
    job_id = job.split(".")[0]
    outputs = [cluster.data / "out" / f"task.{i}" for i in range(1, 5)]
    wait(lambda: all(p.exists() and p.read_text() for p in outputs), 60, "all 4 tasks wrote")
    lines = [p.read_text().split() for p in outputs]
    assert [line[0] for line in lines] == [f"task={i}" for i in range(1, 5)]
    assert {line[2] for line in lines} == {"uid=1000"}
    assert {line[1] for line in lines} <= {f"host={PREFIX}-m1", f"host={PREFIX}-m2"}
    assert {p.stat().st_uid for p in outputs} == {workspace_user_host_ids()[0]}
    assert all(line[3].startswith("tmp=/scratch/") for line in lines)  # the member's scratch

    def accounted():
        report = qexec("qacct", "-j", job_id, check=False).stdout
        tasks = [line.split()[1] for line in report.splitlines() if line.startswith("taskid")]
        return len(tasks) == 4 and (report, sorted(tasks))

    report, tasks = wait(accounted, 30, f"qacct reports the 4 tasks of job {job_id}")
    assert tasks == ["1", "2", "3", "4"]
    assert [line.split()[1] for line in report.splitlines() if line.startswith("exit_status")] == [
        "0"
    ] * 4
    assert {line.split()[1] for line in report.splitlines() if line.startswith("owner")} == {
        "jovyan"
    }


def test_the_scheduler_runs_every_second_so_trivial_jobs_do_not_wait_fifteen(cluster):
    # Grid Engine's default interval (15 s) would make every job wait; the duration itself
    # depends on the machine, so it is printed, not asserted (benchmarks/clusters.py)
    config = dict(
        line.split(None, 1)
        for line in qexec("qconf", "-ssconf").stdout.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert config["schedule_interval"].strip() == "0:0:1"
    latencies = []
    for attempt in range(5):
        done = cluster.data / "out" / f"trivial.{attempt}"
        started = time.monotonic()
        submit = ("qsub", "-b", "y", "-o", "/dev/null", "-e", "/dev/null")
        qexec(*submit, "touch", f"/data/out/{done.name}", user="1000")
        wait(done.exists, 30, f"trivial job {attempt} ran", step=0.02)
        latencies.append(time.monotonic() - started)
    cluster.measured["trivial job median s"] = statistics.median(latencies)
    cluster.measured["trivial job max s"] = max(latencies)


def test_a_job_larger_than_any_member_waits_and_the_scaler_ignores_it(cluster):
    too_big = POLICY.capacity.cores + 1
    job_id = qexec(
        "qsub", "-terse", "-l", f"static_cores={too_big}", "-b", "y", "true", user="1000"
    ).stdout.strip()
    # the scheduler has looked at the job and refused it (schedd_job_info says why)
    wait(
        lambda: "cannot run" in qexec("qstat", "-j", job_id).stdout,
        30,
        f"the scheduler says job {job_id} cannot run",
    )
    pending = {job.job_id: job for job in sge.parse_pending(qexec(*sge.PENDING_ARGV).stdout)}
    assert pending[job_id].state == "qw" and pending[job_id].static_cores == too_big
    hosts = members_now()
    members = [
        Member(
            name,
            cluster.started_at[name],
            running_jobs=host.running_jobs,
            draining=host.disabled,
            free=host.free,
        )
        for name, host in hosts.items()
    ]
    requests = [job.request() for job in pending.values() if job.waiting]
    decision = decide(POLICY, requests, members, datetime.now(UTC))
    assert [u.job_id for u in decision.unsatisfiable] == [job_id]
    assert f"job {job_id} asks for {too_big} cores" in decision.unsatisfiable[0].reason
    assert decision.action == "none"  # no scale-up for it; 2 members is the minimum
    assert "cannot run" in qexec("qstat", "-j", job_id).stdout  # the user can see why
    qexec("qdel", job_id)


def test_a_member_joins_drains_and_leaves_only_when_idle(cluster):
    name = f"{PREFIX}-m3"
    cluster.measured[f"{name} join s"] = start_member(name, "10.230.7.13", cluster.data)
    busy = qexec(
        "qsub",
        "-terse",
        "-q",
        f"{sge.QUEUE}@{name}",
        "-b",
        "y",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
        "sleep",
        "300",
        user="1000",
    ).stdout.strip()
    wait(lambda: members_now()[name].running_jobs == 1, 30, f"a job runs on {name}")
    qexec(*sge.drain_argv(name))
    assert members_now()[name].disabled

    submit = ("qsub", "-terse", "-sync", "y", "-b", "y", "-o", "/dev/null", "-e", "/dev/null")
    job_ids = [qexec(*submit, "true", user="1000").stdout.split()[0] for _ in range(2)]

    def ran_on(job_id: str) -> str | None:
        report = qexec("qacct", "-j", job_id, check=False).stdout.splitlines()
        return next((line.split()[1] for line in report if line.startswith("hostname")), None)

    hosts = {wait(lambda j=j: ran_on(j), 30, f"qacct reports job {j}") for j in job_ids}
    assert name not in hosts  # a drained member takes no new work

    refused = qexec("bench-sge", "remove-member", name, check=False)
    assert refused.returncode == 1 and f"jobs still run on {name}" in refused.stderr
    assert members_now()[name].running_jobs == 1  # the running job was not touched
    qexec("qdel", busy, user="1000")
    wait(lambda: members_now()[name].running_jobs == 0, 30, f"{name} is idle")
    qexec("bench-sge", "remove-member", name)
    assert name not in members_now()
    qexec("bench-sge", "remove-member", name)  # already gone: still success
    docker("rm", "-f", name)
