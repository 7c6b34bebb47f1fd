"""Helpers of the cluster integration tests: a hub's clusters service API and the workspace
under test (alice's workspace "lab"), and clearing what a test run leaves in Docker."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import requests

from .docker_cli import docker, exec_in
from .host_ids import workspace_user_host_ids
from .hub_harness import HubProcess
from .waiting import NotYet

# the cluster image under test, as images/build.sh names it
CLUSTER_IMAGE = os.environ.get("BENCHHUB_CLUSTER_IMAGE", "benchhub/cluster:latest")


def cluster_env(
    scratch: Path,
    subnets: str,
    stabilisation_s: float | None = None,
    min_lifetime_s: float | None = None,
) -> dict[str, str]:
    """The hub environment of a cluster test or benchmark: its own cluster ``subnets`` (each
    module a different range, so that hubs never overlap), members' scratch under ``scratch``,
    a scaling pass every second and, when given, a short stabilisation and minimum lifetime."""
    env = {
        "BENCHHUB_CLUSTER_SUBNETS": subnets,
        "BENCHHUB_CLUSTER_SCRATCH_ROOT": str(scratch),
        "BENCHHUB_CLUSTER_INTERVAL": "1",
    }
    if stabilisation_s is not None:
        env["BENCHHUB_CLUSTER_STABILISATION"] = str(stabilisation_s)
    if min_lifetime_s is not None:
        env["BENCHHUB_CLUSTER_MIN_LIFETIME"] = str(min_lifetime_s)
    return env


def image_present(image: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    return probe.returncode == 0


def remove_cluster_leftovers(prefix: str, scratch: Path) -> None:
    for net in docker(
        "network", "ls", "-q", "--filter", f"name=^{prefix}-cluster-", check=False
    ).split():
        docker("network", "rm", net, check=False)
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    for target in mounts.stdout.split():
        if target.startswith(str(scratch)):
            subprocess.run(["umount", "-l", target], check=False)
    for image in scratch.rglob("data.ext4") if scratch.exists() else []:
        loops = subprocess.run(
            ["losetup", "-j", str(image), "-O", "NAME", "-n"], capture_output=True, text=True
        ).stdout.split()
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)


class Clusters:
    """The hub, its clusters service's API and the workspace under test."""

    def __init__(self, hub: HubProcess, scratch: Path):
        self.hub = hub
        self.scratch = scratch
        self.tokens: dict[str, str] = {}
        self.workspace = hub.container_name("alice", "lab")
        self.data = hub.storage_root / "alice" / "lab" / "mnt"

    def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = self.hub.user_token(user)
        return self.tokens[user]

    def api(self, method: str, path: str = "alice/lab", body=None, user: str = "alice"):
        return requests.request(
            method,
            f"{self.hub.url}/services/clusters/api/clusters/{path}",
            json=body,
            headers={"Authorization": f"token {self.token(user)}"},
            timeout=30,
        )

    def status(self) -> dict | None:
        r = self.api("GET")
        if r.status_code == 404:
            return None
        assert r.ok, r.text
        return r.json()

    def submit(self, *args: str) -> str:
        """qsub in the workspace as its user, from /data; the job id."""
        out = self.sh(f"cd /data && qsub -terse {' '.join(args)}")
        return out.strip().split(".")[0]

    def script(self, name: str, text: str) -> None:
        """An executable script in the workspace's /data (and /data/out for outputs)."""
        for path in (self.data / "out", self.data / name):
            if path.name == "out":
                path.mkdir(exist_ok=True)
            else:
                path.write_text(text)
                path.chmod(0o755)
            os.chown(path, *workspace_user_host_ids())

    def sh(self, script: str, check: bool = True) -> str:
        result = exec_in(self.workspace, script, user="1000")
        if check:
            assert result.returncode == 0, f"{script}: {result.stdout}{result.stderr}"
        return result.stdout

    def running_on(self, job_id: str) -> str | None:
        """The member running ``job_id`` (from qstat in the workspace), or None."""
        root = ET.fromstring(self.sh("qstat -xml -s r"))
        for job in root.iter("job_list"):
            if job.findtext("JB_job_number") == job_id:
                return (job.findtext("queue_name") or "").partition("@")[2] or None
        return None

    def finished(self, job_id: str) -> bool:
        """Grid Engine's accounting has the job: it ended and its output files are closed
        (an output file exists from the job's start, so its existence proves nothing)."""
        return exec_in(self.workspace, f"qacct -j {job_id}", user="1000").returncode == 0

    def qacct_tasks(self, job_id: str) -> list[str]:
        report = self.sh(f"qacct -j {job_id}", check=False)
        return sorted(line.split()[1] for line in report.splitlines() if line.startswith("taskid"))

    def containers(self, cluster_id: str) -> dict[str, str]:
        """``{name: id}`` of the cluster's running containers."""
        out = docker(
            "ps",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.ID}}",
            "--filter",
            f"label=org.benchhub.cluster.id={cluster_id}",
        )
        return dict(line.split() for line in out.splitlines())

    def scaler_log(self) -> str:
        path = self.data / "logs" / "sge-scaler.log"
        return path.read_text() if path.exists() else ""

    def service_pid(self) -> int | None:
        """The pid of this hub's clusters service, or None while it is not running."""
        return self.hub.service_pid("clusters")

    def failure_sections(self) -> dict[str, str]:
        """The hub's sections, the scaler log, and each cluster container's Spark logs."""
        sections = {**self.hub.failure_sections(), "scaler log": self.scaler_log()}
        names = docker(
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            f"name=^{self.hub.prefix}-cluster-",
            check=False,
        ).split()
        for name in names:
            sections[f"spark logs {name}"] = docker(
                "exec", name, "sh", "-c", "tail -n 30 /var/log/bench-spark/*.log", check=False
            )
        return sections


