"""A cluster whose workspace does not run: removed, or kept until its workspace is back when
it died with the engine (the recovery on a stand-in controller: Docker's answers are given,
the controller's own operations are recorded)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from traitlets.config import LoggingConfigurable

from benchhub.engine_restarts import RestartClock
from hub_services.clusters import recovery as recovery_module
from hub_services.clusters.recovery import WAITING, ClusterRecovery, hold_or_teardown
from hub_services.clusters.state import ClusterRecord

STARTED = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
ENGINE = datetime(2026, 11, 30, 20, 31, 20, tzinfo=UTC)


def docker_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def manager(finished: datetime) -> dict:
    state = {
        "Running": False,
        "OOMKilled": False,
        "ExitCode": 255,
        "StartedAt": docker_time(STARTED),
        "FinishedAt": docker_time(finished),
    }
    return {"State": state}


def workspace_container(container_id: str, source: str) -> dict:
    mounts = [{"Type": "bind", "Destination": "/data", "Source": source, "RW": True}]
    return {"Id": container_id, "Mounts": mounts, "State": {"Running": True}}


class Names:
    manager = "benchtest-cluster-abc-manager"


class Controller(LoggingConfigurable):
    """What the recovery uses of ClusterController, recording its operations."""

    prefix = "benchtest"

    def __init__(self, inspected: dict | None, workspace: dict | None):
        super().__init__(log=logging.getLogger("test"))
        self.done: list[tuple] = []
        self.records: dict[str, ClusterRecord] = {}
        self.views: dict[str, dict] = {}
        self._locks = defaultdict(asyncio.Lock)
        outer = self

        class Engine:
            async def inspect(self, name):
                return inspected if name == Names.manager else None

        class Nodes:
            async def workspace_container(self, prefix, user, workspace_name):
                return workspace

            async def is_restricted(self, container):
                return False

        class Scaler:
            def forget(self, key):
                outer.done.append(("forget", key))

        self.engine, self.nodes, self.scaler = Engine(), Nodes(), Scaler()

    def names(self, rec):
        return Names()

    async def _teardown(self, rec, reason):
        self.done.append(("teardown", reason))

    async def _remove_quietly(self, names, rec):
        self.done.append(("remove old containers",))

    async def save(self):
        self.done.append(("save",))

    async def _bring_up(self, rec):
        self.done.append(("bring up", rec.workspace_container, rec.data_dir))

    def _launch(self, key, coro):
        self.done.append(("launch", key))
        coro.close()


@pytest.fixture
def rec(tmp_path):
    return ClusterRecord(
        user="alice",
        workspace="lab",
        cluster_id="abc",
        settings={"type": "static", "members": 2},
        subnet="10.231.0.0/26",
        workspace_container="old-workspace",
        workspace_address="10.231.0.2",
        internal=False,
        model={"name": "standard-small", "cpus": 2, "memory_gb": 8},
        data_dir=str(tmp_path / "old-data"),
        created_at=STARTED.isoformat(),
        status="running",
    )


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    monkeypatch.setattr(ClusterRecovery, "clock", lambda self: RestartClock(ENGINE))
    now = ENGINE + timedelta(minutes=3)
    monkeypatch.setattr(recovery_module, "utcnow", lambda: now)


async def test_a_cluster_whose_workspace_was_stopped_is_removed(rec):
    controller = Controller(inspected=None, workspace=None)  # the hub removed its containers
    await hold_or_teardown(controller, rec, active=set())
    assert controller.done == [("teardown", "the workspace stopped")]


async def test_a_cluster_whose_manager_exited_by_itself_is_removed(rec):
    controller = Controller(manager(ENGINE - timedelta(minutes=30)), workspace=None)
    await hold_or_teardown(controller, rec, active=set())
    assert controller.done == [("teardown", "the workspace stopped")]


async def test_a_cluster_that_died_with_the_engine_waits_for_its_workspace(rec):
    controller = Controller(manager(ENGINE + timedelta(seconds=1)), workspace=None)
    await hold_or_teardown(controller, rec, active=set())
    assert rec.status == "starting" and rec.reason.startswith(f"{WAITING}: engine restarted")
    assert controller.done == [("save",)]  # kept: its record, settings and dead manager
    await hold_or_teardown(controller, rec, active=set())  # the next pass changes nothing
    assert controller.done == [("save",)]


async def test_it_waits_while_the_hub_does_not_list_the_new_workspace_as_running(rec, tmp_path):
    new = workspace_container("new-workspace", str(tmp_path / "data"))
    controller = Controller(manager(ENGINE + timedelta(seconds=1)), workspace=new)
    await hold_or_teardown(controller, rec, active=set())
    assert rec.workspace_container == "old-workspace"
    assert ("launch", "alice/lab") not in controller.done


async def test_it_comes_back_with_its_settings_once_its_workspace_runs_again(rec, tmp_path):
    (tmp_path / "data").mkdir()
    new = workspace_container("new-workspace", str(tmp_path / "data"))
    controller = Controller(manager(ENGINE + timedelta(seconds=1)), workspace=new)
    controller.records[rec.key] = rec
    await hold_or_teardown(controller, rec, active={"alice/lab"})
    assert controller.done[0] == ("remove old containers",)
    assert controller.done[-1] == ("launch", "alice/lab")
    assert rec.workspace_container == "new-workspace" and rec.data_dir == str(tmp_path / "data")
    assert rec.status == "starting" and rec.settings == {"type": "static", "members": 2}
    log = (tmp_path / "data" / "logs" / "sge-scaler.log").read_text()
    assert "cluster abc stopped: engine restarted" in log and "starting it again" in log


async def test_a_cluster_whose_workspace_never_came_back_is_removed_after_the_wait(rec):
    controller = Controller(manager(ENGINE - timedelta(seconds=0.5)), workspace=None)
    recovery = ClusterRecovery(controller, wait_seconds=60)
    await recovery.hold_or_teardown(rec, active=set())
    [(what, reason)] = controller.done
    assert what == "teardown" and "did not start again within 0:01:00" in reason
