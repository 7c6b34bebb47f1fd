"""The auto scaler's storage limits against a fake Grid Engine and fake measurements: a member
whose own files passed its model's disk_gb is replaced with the reason in the scaler log, and
a scale-up starts only the members whose /scratch fits (real StorageAdmission on temp dirs,
with a stated capacity so nothing depends on this machine's free space)."""

from datetime import UTC, datetime, timedelta

import pytest

from benchhub.resource_models import ResourceModel
from benchhub.storage_admission import StorageRequest
from benchhub.storage_allocations import StorageAdmission, StorageRefused
from benchhub.volumes import LoopbackVolume
from benchhub.writable_layer import Cadence, LayerUsage
from hub_services.clusters import member_starts, sge
from hub_services.clusters import scaler as scaler_pass
from hub_services.clusters.addresses import member_addresses
from hub_services.clusters.containers import ClusterNames
from hub_services.clusters.scaler import ClusterScaler
from hub_services.clusters.scaling import Capacity, ScalingPolicy
from hub_services.clusters.spark import SparkView
from hub_services.clusters.state import ClusterRecord

GIB = 1024**3
MODEL = ResourceModel("standard-small", 2, 8, disk_gb=1)
NAMES = ClusterNames("bench", "k3x9q2")
T0 = datetime(2026, 1, 31, 18, 0, tzinfo=UTC)


class FakeNodes:
    """Members in memory with an upper directory each; scratch volumes under ``root``."""

    def __init__(self, root, admission=None):
        self.engine = self
        self.root = root
        self.admission = admission
        self.running: dict[str, bool] = {}
        self.hosts: dict[str, sge.HostState] = {}
        self.removed: list[str] = []

    def scratch(self, cluster_id, member):
        return LoopbackVolume(self.root, cluster_id, member)

    async def inspect(self, name):
        if name not in self.running:
            return None
        return {
            "State": {"Running": self.running[name], "ExitCode": 0},
            "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": f"/layers/{name}"}},
        }

    async def observe(self, names):
        return dict(self.hosts), []

    async def observe_spark(self, names, rec, capacity):
        return SparkView(master_alive=True)

    async def reschedule(self, names, host):
        return 1

    async def remove_member(self, names, rec, member):
        self.running.pop(member.name, None)
        self.hosts.pop(member.name, None)
        self.removed.append(member.name)

    async def register_members(self, names, members, capacity):
        pass

    async def wait_for_join(self, names, hosts):
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
        if scratch_gb and self.admission is not None:  # what ClusterNodes does first
            request = StorageRequest("scratch_gb", rec.user, scratch_gb * GIB, what="/scratch")
            self.admission.admit(self.scratch(rec.cluster_id, member.name).dir, request)
        self.running[member.name] = True
        self.hosts[member.name] = sge.HostState(member.name, True, False, "", 0, capacity)


class FakeWatch:
    """Measurements from a table (bytes per upper directory); counts how often it looked."""

    cadence = Cadence(min_interval=1, max_interval=60, assumed_rate=200 * 1024**2)

    def __init__(self):
        self.sizes: dict[str, int] = {}
        self.looks = 0

    async def usage(self, upper_dir):
        self.looks += 1
        return LayerUsage(self.sizes.get(upper_dir, 0), 0, 0)


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


def cluster(members: int, scratch_gb: int = 0) -> tuple[ClusterRecord, ScalingPolicy]:
    rec = ClusterRecord(
        user="alice",
        workspace="lab",
        cluster_id="k3x9q2",
        settings={
            "type": "static",
            "members": members,
            "resource_model": MODEL.name,
            "scratch_gb": scratch_gb,
        },
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
        members,
        members,
        Capacity(1, 7 * GIB),
        stabilisation=timedelta(0),
        min_lifetime=timedelta(0),
    )
    return rec, policy


async def save():
    pass


async def step(scaler, rec, policy, log):
    """One pass, and the member starts it launched (they run beside the pass) ended."""
    view = await scaler.step(NAMES, rec, MODEL, policy, [], log)
    await scaler.starts.settle(rec.key)
    return view


