"""A cluster's containers give a user nothing beyond their own workspace user (issue 11, hole 6b
and "members run as an unprivileged user").

The manager and a member of benchhub/cluster run as the clusters service runs them (its
capabilities and security options, the workspace's /data mounted, the client files published
in /data/.sge/common), on their own network. The user controls /data: a link planted in the
path the manager publishes to must not make the manager write, or change the owner of,
anything it points at. And no job runs as root, nor any daemon on a member: a job's process
is the workspace user's, without capabilities.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.cluster_harness import CLUSTER_IMAGE
from support.docker_cli import container_logs, docker
from support.host_ids import workspace_user_host_ids
from support.waiting import wait

from hub_services.clusters import sge
from hub_services.clusters.containers import CAPABILITIES, SECURITY_OPTIONS
from hub_services.clusters.scaling import Capacity

PREFIX = "benchsecc"
NETWORK = f"{PREFIX}-net"
MANAGER, MEMBER = f"{PREFIX}-manager", f"{PREFIX}-m1"
SUBNET = "10.238.9.0/24"
PUBLISH = "/data/.sge/common"
SECURITY = [
    "--cap-drop",
    "ALL",
    *[a for c in CAPABILITIES for a in ("--cap-add", c)],
    *[a for o in SECURITY_OPTIONS for a in ("--security-opt", o)],
]


def remove_everything() -> None:
    names = docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).split()
    if names:
        docker("rm", "-f", "-v", *names, check=False)
    docker("network", "rm", NETWORK, check=False)


def logs(name: str) -> str:
    out = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def failure_sections() -> dict[str, str]:
    """Printed when a test here fails (tests/conftest.py): the containers' logs."""
    return container_logs(PREFIX, tail=60)


def workspace_data(tmp_path: Path) -> Path:
    """A /data as a workspace has it: the workspace user's (uid 1000, group 100 in the
    container; the host ids the engine maps them to)."""
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, *workspace_user_host_ids())
    return data


def run_manager(data: Path, config: Path, name: str = MANAGER, address: str = "10.238.9.2"):
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
        address,
        "--network-alias",
        "spark-master",
        *SECURITY,
        "-e",
        f"BENCHHUB_SGE_PUBLISH={PUBLISH}",
        "-v",
        f"{config}:/etc/bench-sge:ro",
        "-v",
        f"{data}:/data",
        CLUSTER_IMAGE,
        "manager",
    )


