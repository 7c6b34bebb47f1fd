"""The auto scaler's bookkeeping around the pure decision, against a fake Grid Engine: lost
members are rescheduled, removed and replaced under new names and addresses, a member that
fails to start leaves nothing behind, and each never-fitting job is logged once."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from benchhub.resource_models import ResourceModel
from hub_services.clusters import member_starts, sge
from hub_services.clusters import scaler as scaler_pass
from hub_services.clusters.addresses import member_addresses
from hub_services.clusters.containers import ClusterNames
from hub_services.clusters.scaler import ClusterScaler
from hub_services.clusters.scaling import Capacity, Request, ScalingPolicy
from hub_services.clusters.spark import SparkView, WorkerUse
from hub_services.clusters.state import ClusterRecord

GIB = 1024**3
MODEL = ResourceModel("standard-small", 2, 8)
CAPACITY = Capacity(1, 7 * GIB)
NAMES = ClusterNames("bench", "k3x9q2")
T0 = datetime(2026, 1, 31, 18, 0, tzinfo=UTC)


class FakeNodes:
    """Containers and Grid Engine hosts in memory; ``fail_next`` makes starts fail."""

    def __init__(self):
        self.engine = self
        self.running: dict[str, bool] = {}
        self.hosts: dict[str, sge.HostState] = {}
        self.pending: list[sge.PendingJob] = []
        self.jobs_on: dict[str, int] = {}
        self.fail_next = 0
        self.removed: list[str] = []
        self.spark = SparkView(master_alive=True)
        self.drained: list[str] = []
        self.started_with_worker: dict[str, bool] = {}
        self.workers_started: list[str] = []
        self.registered: list[str] = []  # Grid Engine hosts added, in order
        self.registrations: list[list[str]] = []  # the hosts of each registration call
        self.watched: list[list[str]] = []  # the members each join watch waited for
        self.pending_watches: list[int] = []  # the "after" of each pending-job watch

    async def start_worker(self, host):
        self.workers_started.append(host)

    async def inspect(self, name):
        if name not in self.running:
            return None
        return {"State": {"Running": self.running[name], "ExitCode": 137, "OOMKilled": False}}

    async def observe(self, names):
        return dict(self.hosts), list(self.pending)

    async def observe_spark(self, names, rec, capacity):
        return self.spark

    async def reschedule(self, names, host):
        return self.jobs_on.pop(host, 0)

    async def remove_member(self, names, rec, member):
        self.running.pop(member.name, None)
        self.hosts.pop(member.name, None)
        self.removed.append(member.name)

    async def drain(self, names, host):
        self.drained.append(host)

    async def register_members(self, names, members, capacity):  # one call per round
        if not members:  # as ClusterNodes: no call at all
            return
        self.registered += [m.name for m in members]
        self.registrations.append([m.name for m in members])

    async def wait_for_join(self, names, hosts):  # as the manager's watch: until one reports
        self.watched.append(list(hosts))
        for _ in range(200):
            joined = [h for h in hosts if h in self.hosts and self.hosts[h].reporting]
            if joined:
                return joined
            await asyncio.sleep(0.005)
        return []

    async def wait_for_new_jobs(self, names, after):  # as the manager's pending-job watch
        self.pending_watches.append(after)
        for _ in range(200):
            new = [j.job_id for j in self.pending if int(j.job_id) > after]
            if new:
                return new
            await asyncio.sleep(0.005)
        return []

    async def start_member(
        self,
        names,
        rec,
        member,
        model,
        capacity,
        mounts,
        scratch_gb,
        spark_worker=False,
    ):
        self.started_with_worker[member.name] = spark_worker
        assert member.name in self.registered, f"{member.name} started before registering"
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("no space left on device")
        self.running[member.name] = True
        self.hosts[member.name] = sge.HostState(member.name, True, False, "", 0, capacity)


class FakeLog:
    def __init__(self):
        self.lines: list[str] = []

    def append(self, at, lines):
        self.lines += lines


@pytest.fixture
def clock(monkeypatch):
    now = {"t": T0}
    monkeypatch.setattr(scaler_pass, "utcnow", lambda: now["t"])
    monkeypatch.setattr(member_starts, "utcnow", lambda: now["t"])
    return now


def cluster(members: int) -> tuple[ClusterRecord, ScalingPolicy]:
    rec = ClusterRecord(
        user="alice",
        workspace="lab",
        cluster_id="k3x9q2",
        settings={"type": "static", "members": members, "resource_model": MODEL.name},
        subnet="10.231.0.64/26",
        workspace_container="ws",
        workspace_address="10.231.0.80",
        internal=False,
        model=vars(MODEL),
        data_dir="/nowhere",
        created_at=T0.isoformat(),
        status="running",
        addresses=member_addresses("10.231.0.64/26", 900).to_dict(),
    )
    policy = ScalingPolicy(
        members, members, CAPACITY, stabilisation=timedelta(0), min_lifetime=timedelta(0)
    )
    return rec, policy


async def save():
    pass


async def step(scaler, rec, policy, log):
    """One pass, and the member starts it launched (they run beside the pass) ended."""
    view = await scaler.step(NAMES, rec, MODEL, policy, [], log)
    await scaler.settle(rec.key)
    return view


def booting_a_jvm(nodes: FakeNodes, rec: ClusterRecord) -> None:
    """A Spark application waits on ``rec``'s master: its members start with their Spark
    worker, so each holds its place in the start window until it reports."""
    rec.spark_in_use = True
    nodes.spark = SparkView(True, registered_applications=1)


async def test_a_lost_member_is_rescheduled_removed_and_replaced_under_a_new_name(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save, address_quarantine=900)
    rec, policy = cluster(2)
    await step(scaler, rec, policy, log)
    first = dict((m.name, m.address) for m in rec.members.values())
    assert sorted(first) == [NAMES.member(1), NAMES.member(2)]
    clock["t"] += timedelta(seconds=5)
    await step(scaler, rec, policy, log)
    assert all(m.joined for m in rec.members.values())

    nodes.running[NAMES.member(1)] = False  # killed
    nodes.jobs_on[NAMES.member(1)] = 2
    view = await step(scaler, rec, policy, log)
    assert nodes.removed == [NAMES.member(1)]
    assert any(
        line.startswith(f"member {NAMES.member(1)} lost: killed (SIGKILL)")
        and line.endswith("2 running jobs rescheduled")
        for line in log.lines
    )
    assert log.lines[-1] == "scale up by 1 to 2 members: 1 members is below the minimum of 2"
    assert sorted(rec.members) == [NAMES.member(2), NAMES.member(3)]
    assert rec.members[NAMES.member(3)].address not in first.values()  # in quarantine
    assert [m["name"] for m in view["members"]] == [NAMES.member(2), NAMES.member(3)]


async def test_a_member_that_fails_to_start_leaves_nothing_behind(clock):
    nodes, log = FakeNodes(), FakeLog()
    nodes.fail_next = 1
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(2)
    await step(scaler, rec, policy, log)
    assert list(rec.members) == [NAMES.member(2)]
    assert nodes.removed == [NAMES.member(1)]
    assert f"member {NAMES.member(1)} failed to start: no space left on device" in log.lines
    assert set(rec.addresses["held"]) == {NAMES.member(2)}  # its address was released
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [NAMES.member(2), NAMES.member(3)]


async def test_a_member_that_never_joins_is_replaced(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save, join_timeout=60)
    rec, policy = cluster(1)
    await step(scaler, rec, policy, log)
    nodes.hosts[NAMES.member(1)] = sge.HostState(NAMES.member(1), False, False, "u", 0, None)
    clock["t"] += timedelta(seconds=30)
    await step(scaler, rec, policy, log)
    assert list(rec.members) == [NAMES.member(1)]  # still within its time to join
    clock["t"] += timedelta(seconds=40)
    await step(scaler, rec, policy, log)
    assert (
        f"member {NAMES.member(1)} lost: it did not join the manager within 70 s; "
        "0 running jobs rescheduled" in log.lines
    )
    assert list(rec.members) == [NAMES.member(2)]


async def test_a_never_fitting_job_is_logged_once_while_it_waits(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(1)
    huge = sge.PendingJob("7", "big", "jovyan", "qw", 1, 1, 1, 100 * GIB)
    nodes.pending = [huge]
    for _ in range(3):
        view = await step(scaler, rec, policy, log)
        clock["t"] += timedelta(seconds=1)
    assert [line for line in log.lines if "never scheduled" in line] == [
        "never scheduled: job 7 asks for 1 core, 100 GiB per task, more than one member "
        "offers (1 core, 7 GiB); it waits until the cluster uses a larger member resource model"
    ]
    assert view["unsatisfiable"][0]["job_id"] == "7"
    assert view["pending"][0]["static_mem_bytes"] == 100 * GIB
    nodes.pending = []  # deleted: a new job 7 (a new cluster) would be logged again
    await step(scaler, rec, policy, log)
    assert rec.reported == []


def dynamic_cluster(low: int, high: int) -> tuple[ClusterRecord, ScalingPolicy]:
    rec, _ = cluster(1)
    rec.settings = {
        "type": "dynamic",
        "min_members": low,
        "max_members": high,
        "resource_model": MODEL.name,
    }
    policy = ScalingPolicy(
        low, high, CAPACITY, stabilisation=timedelta(0), min_lifetime=timedelta(0)
    )
    return rec, policy


async def test_executors_a_spark_application_wants_scale_the_cluster_up(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = dynamic_cluster(0, 3)
    await step(scaler, rec, policy, log)
    assert rec.members == {}  # nothing asked for: nothing started
    nodes.spark = SparkView(True, requests=[Request("spark app-1", 2, Capacity(1, GIB))])
    view = await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [NAMES.member(1), NAMES.member(2)]
    assert log.lines[-1] == "scale up by 2 to 2 members: 2 pending tasks need 2 more members"
    assert view["spark"] == {"master": "alive", "workers": 0, "applications": [], "in_use": True}
    assert nodes.started_with_worker == {NAMES.member(1): True, NAMES.member(2): True}


async def test_a_grid_engine_only_cluster_starts_its_members_without_a_spark_worker(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(2)
    for _ in range(3):
        await step(scaler, rec, policy, log)
        clock["t"] += timedelta(seconds=5)
    assert nodes.started_with_worker == {NAMES.member(1): False, NAMES.member(2): False}
    assert nodes.workers_started == [] and not rec.spark_in_use
    assert not any("Spark" in line for line in log.lines), log.lines


async def test_a_spark_application_gives_every_joined_member_a_worker_once(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(2)
    await step(scaler, rec, policy, log)  # members start, without workers
    nodes.spark = SparkView(True, registered_applications=1)
    clock["t"] += timedelta(seconds=5)
    view = await step(scaler, rec, policy, log)
    assert (
        "Spark is in use (1 Spark application registered with the master): members run a "
        "Spark worker from now on" in log.lines
    )
    assert nodes.workers_started == [NAMES.member(1), NAMES.member(2)]
    assert rec.spark_in_use and view["spark"]["in_use"]
    assert all(m.spark_worker for m in rec.members.values())
    nodes.spark = SparkView(True)  # the application ended: the cluster stays in Spark use
    clock["t"] += timedelta(seconds=5)
    await step(scaler, rec, policy, log)
    assert nodes.workers_started == [NAMES.member(1), NAMES.member(2)]  # not again

    # lost: no application waits for workers, so its replacement boots without one and gets
    # it once it has reported
    nodes.running[NAMES.member(1)] = False
    await step(scaler, rec, policy, log)
    assert nodes.started_with_worker[NAMES.member(3)] is False
    await step(scaler, rec, policy, log)
    assert nodes.workers_started[-1] == NAMES.member(3)
    assert rec.members[NAMES.member(3)].spark_worker

    nodes.spark = SparkView(True, registered_applications=1)  # an application waits again
    nodes.running[NAMES.member(2)] = False
    await step(scaler, rec, policy, log)
    assert nodes.started_with_worker[NAMES.member(4)] is True  # with its worker, at once


async def test_a_member_running_executors_is_busy_and_drained_only_after_they_end(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = dynamic_cluster(0, 2)
    nodes.spark = SparkView(True, requests=[Request("spark app-1", 1, Capacity(1, GIB))])
    await step(scaler, rec, policy, log)
    member = NAMES.member(1)
    nodes.spark = SparkView(True, workers={member: WorkerUse(1, GIB)})  # the executor runs
    for _ in range(3):
        clock["t"] += timedelta(seconds=400)
        view = await step(scaler, rec, policy, log)
        assert nodes.drained == []
        assert view["members"][0]["state"] == "busy"
        assert view["members"][0]["spark"] == {
            "cores_used": 1,
            "memory_used_bytes": GIB,
            "alive": True,
        }
    # its executor's cores are not free: a second application's executor needs a new member
    nodes.spark = SparkView(
        True,
        workers={member: WorkerUse(1, GIB)},
        requests=[Request("spark app-2", 1, Capacity(1, GIB))],
    )
    await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [member, NAMES.member(2)]
    idle = WorkerUse(0, 0)
    nodes.spark = SparkView(True, workers={member: idle, NAMES.member(2): idle})
    clock["t"] += timedelta(seconds=400)
    await step(scaler, rec, policy, log)
    assert len(nodes.drained) == 1  # idle now: one drain at a time


async def test_a_burst_starts_members_as_those_booting_report_never_more_at_once(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting: set[str] = set()
    started = nodes.start_member

    async def start_member(names, rec, member, *args, **kwargs):  # boots until told
        await started(names, rec, member, *args, **kwargs)
        nodes.hosts[member.name] = sge.HostState(member.name, False, False, "u", 0, None)
        booting.add(member.name)

    nodes.start_member = start_member
    scaler = ClusterScaler(nodes, save, start_window=2)
    rec, policy = cluster(5)
    booting_a_jvm(nodes, rec)
    await step(scaler, rec, policy, log)
    assert log.lines[0] == "scale up by 5 to 5 members: 0 members is below the minimum of 5"
    assert len(rec.members) == 5 and booting == {NAMES.member(1), NAMES.member(2)}
    assert [m.name for m in rec.members.values() if m.waiting_to_start] == [
        NAMES.member(3),
        NAMES.member(4),
        NAMES.member(5),
    ]
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert len(booting) == 2  # nobody reported yet: nothing more starts

    nodes.hosts[NAMES.member(1)] = sge.HostState(NAMES.member(1), True, False, "", 0, CAPACITY)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert booting == {NAMES.member(i) for i in (1, 2, 3)}  # member 1's place went to 3
    for name in booting:
        nodes.hosts[name] = sge.HostState(name, True, False, "", 0, CAPACITY)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert len(booting) == 5 and not any(m.waiting_to_start for m in rec.members.values())
    assert nodes.removed == []  # a member waiting to start is not lost for lack of a container


async def test_a_member_that_reports_wakes_the_service_and_the_next_round_is_registered_ahead(
    clock,
):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    woken = []
    scaler = ClusterScaler(nodes, save, start_window=2)
    scaler.on_joined = lambda: woken.append(True)
    rec, policy = cluster(5)
    booting_a_jvm(nodes, rec)
    await step(scaler, rec, policy, log)
    first, ahead = [NAMES.member(i) for i in (1, 2)], [NAMES.member(i) for i in (3, 4)]
    # members 3 and 4 became Grid Engine hosts beside 1 and 2's start: they only boot later
    assert sorted(nodes.registered) == sorted(first + ahead)
    await asyncio.sleep(0.02)
    assert nodes.watched == [first] and woken == []  # watched, nobody reported yet
    nodes.hosts[NAMES.member(1)] = sge.HostState(NAMES.member(1), True, False, "", 0, CAPACITY)
    await asyncio.sleep(0.05)
    assert woken == [True]  # member 1 reported: the service is woken for a pass at once

    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)  # member 1 joined: 3 starts without registering again
    assert sorted(nodes.registered) == sorted([*first, *ahead, NAMES.member(5)])
    await asyncio.sleep(0.01)
    assert nodes.watched[-1] == [NAMES.member(2), NAMES.member(3)]
    scaler.forget(rec.key)  # the cluster goes: so does its watch


async def test_a_job_submitted_after_a_pass_wakes_the_service_while_the_cluster_can_grow(clock):
    nodes, log = FakeNodes(), FakeLog()
    woken = []
    scaler = ClusterScaler(nodes, save)
    scaler.arrivals.on_new_jobs = lambda: woken.append(True)
    rec, policy = dynamic_cluster(0, 2)
    nodes.pending = [sge.PendingJob("7", "old", "jovyan", "hqw", 1, 1, 1, GIB)]  # held
    await step(scaler, rec, policy, log)
    await asyncio.sleep(0.05)
    assert nodes.pending_watches == [7] and woken == []  # job 7 was seen: no wake for it
    nodes.pending.append(sge.PendingJob("8", "new", "jovyan", "qw", 1, 1, 1, GIB))
    await asyncio.sleep(0.05)
    assert woken == [True]  # job 8 came after the pass: a pass now, not after the interval

    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)  # scales up to 1 member; the watch goes on after 8
    await asyncio.sleep(0.01)
    assert nodes.pending_watches[-1] == 8 and scaler.arrivals.running(rec.key)
    scaler.forget(rec.key)
    await asyncio.sleep(0)
    assert not scaler.arrivals.running(rec.key)


async def test_a_static_cluster_or_one_at_its_maximum_has_no_pending_job_watch(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(2)  # static: min == max
    await step(scaler, rec, policy, log)
    rec2, policy2 = dynamic_cluster(0, 1)
    rec2.workspace = "other"
    nodes.pending = [sge.PendingJob("1", "job", "jovyan", "qw", 1, 1, 1, GIB)]
    await step(scaler, rec2, policy2, log)  # scales up to its maximum of 1
    await step(scaler, rec2, policy2, log)
    await asyncio.sleep(0.01)
    assert not scaler.arrivals.running(rec.key) and not scaler.arrivals.running(rec2.key)
    off = ClusterScaler(nodes, save)
    off.arrivals.enabled = False  # ClustersApp.watch_new_jobs False: passes only
    rec3, policy3 = dynamic_cluster(0, 3)
    await step(off, rec3, policy3, log)
    assert not off.arrivals.running(rec3.key)


async def test_an_idle_member_is_drained_only_after_its_minimum_lifetime_since_joining(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save, join_timeout=600)
    rec, policy = dynamic_cluster(0, 2)
    policy = ScalingPolicy(
        0, 2, CAPACITY, stabilisation=timedelta(0), min_lifetime=timedelta(seconds=60)
    )
    nodes.pending = [sge.PendingJob("1", "job", "jovyan", "qw", 1, 1, 1, GIB)]
    await step(scaler, rec, policy, log)
    name = NAMES.member(1)
    nodes.hosts[name] = sge.HostState(name, False, False, "u", 0, None)  # a slow boot
    nodes.pending = []  # the job went away meanwhile
    clock["t"] += timedelta(seconds=50)
    nodes.hosts[name] = sge.HostState(name, True, False, "", 0, CAPACITY)  # joins at 50 s
    await step(scaler, rec, policy, log)
    clock["t"] += timedelta(seconds=20)  # 70 s after its start, 20 s after joining
    await step(scaler, rec, policy, log)
    assert nodes.drained == [] and rec.members[name].joined_at is not None
    clock["t"] += timedelta(seconds=45)  # 65 s after joining
    await step(scaler, rec, policy, log)
    assert nodes.drained == [name]


def booting_until_told(nodes: FakeNodes) -> None:
    """The fake's members boot (do not report) until a test sets them reporting."""
    started = nodes.start_member

    async def start_member(names, rec, member, *args, **kwargs):
        await started(names, rec, member, *args, **kwargs)
        nodes.hosts[member.name] = sge.HostState(member.name, False, False, "u", 0, None)

    nodes.start_member = start_member