async def test_a_member_over_its_disk_limit_is_replaced_and_the_log_says_why(clock, tmp_path):
    nodes, watch, log = FakeNodes(tmp_path), FakeWatch(), FakeLog()
    scaler = ClusterScaler(nodes, save, layer_watch=watch)
    rec, policy = cluster(2)
    await step(scaler, rec, policy, log)
    watch.sizes[f"/layers/{NAMES.member(1)}"] = GIB // 2  # well within 1 GB
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [NAMES.member(1), NAMES.member(2)]
    looks = watch.looks
    await step(scaler, rec, policy, log)
    assert watch.looks == looks  # far below the limit: not measured again at once

    scaler._measured.clear()  # the next measurement is due
    watch.sizes[f"/layers/{NAMES.member(1)}"] = GIB + 1
    clock["t"] += timedelta(seconds=1)
    await step(scaler, rec, policy, log)
    assert nodes.removed == [NAMES.member(1)]
    assert (
        f"member {NAMES.member(1)} lost: disk limit: the member's own files (/tmp and "
        "everything outside /data and /scratch) passed 1 GB; /data is separate; 1 running "
        "job rescheduled"
    ) in log.lines
    assert sorted(rec.members) == [NAMES.member(2), NAMES.member(3)]  # replaced


def admission(tmp_path, capacity_gb: float) -> StorageAdmission:
    return StorageAdmission(roots=[tmp_path], capacity_gb=capacity_gb, user_quota="")


async def test_a_scale_up_starts_only_the_members_whose_scratch_fits_and_says_so_once(
    clock, tmp_path
):
    adm = admission(tmp_path, 5)
    nodes, log = FakeNodes(tmp_path, adm), FakeLog()
    scaler = ClusterScaler(nodes, save, admission=adm)
    rec, policy = cluster(4, scratch_gb=2)
    await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [NAMES.member(1), NAMES.member(2)]  # 2 x 2 GB of 5 GB
    notes = [line for line in log.lines if "cannot have their /scratch" in line]
    assert notes == [
        "2 of 4 new members cannot have their /scratch, so only 2 start: scratch_gb: 4 x 2 GB "
        "of /scratch (8 GB in all) does not fit: only 5 GB is free for workspace and cluster "
        "storage on this host (0 GB of 5 GB allocated); choose at most 1 GB per member, or "
        "fewer members (2 fit at 2 GB)"
    ]
    for _ in range(3):  # still short: no new addresses used, nothing logged again
        clock["t"] += timedelta(seconds=1)
        await step(scaler, rec, policy, log)
    assert sorted(rec.members) == [NAMES.member(1), NAMES.member(2)]
    assert rec.next_member == 3 and len(rec.addresses["held"]) == 2
    assert log.lines[-1].startswith("2 of 2 new members cannot have their /scratch, so none")
    assert sum("cannot have their /scratch" in line for line in log.lines) == 2


async def test_a_member_whose_scratch_was_taken_meanwhile_is_not_started(clock, tmp_path):
    adm = admission(tmp_path, 5)

    class Racing(FakeNodes):
        async def start_member(self, names, rec, member, *args, **kwargs):
            adm.admit(tmp_path / "elsewhere" / "big", StorageRequest("storage_gb", "bob", 4 * GIB))
            await super().start_member(names, rec, member, *args, **kwargs)

    nodes, log = Racing(tmp_path, adm), FakeLog()
    scaler = ClusterScaler(nodes, save, admission=adm)
    rec, policy = cluster(1, scratch_gb=2)
    await step(scaler, rec, policy, log)
    assert rec.members == {} and nodes.removed == [NAMES.member(1)]
    assert any(
        line.startswith(
            f"member {NAMES.member(1)} failed to start: scratch_gb: 2 GB of /scratch does not fit"
        )
        for line in log.lines
    )
    with pytest.raises(StorageRefused):  # and the claim really was refused
        adm.admit(tmp_path / "k3x9q2" / "x", StorageRequest("scratch_gb", "alice", 2 * GIB))
