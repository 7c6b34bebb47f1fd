"""Readiness-paced member starts (hub_services.clusters.pacing): how many members boot at
once follows the host's cores and a measured boot, and the members of a scale-up start as
those before them report."""

from types import SimpleNamespace

import pytest

from hub_services.clusters.pacing import (
    members_booting,
    members_to_register,
    members_to_start,
    next_pass_in,
    start_window,
)
from hub_services.clusters.state import MemberRecord


@pytest.mark.parametrize("cpus", [1, 2, 4, 16, 64])
def test_the_start_window_grows_with_the_hosts_cores_and_is_never_empty(cpus):
    window = start_window(cpus, boot_cpu_seconds=0.6, boot_seconds=1.5)
    assert window == int(cpus * 1.5 / 0.6) >= 1
    assert start_window(cpus + 1, 0.6, 1.5) >= window


def test_a_boot_that_takes_more_cpu_than_its_duration_boots_fewer_at_once():
    # a boot using 3 cores' worth (e.g. with a JVM at full tilt): 4 cores hold one at a time
    assert start_window(4, boot_cpu_seconds=6, boot_seconds=2) == 1
    assert start_window(1, boot_cpu_seconds=10, boot_seconds=1) == 1  # never 0


def test_a_nonsense_measurement_is_refused_naming_what_is_allowed():
    with pytest.raises(ValueError, match="host_cpus >= 1 and positive boot times"):
        start_window(0)
    with pytest.raises(ValueError, match="boot_seconds=0"):
        start_window(2, 1, 0)


def test_waiting_members_start_in_order_while_the_window_has_room():
    waiting = ["m3", "m4", "m5", "m6"]
    assert members_to_start(waiting, booting=0, window=3) == ["m3", "m4", "m5"]
    assert members_to_start(waiting, booting=2, window=3) == ["m3"]
    assert members_to_start(waiting, booting=3, window=3) == []
    assert members_to_start(waiting, booting=5, window=3) == []  # window made smaller
    assert members_to_start([], booting=0, window=3) == []


def test_the_service_looks_again_soon_while_members_wait_to_boot():
    def cluster(*waiting: bool):
        members = {
            f"m{i}": MemberRecord(f"m{i}", "10.0.0.9", "", waiting_to_start=w)
            for i, w in enumerate(waiting)
        }
        return SimpleNamespace(members=members)

    assert next_pass_in(5, [cluster(False), cluster(False, True)]) == 1.0
    assert next_pass_in(0.5, [cluster(True)]) == 0.5
    assert next_pass_in(5, [cluster(False, False), cluster()]) == 5
    assert next_pass_in(5, []) == 5


def test_the_next_round_registers_with_grid_engine_while_this_round_boots():
    waiting = [f"m{i}" for i in range(1, 11)]
    assert members_to_start(waiting, booting=0, window=5) == waiting[:5]
    assert members_to_register(waiting, booting=0, window=5) == waiting  # these 5 and the next 5
    # with 3 still booting, 2 start now and the 5 after them are registered ahead
    assert members_to_register(waiting, booting=3, window=5) == waiting[:7]
    # a window over-full (nothing starts now): the next round still registers ahead
    assert members_to_start(["m1"], booting=9, window=5) == []
    assert members_to_register(["m1"], booting=9, window=5) == ["m1"]


def test_a_member_without_a_jvm_frees_its_place_once_its_container_runs():
    def member(name, **kwargs):
        return MemberRecord(name, "10.0.0.9", "", **kwargs)

    members = [
        member("m1", joined=True, spark_worker=True),  # reported long ago
        member("m2"),  # container running, execution daemon not reported yet: no JVM
        member("m3", spark_worker=True),  # started with a Spark worker, not reported
        member("m4", spark_worker=True),  # reported since the last pass
        member("m5"),  # being started (in a round)
        member("m6", waiting_to_start=True),  # waits for room
    ]
    assert members_booting(members, starting={"m5"}, reported={"m4"}) == 2  # m5 and m3
    assert members_booting(members, starting=set(), reported={"m3", "m4"}) == 0
    assert members_booting([], starting={"m7", "m8"}) == 2