def report(nodes: FakeNodes, *names: str) -> None:
    for name in names:
        nodes.hosts[name] = sge.HostState(name, True, False, "", 0, CAPACITY)


async def test_a_round_of_members_becomes_grid_engine_hosts_in_one_registration(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    scaler = ClusterScaler(nodes, save, start_window=5)
    rec, policy = cluster(7)
    booting_a_jvm(nodes, rec)
    await step(scaler, rec, policy, log)
    first, rest = [NAMES.member(i) for i in range(1, 6)], [NAMES.member(6), NAMES.member(7)]
    # one call for the round that starts, one for the round after it (registered ahead)
    assert sorted(nodes.registrations) == [first, rest]
    assert sorted(nodes.running) == sorted(first)


async def test_the_next_scale_up_is_decided_while_the_previous_round_still_starts(clock):
    nodes, log = FakeNodes(), FakeLog()
    starting = asyncio.Event()
    go_on = asyncio.Event()
    started = nodes.start_member
    calls: list[str] = []

    async def start_member(names, rec, member, *args, **kwargs):  # a slow container start
        calls.append(member.name)
        starting.set()
        await go_on.wait()
        await started(names, rec, member, *args, **kwargs)
        nodes.hosts[member.name] = sge.HostState(member.name, False, False, "u", 0, None)

    nodes.start_member = start_member
    scaler = ClusterScaler(nodes, save, start_window=5)
    rec, policy = dynamic_cluster(0, 10)
    booting_a_jvm(nodes, rec)
    nodes.pending = [sge.PendingJob("1", "job", "jovyan", "qw", 2, 1, 1, GIB)]
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # returns while its round starts
    await starting.wait()
    assert scaler.starts.in_flight(rec.key) and sorted(nodes.running) == []
    nodes.pending = [sge.PendingJob("1", "job", "jovyan", "qw", 6, 1, 1, GIB)]
    clock["t"] += timedelta(seconds=1)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # not held up by the first round
    assert log.lines[-1] == "scale up by 4 to 6 members: 6 pending tasks need 4 more members"
    go_on.set()
    await scaler.starts.settle(rec.key)
    assert sorted(calls) == sorted(rec.members)[:5] and len(set(calls)) == 5  # each once
    # the window (5) was full: the sixth waits for a member to report
    assert [m.name for m in rec.members.values() if m.waiting_to_start] == [NAMES.member(6)]
    report(nodes, *calls)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)  # the first five report
    assert len(calls) == 6 and not any(m.waiting_to_start for m in rec.members.values())
    assert nodes.removed == []


