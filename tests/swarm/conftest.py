"""The test swarm and a hub that spawns on it (docs/swarm.md, "The test swarm").

``swarm`` brings up three Docker-in-Docker engines (scripts/swarm-testbed.sh: a manager and
two workers, the workspace image loaded into the workers) once per session and removes them
at the end. Like every test that uses Docker, the suite runs under the shared lock
(``make test-swarm`` takes it: ``flock /tmp/benchhub-docker.lock ...``); the fixture does not
take it again, which would wait for itself. ``BENCHHUB_SWARM_KEEP=1`` keeps the testbed up
after the run (a developer's next run then starts in seconds; ``scripts/swarm-testbed.sh
down`` removes it).

``swarm_hub`` is the repository's hub configuration with BenchSwarmSpawner layered on top, as
a site would (the services a swarm cannot serve yet removed, the manager's engine API, the
address the nodes reach the hub on).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass

import pytest
from support.docker_cli import docker
from support.hub_harness import HubProcess
from support.swarm_testbed import run_testbed
from support.waiting import wait

NODE_IMAGE = "benchhub/swarm-node:latest"
SWARM_PREFIX = "benchswarm"  # `swarm-testbed.sh down` removes whatever this hub leaks


@dataclass
class Swarm:
    """The running test swarm: ``docker_host`` is the manager's engine API (reachable from
    this host only), ``gateway`` the address the nodes reach this host on, ``up_seconds``
    how long ``up`` took, ``shared_dir`` this host's directory the manager sees at the same
    path (a hub's egress state goes there: the hub "runs on the manager")."""

    docker_host: str
    gateway: str
    up_seconds: float
    manager: str = "benchswarm-manager"
    workers: tuple[str, ...] = ("benchswarm-worker-1", "benchswarm-worker-2")
    shared_dir: str = ""

    def manager_cli(self, *args: str, check: bool = True) -> str:
        """The docker CLI against the manager's engine (from this host, over its API)."""
        out = subprocess.run(
            ["docker", "-H", self.docker_host, *args], capture_output=True, text=True, timeout=120
        )
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on the manager failed: {out.stderr}")
        return out.stdout

    def on_node(self, node: str, *args: str, check: bool = True) -> str:
        """The docker CLI of the engine inside node container ``node``."""
        return docker("exec", node, "docker", *args, check=check)

    def node_hostname(self, node_id: str) -> str:
        return self.manager_cli(
            "node", "inspect", "-f", "{{.Description.Hostname}}", node_id
        ).strip()

    def node_id(self, hostname: str) -> str:
        return self.manager_cli("node", "inspect", "-f", "{{.ID}}", hostname).strip()

    def node_state(self, hostname: str) -> str:
        """ "ready", "down", ... as the manager sees node ``hostname``."""
        return self.manager_cli(
            "node", "inspect", "-f", "{{.Status.State}}", hostname, check=False
        ).strip()

    def kill_node(self, node: str) -> list[str]:
        """The machine dies: SIGKILL to the node container's init, its engine and every
        workspace on it at once (no engine shutdown that could report the tasks ended).
        The ids of the containers that ran on it (for :meth:`forget_cgroups`)."""
        ids = self.on_node(node, "ps", "-q", "--no-trunc").split()
        docker("kill", node)
        return ids

    @staticmethod
    def forget_cgroups(container_ids: list[str]) -> None:
        """Remove the empty cgroups of containers that died with their node: the nodes
        share this host's cgroups, and no engine is left to remove them."""
        for controller in os.listdir("/sys/fs/cgroup"):
            for container in container_ids:
                with contextlib.suppress(OSError):
                    os.rmdir(f"/sys/fs/cgroup/{controller}/docker/{container}")

    def revive_node(self, node: str) -> None:
        """Start a killed node container again (same address, same /var/lib/docker volume:
        the same swarm node with its volumes) and wait until the manager sees it ready."""
        if docker("inspect", "-f", "{{.State.Running}}", node).strip() != "true":
            docker("start", node)
        wait(lambda: self.node_state(node), 90, f"{node} is ready again", until="ready".__eq__)

    def volume_dir(self, node: str, volume: str) -> str:
        """The host path of volume ``volume`` of the engine in node container ``node``
        (the node's /var/lib/docker is a volume of the host's engine)."""
        root = docker("volume", "inspect", "-f", "{{.Mountpoint}}", f"{node}-docker").strip()
        return f"{root}/volumes/{volume}/_data"

    def set_availability(self, node: str, availability: str) -> None:
        self.manager_cli("node", "update", "--availability", availability, node)

    def failure_sections(self) -> dict[str, str]:
        nodes = self.manager_cli("node", "ls", check=False)
        services = self.manager_cli("service", "ls", check=False)
        names = self.manager_cli("service", "ls", "--format", "{{.Name}}", check=False).split()
        tasks = {
            f"tasks of {name}": self.manager_cli("service", "ps", "--no-trunc", name, check=False)
            for name in names
        }
        return {"swarm nodes": nodes, "swarm services": services, **tasks}


@pytest.fixture(scope="session")
def swarm() -> Swarm:
    if subprocess.run(["docker", "image", "inspect", NODE_IMAGE], capture_output=True).returncode:
        pytest.fail(f"{NODE_IMAGE} missing; build it: images/build.sh swarm-node", False)
    started = time.monotonic()
    out = run_testbed("up")
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("BENCHHUB_"))
    docker_host = env["BENCHHUB_SWARM_DOCKER_HOST"]
    gateway = docker(
        "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "benchswarm-net"
    ).strip()
    shared_dir = env["BENCHHUB_SWARM_SHARED_DIR"]
    yield Swarm(docker_host, gateway, time.monotonic() - started, shared_dir=shared_dir)
    if os.environ.get("BENCHHUB_SWARM_KEEP") != "1":
        run_testbed("down")


def swarm_hub_config(swarm: Swarm) -> str:
    """What a site layers on its single-host configuration to spawn on a swarm."""
    return f"""
import os
from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.unsupported import drop_unsupported_services
c.JupyterHub.spawner_class = BenchSwarmSpawner
drop_unsupported_services(c)
c.BenchSwarmSpawner.client_kwargs = {{"base_url": {swarm.docker_host!r}}}
c.BenchSwarmSpawner.hub_connect_url = "http://{swarm.gateway}:" + os.environ["BENCHHUB_HUB_PORT"]
BenchSwarmSpawner.check_config(c)
"""


@pytest.fixture(scope="session")
def swarm_hub_settings(swarm) -> str:
    """The swarm lines of a hub's configuration (for a test that starts its own hub)."""
    return swarm_hub_config(swarm)


@pytest.fixture(scope="session")
def swarm_hub(swarm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("swarmhub")
    hub = HubProcess(workdir, prefix=SWARM_PREFIX, extra_config=swarm_hub_config(swarm))
    hub.start()
    yield hub
    hub.stop()
    for name in swarm.manager_cli("service", "ls", "-q", check=False).split():
        swarm.manager_cli("service", "rm", name, check=False)
