"""A host reboot: what was running comes back by itself, with its data, restriction and cluster.

The reboot is simulated as faithfully as this machine allows without rebooting it:

1. the hub and its services stop (as a service manager stops them at shutdown);
2. the power goes: ``dockerd`` and its ``containerd`` are SIGKILLed, then every process of
   this test's containers (workspaces, cluster manager and member, egress proxy) and their
   ``containerd`` shims, so that nothing is left to record how the containers ended;
3. BenchHub's host firewall rules of this test's networks are removed (a reboot empties the
   firewall; Docker makes its own rules again when it starts);
4. the engine starts again as ``scripts/host-setup.sh`` starts it (the engine's start time
   moves, and it marks the containers it finds dead at that moment, exit code 255, exactly
   as after a real reboot), then the hub starts again.

The one fact that cannot move without rebooting is the host's boot time (``btime`` in
``/proc/stat``): the hub reads it from the file ``c.BenchSpawner.host_boot_file`` names, and
this test points that at a file of its own whose ``btime`` it sets to the moment the power
came back. Everything else is real: the engine, its restore, the hub, the services.

Asserted within :data:`RECOVERY_TIMEOUT` after the hub is back: an open workspace with a static
cluster and a restricted one run again by themselves, with their ``/data`` files and their home
(from the checkpoint taken of the dead container), the restricted one reaches only its
whitelist, the cluster has its member again and runs a job, and the activity log says "host
restarted" and who started them again; a workspace the user stopped before does not come back,
nor does one whose server exited by itself before the reboot (it keeps its own reason).

The test takes the engine away from every other test: it runs under the shared Docker lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.cluster_harness import Clusters, cluster_env, members_in, remove_cluster_leftovers
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess
from support.waiting import wait

from benchhub import firewall

PREFIX = "benchreboot"
ROOT = Path(__file__).resolve().parents[2]
MEMBER = "standard-small"
MARKER = "written before the power went"
HOME_NOTE = "kept in the home directory"
RECOVERY_TIMEOUT = 300  # seconds from the hub's start until everything runs again


def code(container: str, url: str, *extra: str) -> str:
    """HTTP status seen by curl inside the container (000 = no connection)."""
    script = f'curl -sk -m 5 -o /dev/null -w "%{{http_code}}" {" ".join(extra)} {url}'
    return exec_in(container, script).stdout.strip()


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def start_engine() -> None:
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "host-setup.sh")], capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    wait(engine_answers, 60, "dockerd answers again")


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
                if comm == name and parent_of(int(entry.name)) == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def power_loss(prefix: str) -> None:
    """Kill the engine and every process of ``prefix``'s running containers at once (step 2
    of the module docstring), and empty their networks' host firewall rules (step 3)."""
    ids = docker("ps", "-q", "--no-trunc", "--filter", f"name=^{prefix}-").split()
    pids = [int(docker("inspect", "-f", "{{.State.Pid}}", i).strip()) for i in ids]
    shims = [parent_of(pid) for pid in pids]
    networks = docker("network", "ls", "-q", "--no-trunc", "--filter", f"name=^{prefix}-").split()
    dockerd = int(Path("/var/run/docker.pid").read_text().strip())
    doomed = [dockerd, *children_named(dockerd, "containerd"), *pids, *shims]
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait(lambda: not any(Path(f"/proc/{p}").exists() for p in doomed), 60, "all of it died")
    for network in networks:
        asyncio.run(firewall.remove(network))


def container_state(name: str) -> dict | None:
    found = json.loads(docker("inspect", name, check=False) or "[]")
    return found[0]["State"] if found else None


def activity(hub: HubProcess, workspace: str) -> list[dict]:
    """The workspace's activity entries, oldest first."""
    r = hub.service_api("lifecycle", "api/activity", user="alice", workspace=workspace)
    assert r.ok, r.text
    return list(reversed(r.json()["entries"]))


