"""The spawner's record of a run that ended without being asked: the true reason, whether it
comes back, and whether its cluster is kept (the mixin on a stand-in for the spawner's other
parts: the volume's directory, the journal and the cluster teardown are recorded, not run)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench_spawner.reboot_recovery import RebootRecovery
from bench_spawner.workspace_status import read_outcome
from benchhub.engine_restarts import RestartClock

STARTED = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
BOOTED = datetime(2026, 11, 30, 20, 31, 0, tzinfo=UTC)
ENGINE = BOOTED + timedelta(seconds=20)


def docker_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ClusterTeardown:
    removed = 0

    async def _stop_clusters(self) -> None:
        self.removed += 1

    def clear_state(self) -> None:
        pass


class Workspace(RebootRecovery, ClusterTeardown):
    """The mixin with what it relies on from the spawner."""

    _log_name = "alice:lab"

    def __init__(self, directory: Path, pending: str | None = None):
        super().__init__(log=logging.getLogger("test"))
        self.volume = type("Volume", (), {"dir": directory})()
        self.pending = pending
        self.journal: list[tuple[str, str, dict | None]] = []

    def restart_clock(self) -> RestartClock:
        return RestartClock(ENGINE, BOOTED)

    def take_layer_stop_reason(self) -> str:
        return ""

    async def record_activity(self, action, description, fields=None, actor=None) -> None:
        self.journal.append((action, description, fields))


def container(finished: datetime, **state) -> dict:
    return {
        "State": {
            "Running": False,
            "OOMKilled": False,
            "ExitCode": 255,
            "StartedAt": docker_time(STARTED),
            "FinishedAt": docker_time(finished),
            **state,
        },
        "HostConfig": {"Memory": 2 * 1024**3},
    }


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path)


async def test_a_run_dead_with_the_host_says_so_and_is_due_to_come_back(workspace, tmp_path):
    await workspace._record_exit(container(ENGINE + timedelta(seconds=1)))
    [(action, description, fields)] = workspace.journal
    assert action == "errored"
    assert description.startswith("host restarted: the container stopped with the host")
    assert description.endswith("; the lifecycle service starts it again")
    assert fields["interrupted_by"] == "host" and fields["restart"] is True
    assert read_outcome(tmp_path).reason == description  # what the home page shows meanwhile


async def test_its_dead_cluster_is_left_for_the_clusters_service_until_the_run_is_over(workspace):
    await workspace._record_exit(container(ENGINE + timedelta(seconds=1)))
    await workspace._stop_clusters()  # the poll's release, then JupyterHub's stop
    await workspace._stop_clusters()
    assert workspace.removed == 0
    workspace.clear_state()  # the run is over: the next run's release removes its cluster
    await workspace._stop_clusters()
    assert workspace.removed == 1


async def test_a_person_who_stops_a_workspace_found_so_dead_does_not_get_it_back(tmp_path):
    workspace = Workspace(tmp_path, pending="stop")
    await workspace._record_exit(container(ENGINE + timedelta(seconds=1)))
    [(_, description, fields)] = workspace.journal
    assert description.startswith("host restarted: ") and "starts it again" not in description
    assert fields["restart"] is False
    await workspace._stop_clusters()
    assert workspace.removed == 1


async def test_a_server_that_exited_before_the_reboot_keeps_its_own_reason(workspace):
    await workspace._record_exit(container(BOOTED - timedelta(minutes=3), ExitCode=1))
    [(action, description, fields)] = workspace.journal
    assert (action, description, fields) == ("errored", "the server exited with code 1", None)
    await workspace._stop_clusters()
    assert workspace.removed == 1


async def test_out_of_memory_stays_out_of_memory(workspace):
    await workspace._record_exit(container(ENGINE + timedelta(seconds=1), OOMKilled=True))
    assert workspace.journal[0][1] == "out of memory: limit 2 GB"