async def test_a_member_whose_cluster_stopped_while_it_started_is_removed_again(clock):
    nodes, log = FakeNodes(), FakeLog()
    go_on = asyncio.Event()
    started = nodes.start_member

    async def start_member(names, rec, member, *args, **kwargs):
        await go_on.wait()
        await started(names, rec, member, *args, **kwargs)

    nodes.start_member = start_member
    scaler = ClusterScaler(nodes, save)
    rec, policy = cluster(2)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)
    rec.status = "stopping"  # a stop came in while the containers were being made
    go_on.set()
    await scaler.starts.settle(rec.key)
    assert sorted(nodes.removed) == [NAMES.member(1), NAMES.member(2)]
    assert nodes.running == {}


async def test_a_round_is_started_without_waiting_for_the_next_rounds_registration(clock):
    nodes, log = FakeNodes(), FakeLog()
    go_on = asyncio.Event()
    registered = nodes.register_members

    async def register_members(names, members, capacity):  # the ahead one is slow
        if NAMES.member(3) in [m.name for m in members]:
            await go_on.wait()
        await registered(names, members, capacity)

    nodes.register_members = register_members
    scaler = ClusterScaler(nodes, save, start_window=2)
    rec, policy = cluster(4)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)
    for _ in range(100):  # the first round settles while members 3 and 4 still register
        if not rec.members[NAMES.member(2)].waiting_to_start:
            break
        await asyncio.sleep(0.01)
    assert [m.name for m in rec.members.values() if not m.waiting_to_start] == [
        NAMES.member(1),
        NAMES.member(2),
    ]
    clock["t"] += timedelta(seconds=1)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # 1 and 2 joined: 3 and 4 may start
    await asyncio.sleep(0.02)
    assert NAMES.member(3) not in nodes.running  # their round waits for that registration
    go_on.set()
    await scaler.starts.settle(rec.key)
    assert sorted(nodes.running) == sorted(rec.members)
    # each member registered once: the round waited for the registration ahead, not redid it
    assert sorted(nodes.registered) == sorted(rec.members)