class Reboot:
    """The site before and after the simulated reboot (the module fixture)."""

    def __init__(self, hub: HubProcess, clusters: Clusters, boot_file: Path):
        self.hub, self.clusters, self.boot_file = hub, clusters, boot_file
        self.names = {n: hub.container_name("alice", n) for n in ("lab", "closed", "crashed")}
        self.hub_back_at = 0.0
        self.recovered_in = 0.0
        self.power_on = datetime.now(UTC)

    def failure_sections(self) -> dict[str, str]:
        return self.clusters.failure_sections()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    boot_file = workdir / "host-stat"  # c.BenchSpawner.host_boot_file: see the docstring
    real = Path("/proc/stat").read_text().splitlines()
    boot_file.write_text(next(line for line in real if line.startswith("btime ")) + "\n")
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        extra_config=f"c.BenchSpawner.host_boot_file = {str(boot_file)!r}",
        env_overrides=cluster_env(scratch, "10.236.0.0/20", 2, 8),
    )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    clusters = Clusters(hub, scratch)
    site = Reboot(hub, clusters, boot_file)
    try:
        yield from _reboot(site)
    except BaseException:  # set-up failed: no test report prints the fixtures' sections then
        for title, text in site.failure_sections().items():
            print(f"---- {title}\n{text}")
        print("---- cluster status\n", clusters.api("GET").text)
        raise
    finally:
        if not engine_answers():  # a failed test must not leave the machine without an engine
            start_engine()
        hub.stop()
        cleanup(PREFIX, hub.storage_root)
        remove_cluster_leftovers(PREFIX, scratch)


def _reboot(site: Reboot):
    hub, clusters = site.hub, site.clusters
    hub.ensure_user("alice")
    hub.start_workspaces(
        [
            ("alice", "lab", {"resource_model": "test-small"}),
            ("alice", "closed", {"access_mode": "restricted", "whitelist": "allowed.test"}),
            ("alice", "parked", None),
            ("alice", "crashed", None),
        ]
    )
    r = clusters.api("POST", body={"type": "static", "members": 1, "resource_model": MEMBER})
    assert r.status_code == 202, r.text
    wait(lambda: members_in("idle")(clusters, 1), 240, "the cluster's member is idle")
    for name in ("lab", "closed"):
        container = site.names[name]
        exec_in(container, f"echo '{MARKER}' > /data/marker.txt", user="1000")
        exec_in(container, f"echo '{HOME_NOTE}' > ~/note.txt", user="1000")
    hub.stop_workspace("alice", "parked")  # the user stopped it before the reboot

    hub.stop()  # shutdown: the service manager stops the hub and its services
    # the server of "crashed" exits by itself while the hub is down, before the power goes
    # (every process of the workspace user; tini, its pid 1, then exits with the server's code)
    exec_in(site.names["crashed"], "kill -TERM -1", user="1000")
    wait(lambda: not container_state(site.names["crashed"])["Running"], 60, "crashed exited")
    power_loss(PREFIX)
    site.power_on = datetime.now(UTC)
    site.boot_file.write_text(f"btime {int(site.power_on.timestamp())}\n")  # the host "booted"
    start_engine()
    assert not container_state(site.names["lab"])["Running"]  # as after a reboot: all dead

    started = time.monotonic()
    hub.start(timeout=120)
    site.hub_back_at = started
    for name in ("lab", "closed"):
        hub.wait_for("alice", name, "running", RECOVERY_TIMEOUT)
    wait(lambda: members_in("idle")(clusters, 1), RECOVERY_TIMEOUT, "the cluster is back")
    site.recovered_in = time.monotonic() - started
    print(f"MEASURED back after the hub's start: {site.recovered_in:.1f} s")
    yield site