def state(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]["State"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The network and the SGE configuration bundle; everything removed afterwards."""
    remove_everything()
    config = tmp_path_factory.mktemp("sge-config")
    config.chmod(0o755)  # as the service's: container root is another host uid, not its owner
    for path, text in sge.config_bundle().items():
        (config / path).parent.mkdir(parents=True, exist_ok=True)
        (config / path).write_text(text)
    docker(
        "network", "create", "--subnet", SUBNET, "-o", "com.docker.network.driver.mtu=1400", NETWORK
    )
    try:
        yield config, tmp_path_factory
    finally:
        remove_everything()


@pytest.fixture(scope="module")
def cluster(site):
    """A manager and a member of one workspace's /data, as the clusters service runs them."""
    config, tmp_path_factory = site
    data = workspace_data(tmp_path_factory.mktemp("cluster"))
    run_manager(data, config)
    wait(lambda: "manager ready" in logs(MANAGER), 60, "the manager is ready")
    host = sge.exec_host_config(MEMBER, Capacity(1, 1024**3))
    subprocess.run(
        ["docker", "exec", "-i", MANAGER, "bench-sge", "add-member", MEMBER, "10.238.9.11"],
        input=host,
        text=True,
        check=True,
        capture_output=True,
    )
    docker(
        "run",
        "-d",
        "--name",
        MEMBER,
        "--hostname",
        MEMBER,
        "--network",
        NETWORK,
        "--ip",
        "10.238.9.11",
        *SECURITY,
        "-v",
        f"{data}:/data",
        CLUSTER_IMAGE,
        "member",
        MANAGER,
    )
    wait(lambda: "member started" in logs(MEMBER), 60, "the member starts")
    return data


def qsub(user: str, *argv: str) -> subprocess.CompletedProcess:
    """``qsub -sync y`` in the manager as ``user``, from /data, output to /data/job.out."""
    return subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            user,
            "-w",
            "/data",
            MANAGER,
            "qsub",
            "-sync",
            "y",
            "-l",
            "static_mem=256M",
            "-o",
            "/data/job.out",
            "-e",
            "/data/job.err",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_link_planted_where_the_manager_publishes_is_refused_and_nothing_is_written_there(site):
    config, tmp_path_factory = site
    data = workspace_data(tmp_path_factory.mktemp("planted"))
    (data / ".sge").mkdir()
    (data / ".sge" / "common").symlink_to("/usr/local/bin")  # the scripts root runs are there
    for path in (data / ".sge", data / ".sge" / "common"):
        os.chown(path, *workspace_user_host_ids(), follow_symlinks=False)  # planted by the user
    linked = f"{PREFIX}-linked"
    run_manager(data, config, linked, "10.238.9.3")
    wait(lambda: not state(linked)["Running"], 60, "the manager stops")
    assert state(linked)["ExitCode"] == 1
    last = logs(linked).strip().splitlines()[-1]
    assert "/data/.sge/common is a symbolic link (to /usr/local/bin)" in last
    assert "rm /data/.sge/common" in last  # says how to fix it
    changed = docker("diff", linked).splitlines()
    assert [line for line in changed if "/usr/local/bin" in line] == []  # nothing written, chowned
    assert (data / ".sge" / "common").is_symlink()  # and the user's link is left alone


def test_the_published_client_files_are_the_users_and_qacct_reads_the_accounting(cluster):
    published = cluster / ".sge" / "common"
    owners = {
        p.name: (p.stat().st_uid, p.is_symlink())
        for p in [published, *published.iterdir()]
        if not p.name.startswith("accounting.")
    }
    names = ("common", "accounting", "act_qmaster", "bootstrap", "settings.sh")
    user = workspace_user_host_ids()[0]
    assert owners == {name: (user, False) for name in names}  # the user's, plain files
    job = qsub("1000", "-terse", "-b", "y", "true")
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.split()[0]

    def accounted():  # qacct as the workspace runs it: on the published copy
        report = subprocess.run(
            [
                "docker",
                "exec",
                "-u",
                "1000",
                MANAGER,
                "qacct",
                "-f",
                f"{PUBLISH}/accounting",
                "-j",
                job_id,
            ],
            capture_output=True,
            text=True,
        )
        return report.returncode == 0 and report.stdout

    report = wait(accounted, 30, f"qacct reads job {job_id} from the published file")
    assert {line.split()[1] for line in report.splitlines() if line.startswith("owner")} == {
        "jovyan"
    }


def test_a_job_runs_as_the_workspace_user_without_capabilities_and_roots_is_refused(cluster):
    probe = cluster / "probe.sh"
    probe.write_text("#!/bin/sh\nid -u\ngrep CapEff /proc/self/status\n")
    probe.chmod(0o755)
    os.chown(probe, *workspace_user_host_ids())
    as_user = qsub("1000", "probe.sh")
    assert as_user.returncode == 0, as_user.stdout + as_user.stderr
    assert (cluster / "job.out").read_text().split() == ["1000", "CapEff:", "0000000000000000"]
    as_root = qsub("0", "-b", "y", "id")
    assert as_root.returncode != 0  # refused at the door
    assert "lower than minimum user id 1000" in as_root.stdout + as_root.stderr


def test_no_daemon_on_a_member_runs_as_root(cluster):
    daemons = docker("exec", MEMBER, "ps", "-o", "user=,comm=", "-C", "sge_execd,java").split()
    assert dict(zip(daemons[1::2], daemons[0::2], strict=True)) == {
        "sge_execd": "jovyan",
        "java": "jovyan",
    }  # Grid Engine's execd and the Spark worker
