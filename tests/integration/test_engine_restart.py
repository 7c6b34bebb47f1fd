"""An engine restart is a non-event: the real dockerd is stopped (SIGTERM, as a service manager
restarts it) and killed (SIGKILL, a crash) under running workspaces, and started again as
``scripts/host-setup.sh`` starts it.

With the engine's ``live-restore`` (written by ``scripts/host-setup.sh``) the containers keep
running while dockerd is away. What a user notices afterwards, checked here: each workspace is
the same running container with its ``/data``, its server answers through the hub, the
restricted one still reaches nothing but its proxy (and host services stay closed), and the
open one's cluster still runs jobs. Nothing was restarted, so nothing is written to the
activity log.

The test takes the engine away from every other test: it runs under the shared Docker lock
(CI runs the suite serially).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from support.cluster_harness import Clusters, cluster_env, members_in, remove_cluster_leftovers
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import TOKEN, HubProcess
from support.waiting import wait

PREFIX = "benchengine"
ROOT = Path(__file__).resolve().parents[2]
MEMBER = "standard-small"
MARKER = "written before the engine restarted"


def code(container: str, url: str, *extra: str) -> str:
    """HTTP status seen by curl inside the container (000 = no connection)."""
    script = f'curl -sk -m 5 -o /dev/null -w "%{{http_code}}" {" ".join(extra)} {url}'
    return exec_in(container, script).stdout.strip()


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def restart_engine(sig: signal.Signals) -> float:
    """Stop dockerd with ``sig``, start it as host-setup does; seconds until it answers."""
    # the host engine's pid file: `pidof` may also list dockerd processes of Docker-in-Docker nodes
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    os.kill(pid, sig)
    wait(lambda: not Path(f"/proc/{pid}").exists(), 60, f"dockerd {pid} has exited")
    started = time.monotonic()
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "host-setup.sh")], capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    wait(engine_answers, 60, "dockerd answers again")
    return time.monotonic() - started


def container_state(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]["State"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if (
        subprocess.run(
            ["docker", "info", "--format", "{{.LiveRestoreEnabled}}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        != "true"
    ):
        pytest.fail("the engine runs without live-restore: run scripts/host-setup.sh (as root)")
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir, prefix=PREFIX, env_overrides=cluster_env(scratch, "10.234.0.0/20", 2, 8)
    )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    hub.ensure_user("alice")
    hub.start_workspace("alice", "lab", {"resource_model": "test-small"})
    hub.start_workspace(
        "alice", "closed", {"access_mode": "restricted", "whitelist": "allowed.test"}
    )
    clusters = Clusters(hub, scratch)
    r = clusters.api("POST", body={"type": "static", "members": 1, "resource_model": MEMBER})
    assert r.status_code == 202, r.text
    wait(lambda: members_in("idle")(clusters, 1), 120, "the cluster's member is idle")
    exec_in(clusters.workspace, f"echo '{MARKER}' > /data/marker.txt", user="1000")
    yield clusters
    if not engine_answers():  # a failed restart must not leave the machine without an engine
        restart_engine(signal.SIGTERM)
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def server_answers(hub: HubProcess, name: str) -> bool:
    r = requests.get(
        f"{hub.url}/user/alice/{name}/api/status",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=10,
    )
    return r.status_code == 200


def restricted_as_before(closed: str) -> None:
    assert code(closed, "http://other.test/") == "403"  # the proxy answers and refuses
    assert code(closed, "http://allowed.test/") != "403"  # ... and lets its whitelist through
    gateway = "$(echo $JUPYTERHUB_API_URL | sed -E 's#^http://([^:/]+).*#\\1#')"
    assert code(closed, f"http://{gateway}:1/", "--noproxy '*'") == "000"  # no way around it
    assert code(closed, "$JUPYTERHUB_API_URL/", "--noproxy '*'") == "200"  # the hub stays


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_workspaces_and_their_cluster_keep_running_through_an_engine_restart(site, how):
    hub = site.hub
    names = {n: hub.container_name("alice", n) for n in ("lab", "closed")}
    before = {n: container_state(c)["StartedAt"] for n, c in names.items()}
    members = site.containers(site.status()["cluster_id"])
    assert members
    restricted_as_before(names["closed"])

    downtime = restart_engine(how)
    print(f"MEASURED dockerd back after {downtime:.1f} s ({how.name})")

    for name, container in names.items():
        state = container_state(container)
        assert state["Running"] and state["StartedAt"] == before[name], (name, state)
        wait(lambda n=name: server_answers(hub, n), 60, f"alice/{name} answers through the hub")
        assert hub.workspaces("alice")[name]["status"] == "running"
    assert exec_in(names["lab"], "cat /data/marker.txt").stdout.strip() == MARKER
    restricted_as_before(names["closed"])

    assert site.containers(site.status()["cluster_id"]) == members  # the same member containers
    site.script("hello.sh", "#!/bin/bash\necho hello from $(hostname)\n")
    job = site.submit("-cwd", "-o", "/data", "-e", "/data", "hello.sh")
    wait(lambda: site.finished(job), 90, f"job {job} ran on the cluster to its end")
    assert "hello from" in (site.data / f"hello.sh.o{job}").read_text()


def test_host_services_stay_closed_to_workspaces_after_the_engine_restarted(site):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = (
            "gw=$(echo $JUPYTERHUB_API_URL | sed -E 's#^http://([^:/]+).*#\\1#');"
            f" curl -s -m 3 -o /dev/null --noproxy '*' http://$gw:{port}/; echo rc=$?"
        )
        for name in ("lab", "closed"):
            container = site.hub.container_name("alice", name)
            assert exec_in(container, script).stdout.strip() == "rc=7", name
    finally:
        server.shutdown()