def pending_jobs(count: int) -> list[sge.PendingJob]:
    return [sge.PendingJob(str(i), "job", "alice", "qw", 1, 1, 1, GIB) for i in range(count)]


async def test_a_scale_up_starts_spare_members_without_a_grid_engine_registration(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save, start_window=3)
    scaler.spare_members = 3
    rec, policy = dynamic_cluster(0, 10)
    await step(scaler, rec, policy, log)  # quiet: three spares registered, nothing started
    spare = {NAMES.member(i) for i in (1, 2, 3)}
    assert set(rec.spares) == spare and rec.members == {} and nodes.running == {}
    assert nodes.registrations == [sorted(spare)]
    addresses = dict(rec.spares)

    nodes.pending = pending_jobs(2)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert sorted(nodes.running) == [NAMES.member(1), NAMES.member(2)]
    assert nodes.registrations == [sorted(spare)]  # no registration before their start
    assert {n: rec.members[n].address for n in rec.members} == {
        n: addresses[n] for n in (NAMES.member(1), NAMES.member(2))
    }
    assert list(rec.spares) == [NAMES.member(3)]

    nodes.pending = []
    for name in rec.members:  # they report: quiet again, the spares are topped up
        nodes.hosts[name] = sge.HostState(name, True, False, "", 1, CAPACITY)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert list(rec.spares) == [NAMES.member(i) for i in (3, 4, 5)]
    assert nodes.registrations[-1] == [NAMES.member(4), NAMES.member(5)]


