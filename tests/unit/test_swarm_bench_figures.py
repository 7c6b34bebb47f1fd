"""The swarm benchmark's figures (benchmarks/swarm_figures.py) and its reading of the testbed's
status (benchmarks/swarm_spawn.py): pure functions, no Docker."""

from __future__ import annotations

import pytest

from benchmarks.swarm_figures import (
    docker_time,
    failures,
    latency_table,
    median_phases,
    phases,
    spread,
)
from benchmarks.swarm_spawn import unusable_testbed_reason

LABELS = {"single": "single", "swarm": "swarm", "plain": "plain"}


def test_a_docker_timestamp_with_nanoseconds_is_read_to_the_microsecond():
    assert docker_time("2026-12-01T00:00:01.123456789Z") == pytest.approx(
        1796083201.123457, abs=1e-6
    )
    assert docker_time("2026-12-01T00:00:01Z") == 1796083201.0
    assert docker_time("2026-12-01T00:00:01.5+00:00") == 1796083201.5


def test_the_phases_of_a_start_add_up_to_the_whole_and_skip_a_missing_mark():
    marks = {"requested": 10.0, "created": 10.5, "container_started": 11.0, "ready": 13.0}
    got = phases(marks)
    assert got == {
        "requested → created": 0.5,
        "created → container_started": 0.5,
        "container_started → ready": 2.0,
    }
    assert sum(got.values()) == marks["ready"] - marks["requested"]


def test_median_phases_only_count_starts_that_succeeded():
    spawns = [
        {"seconds": 2, "marks": {"requested": 0, "created": 1, "ready": 2}},
        {"seconds": 4, "marks": {"requested": 0, "created": 3, "ready": 4}},
        {"failed": "no", "after_s": 1, "marks": {"requested": 0, "created": 100}},
    ]
    assert median_phases(spawns) == {"requested → created": 2, "created → ready": 1}


def test_a_spread_within_one_of_even_counts_every_worker_even_one_that_got_nothing():
    assert spread({"w1": 15, "w2": 15}, ["w1", "w2"]) == ({"w1": 15, "w2": 15}, True)
    assert spread({"w1": 16, "w2": 15}, ["w1", "w2"])[1] is True
    assert spread({"w1": 30}, ["w1", "w2"]) == ({"w1": 30, "w2": 0}, False)
    counts, even = spread({"w1": 1, "manager": 2}, ["w1", "w2"])
    assert counts == {"w1": 1, "w2": 0, "manager": 2} and even is True


def test_failed_spawns_are_counted_by_reason_and_kept_out_of_the_percentiles():
    spawns = {
        "single": [{"seconds": 2.0}, {"seconds": 3.0}],
        "swarm": [{"seconds": 2.6}, {"failed": "rejected", "after_s": 0.4}],
        "plain": [{"failed": "timeout", "after_s": 60}, {"failed": "timeout", "after_s": 61}],
    }
    assert failures(spawns["plain"]) == [("timeout", 2)]
    slow = [
        {
            "failed": f"Server at http://10.0.0.{i}:3200{i}/user/u{i}/api didn't respond",
            "after_s": 60,
        }
        for i in range(3)
    ]
    assert failures(slow) == [("Server at <server> didn't respond", 3)]
    table = latency_table(spawns, LABELS)
    p50 = next(line for line in table if line.startswith("| p50"))
    assert "2.60 s" in p50 and "| 1.04 |" in p50 and p50.endswith("| — |")
    assert table[-1] == "| ok / failed | 2 / 0 | 1 / 1 | 0 / 2 | | |"


def test_a_testbed_with_every_node_ready_is_reused_and_one_with_a_node_down_is_not():
    header = "ID HOSTNAME STATUS AVAILABILITY MANAGER STATUS ENGINE VERSION\n"
    ready = "".join(
        f"id{i} benchswarm-{n} Ready Active {'Leader' if i == 0 else ''} 20.10\n"
        for i, n in enumerate(("manager", "worker-1", "worker-2"))
    )
    assert unusable_testbed_reason(header + ready + "--- benchswarm-worker-1 images:\nx\n") is None
    assert unusable_testbed_reason("down\n") is None
    down = ready.replace("worker-2 Ready Active", "worker-2 Down Active")
    assert unusable_testbed_reason(header + down) == "2 of 3 nodes Ready and Active"
    assert (
        unusable_testbed_reason(header + ready + "(not running)\n")
        == "a worker container is not running"
    )