def members_in(state: str):
    """A predicate: the cluster's members when every one is in ``state``, otherwise a false
    :class:`NotYet` with the cluster's state and its members' (what a timeout reports)."""

    def check(clusters: Clusters, count: int):
        status = clusters.status()
        members = status["members"] if status else []
        ok = len(members) == count and all(m["state"] == state for m in members)
        if ok:
            return members
        seen = {k: status.get(k) for k in ("state", "reason")} if status else None
        return NotYet({"cluster": seen, "members": [(m.get("name"), m["state"]) for m in members]})

    return check


# Runs in the workspace as its user: start a kernel from its kernel spec as JupyterLab would
# (jupyter_client), run the code in $CODE, print what the cell printed and returned.
KERNEL_CLIENT = r"""
import os, sys
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=180)
try:
    msg_id = kc.execute(os.environ["CODE"])
    while True:
        msg = kc.get_iopub_msg(timeout=float(os.environ.get("TIMEOUT", "300")))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            sys.stdout.write(content["text"])
        elif kind == "execute_result":
            print(content["data"].get("text/plain", ""))
        elif kind == "error":
            print("ERROR", content["ename"], content["evalue"])
        elif kind == "status" and content["execution_state"] == "idle":
            break
finally:
    km.shutdown_kernel(now=True)
"""


def run_in_kernel(container: str, kernel: str, code: str, timeout: float = 300) -> str:
    """Start kernel ``kernel`` in the workspace (as uid 1000, in /data), run ``code`` in it,
    shut it down; what the cell printed (its errors as ``ERROR <name> <value>`` lines)."""
    result = subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            "1000",
            "-w",
            "/data",
            "-e",
            f"CODE={code}",
            "-e",
            f"TIMEOUT={timeout}",
            container,
            "python",
            "-c",
            KERNEL_CLIENT,
            kernel,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 200,
    )
    assert result.returncode == 0, f"kernel {kernel}: {result.stdout}{result.stderr[-2000:]}"
    return result.stdout