def with_two_spares(nodes) -> tuple[ClusterScaler, ClusterRecord, ScalingPolicy]:
    """A scaler of start window 5 keeping 2 spares, and a dynamic cluster of 0 to 10 members."""
    scaler = ClusterScaler(nodes, save, start_window=5)
    scaler.spare_members = 2
    return (scaler, *dynamic_cluster(0, 10))


async def test_a_scale_up_larger_than_the_spares_names_and_registers_the_rest(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler, rec, policy = with_two_spares(nodes)
    await step(scaler, rec, policy, log)
    nodes.pending = pending_jobs(4)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert sorted(rec.members) == sorted(NAMES.member(i) for i in (1, 2, 3, 4))
    assert sorted(nodes.running) == sorted(rec.members) and rec.spares == {}
    # the spares' registration, then one for the two members named by the scale-up
    assert nodes.registrations == [
        [NAMES.member(1), NAMES.member(2)],
        [NAMES.member(3), NAMES.member(4)],
    ]


async def test_no_spares_are_registered_while_members_boot_or_on_a_static_cluster(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save, start_window=2)
    scaler.spare_members = 2
    rec, policy = cluster(2)
    await step(scaler, rec, policy, log)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert rec.spares == {} and sorted(nodes.registered) == sorted(rec.members)

    rec, policy = dynamic_cluster(0, 10)
    rec.cluster_id = "other"
    rec.workspace = "lab2"
    booting_until_told(nodes)
    scaler.spare_members = 1
    await step(scaler, rec, policy, log)
    (first,) = rec.spares
    nodes.pending = pending_jobs(1)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    nodes.pending = []
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert list(rec.members) == [first] and rec.spares == {}  # it boots: no new spare yet
    nodes.hosts[first] = sge.HostState(first, True, False, "", 0, CAPACITY)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert len(rec.spares) == 1


async def test_spares_are_registered_again_with_a_manager_started_again(clock):
    nodes, log = FakeNodes(), FakeLog()
    scaler = ClusterScaler(nodes, save)
    scaler.spare_members = 2
    rec, policy = dynamic_cluster(0, 10)
    await step(scaler, rec, policy, log)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert len(nodes.registrations) == 1  # registered once, not every pass
    scaler.forget(rec.key)  # as when the cluster is brought up again with a new manager
    await step(scaler, rec, policy, log)
    assert nodes.registrations == [list(rec.spares)] * 2


async def test_a_member_that_reports_frees_its_place_for_the_next_round_before_any_pass(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    scaler = ClusterScaler(nodes, save, start_window=2)
    rec, policy = cluster(4)
    booting_a_jvm(nodes, rec)
    await step(scaler, rec, policy, log)
    assert sorted(nodes.running) == [NAMES.member(1), NAMES.member(2)]
    report(nodes, NAMES.member(1))  # no pass from here on
    for _ in range(200):
        if NAMES.member(3) in nodes.running:
            break
        await asyncio.sleep(0.005)
    assert sorted(nodes.running) == [NAMES.member(i) for i in (1, 2, 3)]  # 4 still waits
    assert rec.members[NAMES.member(4)].waiting_to_start
    assert not rec.members[NAMES.member(1)].joined  # the next pass records that
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert rec.members[NAMES.member(1)].joined and NAMES.member(4) not in nodes.running
    scaler.forget(rec.key)


async def test_a_rounds_spare_members_start_while_its_other_members_still_register(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    go_on = asyncio.Event()
    registered = nodes.register_members

    async def register_members(names, members, capacity):  # the scale-up's own: slow
        if NAMES.member(3) in [m.name for m in members]:
            await go_on.wait()
        await registered(names, members, capacity)

    nodes.register_members = register_members
    scaler, rec, policy = with_two_spares(nodes)
    await step(scaler, rec, policy, log)  # quiet: members 1 and 2 are spares
    nodes.pending = pending_jobs(3)
    clock["t"] += timedelta(seconds=1)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # one round: 1, 2 and the new 3
    for _ in range(200):
        if len(nodes.running) == 2:
            break
        await asyncio.sleep(0.005)
    assert sorted(nodes.running) == [NAMES.member(1), NAMES.member(2)]  # 3 still registers
    go_on.set()
    await scaler.starts.settle(rec.key)
    assert sorted(nodes.running) == [NAMES.member(i) for i in (1, 2, 3)]
    assert not any(m.waiting_to_start for m in rec.members.values())


async def test_a_failed_registration_fails_only_the_members_it_was_for(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    registered = nodes.register_members

    async def register_members(names, members, capacity):  # the scale-up's own fails
        if NAMES.member(3) in [m.name for m in members]:
            raise RuntimeError("qconf: cannot reach the qmaster")
        await registered(names, members, capacity)

    nodes.register_members = register_members
    scaler, rec, policy = with_two_spares(nodes)
    await step(scaler, rec, policy, log)
    nodes.pending = pending_jobs(3)
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert sorted(nodes.running) == [NAMES.member(1), NAMES.member(2)]
    assert sorted(rec.members) == [NAMES.member(1), NAMES.member(2)]  # 3 is gone again
    assert any(line.startswith(f"member {NAMES.member(3)} failed to start") for line in log.lines)


async def test_a_rounds_members_registered_ahead_start_while_its_other_members_still_register(
    clock,
):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    spares_registered = asyncio.Event()
    go_on = asyncio.Event()
    registered = nodes.register_members

    async def register_members(names, members, capacity):  # both slow, each its own gate
        hosts = [m.name for m in members]
        await (go_on if NAMES.member(3) in hosts else spares_registered).wait()
        await registered(names, members, capacity)

    nodes.register_members = register_members
    scaler, rec, policy = with_two_spares(nodes)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # members 1 and 2 spares, registering
    assert list(rec.spares) == [NAMES.member(1), NAMES.member(2)]
    nodes.pending = pending_jobs(3)
    clock["t"] += timedelta(seconds=1)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # one round: 1, 2 and the new 3
    assert sorted(rec.members) == [NAMES.member(i) for i in (1, 2, 3)]
    spares_registered.set()  # the spares' registration ends; 3's still runs
    for _ in range(200):
        if len(nodes.running) == 2:
            break
        await asyncio.sleep(0.005)
    assert sorted(nodes.running) == [NAMES.member(1), NAMES.member(2)]
    go_on.set()
    await scaler.starts.settle(rec.key)
    assert sorted(nodes.running) == [NAMES.member(i) for i in (1, 2, 3)]
    assert sorted(nodes.registered) == sorted(rec.members)  # each registered once


async def test_a_member_whose_registration_ahead_failed_is_registered_by_its_round(clock):
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    registered = nodes.register_members
    fail_now = asyncio.Event()
    calls = []

    async def register_members(names, members, capacity):  # the spares' one fails, late
        calls.append([m.name for m in members])
        if len(calls) == 1:
            await fail_now.wait()
            raise RuntimeError("qconf: cannot reach the qmaster")
        await registered(names, members, capacity)

    nodes.register_members = register_members
    scaler, rec, policy = with_two_spares(nodes)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # the spares' registration starts
    nodes.pending = pending_jobs(3)
    clock["t"] += timedelta(seconds=1)
    await scaler.step(NAMES, rec, MODEL, policy, [], log)  # a round of 1, 2 and the new 3
    fail_now.set()  # while the round waits for it
    await scaler.starts.settle(rec.key)
    assert sorted(nodes.running) == [NAMES.member(i) for i in (1, 2, 3)]
    assert not any(m.waiting_to_start for m in rec.members.values())
    assert calls[0] == [NAMES.member(1), NAMES.member(2)]
    assert sorted(nodes.registered) == sorted(rec.members)  # the failed ones again, and 3


async def test_a_grid_engine_burst_in_a_spark_cluster_boots_its_members_before_their_jvms(clock):
    """In a cluster in Spark use with no Spark application waiting, a scale-up's members
    start without their Spark worker, and no worker starts while any of them boots: the
    execution daemons report first; then every member gets its worker."""
    nodes, log = FakeNodes(), FakeLog()
    booting_until_told(nodes)
    scaler = ClusterScaler(nodes, save, start_window=2)
    rec, policy = dynamic_cluster(0, 3)
    rec.spark_in_use = True  # a kernel used Spark earlier; its application has ended
    nodes.pending = [sge.PendingJob("1", "job", "jovyan", "qw", 3, 1, 1, GIB)]
    await step(scaler, rec, policy, log)
    assert len(rec.members) == 3
    first = [NAMES.member(1), NAMES.member(2)]
    nodes.pending = []
    for name in first[:1]:  # member 1 reports (a job runs), 2 boots, 3 waits for room
        nodes.hosts[name] = sge.HostState(name, True, False, "", 1, CAPACITY)  # busy
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert nodes.workers_started == []  # members still boot: no JVM beside them
    for name in rec.members:
        nodes.hosts[name] = sge.HostState(name, True, False, "", 1, CAPACITY)  # busy
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)  # member 3 starts (its room freed), boots
    for name in rec.members:
        nodes.hosts[name] = sge.HostState(name, True, False, "", 1, CAPACITY)  # busy
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)  # all reported: now the workers
    assert nodes.started_with_worker == dict.fromkeys(rec.members, False)
    assert sorted(nodes.workers_started) == sorted(rec.members)
    assert all(m.spark_worker for m in rec.members.values())


async def test_members_without_a_jvm_start_as_containers_before_them_run_not_as_they_report(
    clock,
):
    """A Grid Engine-only burst: a member's place in the start window is free once its
    container runs (its execution daemon's start costs little), so the next round starts
    then, without waiting for any member to report; never more containers are being started
    at once than the window holds."""
    nodes, log = FakeNodes(), FakeLog()
    started = nodes.start_member
    in_flight, most = set(), [0]

    async def start_member(names, rec, member, *args, **kwargs):  # a container start: slow
        in_flight.add(member.name)
        most[0] = max(most[0], len(in_flight))
        await asyncio.sleep(0.01)
        await started(names, rec, member, *args, **kwargs)
        nodes.hosts[member.name] = sge.HostState(member.name, False, False, "u", 0, None)
        in_flight.discard(member.name)

    nodes.start_member = start_member
    scaler = ClusterScaler(nodes, save, start_window=2)
    rec, policy = cluster(5)
    await step(scaler, rec, policy, log)  # one pass: no member reports, none will
    assert sorted(nodes.running) == sorted(rec.members) and len(rec.members) == 5
    assert not any(m.waiting_to_start for m in rec.members.values())
    assert most[0] == 2
    assert nodes.removed == []
    scaler.forget(rec.key)