def test_running_workspaces_come_back_by_themselves_with_their_data_and_home(site):
    assert site.recovered_in < RECOVERY_TIMEOUT
    for name in ("lab", "closed"):
        container = site.names[name]
        state = container_state(container)
        assert state["Running"], (name, state)
        started = datetime.fromisoformat(state["StartedAt"][:26] + "+00:00")
        assert started > site.power_on  # a new run after the reboot
        assert exec_in(container, "cat /data/marker.txt").stdout.strip() == MARKER
        note = exec_in(container, "cat ~/note.txt", user="1000").stdout.strip()
        assert note == HOME_NOTE, name


def test_the_restricted_workspace_reaches_only_its_whitelist_after_the_reboot(site):
    closed = site.names["closed"]
    assert code(closed, "http://other.test/") == "403"  # the proxy answers and refuses
    assert code(closed, "http://allowed.test/") != "403"  # ... and lets its whitelist through
    gateway = "$(echo $JUPYTERHUB_API_URL | sed -E 's#^http://([^:/]+).*#\\1#')"
    assert code(closed, f"http://{gateway}:1/", "--noproxy '*'") == "000"  # no way around it
    assert code(closed, "$JUPYTERHUB_API_URL/", "--noproxy '*'") == "200"  # the hub stays


def test_the_cluster_comes_back_with_its_settings_and_runs_jobs(site):
    clusters = site.clusters
    status = clusters.status()
    assert status["status"] == "running", status
    assert status["settings"]["type"] == "static" and status["settings"]["members"] == 1
    assert status["resource_model"]["name"] == MEMBER
    clusters.script("hello.sh", "#!/bin/bash\necho hello from $(hostname)\n")
    job = clusters.submit("-cwd", "-o", "/data", "-e", "/data", "hello.sh")
    out = clusters.data / f"hello.sh.o{job}"
    wait(lambda: clusters.finished(job), 90, f"job {job} ran on the cluster to its end")
    assert "hello from" in out.read_text()
    assert "host restarted" in clusters.scaler_log() or "engine restarted" in clusters.scaler_log()


def test_the_activity_log_says_the_host_restarted_and_who_started_them_again(site):
    for name in ("lab", "closed"):
        entries = activity(site.hub, name)
        ended = [e for e in entries if e["action"] == "errored"][-1]
        assert ended["description"].startswith("host restarted:"), ended
        assert ended["fields"]["interrupted_by"] == "host" and ended["fields"]["restart"]
        after = entries[entries.index(ended) + 1 :]
        assert [(e["action"], e["actor"]) for e in after][:2] == [
            ("restarting", "service:lifecycle"),
            ("started", "service:lifecycle"),
        ], after
        assert "host restarted" in after[0]["description"]


def _one_more_lifecycle_pass(hub: HubProcess) -> None:
    """Wait until the lifecycle service completed a pass that began after now: whatever it
    would restart, it would have launched by then."""
    asked = datetime.now(UTC)

    def passed() -> bool:
        r = hub.service_api("lifecycle", "api/health")
        at = r.json().get("last_pass_at") if r.ok else None
        return bool(at) and datetime.fromisoformat(at) > asked

    wait(passed, 60, "a lifecycle pass after the restarts")
    wait(passed, 60, "a second one")


def test_a_workspace_the_user_stopped_before_the_reboot_stays_stopped(site):
    _one_more_lifecycle_pass(site.hub)
    assert site.hub.workspaces("alice")["parked"]["status"] == "stopped"
    assert container_state(site.hub.container_name("alice", "parked")) is None
    assert not [e for e in activity(site.hub, "parked") if e["action"] == "restarting"]


def test_a_workspace_whose_server_exited_by_itself_before_the_reboot_stays_errored(site):
    _one_more_lifecycle_pass(site.hub)
    workspace = site.hub.workspaces("alice")["crashed"]
    assert workspace["status"] == "errored", workspace
    assert "restarted" not in workspace["reason"], workspace  # its own reason: an exit code
    entries = activity(site.hub, "crashed")
    assert not [e for e in entries if e["action"] == "restarting"]
    assert entries[-1]["action"] == "errored" and "interrupted_by" not in entries[-1]["fields"]
