"""Images through a site registry (docs/swarm.md, "Images"): ``images/build.sh`` pushes what it
builds to the registry when ``BENCHHUB_REGISTRY`` is set, and a hub with
``c.BenchSwarmSpawner.image_registry`` starts workspaces from the name pushed there, which a
worker that lacks it pulls.

The registry is the testbed's (``swarm-testbed.sh registry``: Debian's ``docker-registry``,
read-only on the nodes' network, which every node trusts without TLS, and writable on this
host's loopback only, where this host's engine pushes). The image pushed is the base image (117
MB), not the 1.3 GB workspace image (its push takes 32 s and each pull 18 s: docs/swarm.md), so
the workspace's server is a stand-in, a few lines of perl (the base image has it) answering HTTP
on the server's port: enough for the hub to see the workspace ready. What is tested is the
image's way from the build to the node.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from support.hub_harness import HubProcess
from support.swarm_testbed import run_testbed
from workspace_steps import node_container, start, stop, task_of

BUILD = Path(__file__).resolve().parents[2] / "images" / "build.sh"
IMAGE = "benchhub/base:bookworm"
USER = "swarmreg"
PREFIX = "benchswarmreg"  # `swarm-testbed.sh down` removes whatever this hub leaks
# the stand-in server: HTTP 200 on --port (JupyterHub's argument) for every request
PROBE_SERVER = r"""
use IO::Socket::INET;
my ($port) = map { /^--port=(\d+)$/ ? $1 : () } @ARGV;
my $server = IO::Socket::INET->new(LocalPort => $port || 8888, Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
while (my $client = $server->accept) {
    while (defined(my $line = <$client>)) { last if $line =~ /^\r?\n$/ }
    print $client "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    close $client;
}
"""


@pytest.fixture(scope="module")
def registry(swarm) -> dict[str, str]:
    """The testbed's registry: BENCHHUB_REGISTRY (this host's push address) and
    BENCHHUB_SWARM_REGISTRY (the nodes' address for it)."""
    out = run_testbed("registry")
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("BENCHHUB_"))


@pytest.fixture(scope="module")
def hub(swarm, swarm_hub_settings, registry, tmp_path_factory):
    """A swarm hub whose nodes pull from the registry, with one template: the base image."""
    config = (
        swarm_hub_settings
        + f"""
c.BenchSpawner.image_templates = {{"probe": {{"image": {IMAGE!r}, "display_name": "Probe"}}}}
c.BenchSpawner.default_image_template = "probe"
c.BenchSwarmSpawner.image_registry = {registry["BENCHHUB_SWARM_REGISTRY"]!r}
c.BenchSwarmSpawner.cmd = ["perl", "-e", {PROBE_SERVER!r}]
BenchSwarmSpawner.check_config(c)
"""
    )
    hub = HubProcess(tmp_path_factory.mktemp("swarmreghub"), prefix=PREFIX, extra_config=config)
    hub.start()
    hub.ensure_user(USER)
    yield hub
    hub.stop()
    for name in swarm.manager_cli("service", "ls", "-q", "--filter", f"name={PREFIX}-").split():
        swarm.manager_cli("service", "rm", name, check=False)


def test_a_workspace_on_a_worker_starts_from_the_image_build_sh_pushed_to_the_registry(
    hub, registry, swarm
):
    pushed = f"{registry['BENCHHUB_REGISTRY']}/{IMAGE}"
    out = subprocess.run(
        ["bash", str(BUILD), "base"],
        env={**os.environ, "BENCHHUB_REGISTRY": registry["BENCHHUB_REGISTRY"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"pushing {pushed}" in out.stdout
    listed = requests.get(
        f"http://{registry['BENCHHUB_REGISTRY']}/v2/benchhub/base/tags/list", timeout=10
    )
    assert "bookworm" in listed.json()["tags"], listed.text

    # the nodes know the registry by their own address for it; none holds the image yet
    on_nodes = f"{registry['BENCHHUB_SWARM_REGISTRY']}/{IMAGE}"
    for worker in swarm.workers:
        swarm.on_node(worker, "image", "rm", on_nodes, check=False)

    start(hub, USER, "pulled", {"resource_model": "test-small"})
    task = task_of(swarm, hub.container_name(USER, "pulled"))
    assert task["Spec"]["ContainerSpec"]["Image"] == on_nodes
    node, _ = node_container(swarm, task)
    assert node in swarm.workers
    # pulled, not loaded: the worker holds it with the digest the registry gave it
    digests = json.loads(
        swarm.on_node(node, "image", "inspect", "-f", "{{json .RepoDigests}}", on_nodes)
    )
    repository = on_nodes.rsplit(":", 1)[0]
    assert [d for d in digests if d.startswith(f"{repository}@sha256:")], digests
    stop(hub, USER, "pulled")


def test_from_a_node_the_registry_can_be_pulled_from_but_not_pushed_to(registry, swarm):
    """A workspace's traffic leaves its node from the node's own address, so what the node's
    engine can do to the registry, a workspace on it can: pull, never push, and never reach
    the writable instance (this host's loopback only)."""
    worker = swarm.workers[0]
    planted = f"{registry['BENCHHUB_SWARM_REGISTRY']}/benchhub/planted:1"
    swarm.on_node(worker, "pull", "-q", f"{registry['BENCHHUB_SWARM_REGISTRY']}/{IMAGE}")
    swarm.on_node(worker, "tag", f"{registry['BENCHHUB_SWARM_REGISTRY']}/{IMAGE}", planted)
    pushed = subprocess.run(
        ["docker", "exec", worker, "docker", "push", planted],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pushed.returncode != 0 and "405" in pushed.stdout + pushed.stderr, pushed
    listed = requests.get(f"http://{registry['BENCHHUB_REGISTRY']}/v2/_catalog", timeout=10)
    assert "benchhub/planted" not in listed.json()["repositories"], listed.text
    writable = json.loads(
        subprocess.check_output(["docker", "inspect", "benchswarm-registry-push"])
    )
    address = writable[0]["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    reach = subprocess.run(
        [
            "docker",
            "exec",
            worker,
            "timeout",
            "5",
            "bash",
            "-c",
            f"exec 3<>/dev/tcp/{address}/5000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reach.returncode != 0, f"{worker} reached the writable registry at {address}:5000"
