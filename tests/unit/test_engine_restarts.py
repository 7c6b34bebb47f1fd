"""Did a container die with the engine or the host, or by itself? The decision, by a table."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from benchhub.engine_restarts import (
    RestartClock,
    died_with_restart,
    docker_time,
    engine_start_time,
    host_boot_time,
)

T0 = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)  # the workspace started
CRASH = T0 + timedelta(hours=2)  # the power went (or the engine died with its containers)
BOOT = CRASH + timedelta(seconds=40)  # the host booted
ENGINE = BOOT + timedelta(seconds=12)  # the engine started (and restored its containers)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # Docker's nanoseconds


def state(started=T0, finished=ENGINE + timedelta(seconds=1), **extra) -> dict:
    return {
        "Running": False,
        "OOMKilled": False,
        "ExitCode": 255,
        "StartedAt": stamp(started) if started else "0001-01-01T00:00:00Z",
        "FinishedAt": stamp(finished) if finished else "0001-01-01T00:00:00Z",
        **extra,
    }


HOST = RestartClock(ENGINE, BOOT)
ENGINE_ONLY = RestartClock(ENGINE, T0 - timedelta(days=3))  # the host kept running

CASES = [
    # (what happened, container state, clock, wanted running, expected cause or None)
    ("the host rebooted under a running workspace", state(), HOST, True, "host"),
    ("the engine alone restarted and lost it", state(), ENGINE_ONLY, True, "engine"),
    ("boot time unknown: the engine restarted", state(), RestartClock(ENGINE), True, "engine"),
    (
        "restored within the start-time reading's leeway",
        state(finished=ENGINE - timedelta(seconds=0.5)),
        HOST,
        True,
        "host",
    ),  # noqa: E501
    ("the user stopped it (no running record)", state(), HOST, False, None),
    ("it still runs", state(Running=True), HOST, True, None),
    (
        "out of memory before the reboot",
        state(finished=CRASH - timedelta(minutes=5), OOMKilled=True, ExitCode=137),
        HOST,
        True,
        None,
    ),  # noqa: E501
    ("out of memory, marked at the restore", state(OOMKilled=True), HOST, True, None),
    (
        "its server exited by itself before the reboot",
        state(finished=CRASH - timedelta(minutes=5), ExitCode=0),
        HOST,
        True,
        None,
    ),  # noqa: E501
    (
        "it exited while the engine was down (its shim saw it)",
        state(finished=CRASH + timedelta(seconds=5), ExitCode=1),
        HOST,
        True,
        None,
    ),  # noqa: E501
    (
        "started by the running engine, then exited",
        state(started=ENGINE + timedelta(minutes=1), finished=ENGINE + timedelta(minutes=9)),
        HOST,
        True,
        None,
    ),  # noqa: E501
    (
        "the engine's start is unknown (remote engine)",
        state(),
        RestartClock(None, BOOT),
        True,
        None,
    ),  # noqa: E501
    ("never started", state(started=None), HOST, True, None),
    ("no finish time", state(finished=None), HOST, True, None),
    ("no state at all", None, HOST, True, None),
]


@pytest.mark.parametrize(
    ("what", "container", "clock", "wanted", "cause"), CASES, ids=[c[0] for c in CASES]
)
def test_a_container_is_judged_as_the_table_says(what, container, clock, wanted, cause):
    found = died_with_restart(container, clock, wanted_running=wanted)
    assert (found.cause if found else None) == cause, what


def test_the_sentence_names_the_cause_and_the_engine_restart_for_the_metrics():
    host = died_with_restart(state(), HOST)
    assert host.sentence().startswith("host restarted: ")
    assert "engine restarted at 2026-11-30 22:00:52 UTC" in host.sentence()
    engine = died_with_restart(state(), ENGINE_ONLY)
    assert engine.sentence().startswith("engine restarted: ")
    assert host.fields()["interrupted_by"] == "host"
    assert host.fields()["container_started"] == T0.isoformat()


def test_docker_times_are_read_to_the_microsecond_and_the_zero_time_is_none():
    assert docker_time("2026-11-30T20:31:22.882405106Z") == datetime(
        2026, 11, 30, 20, 31, 22, 882405, tzinfo=UTC
    )
    assert docker_time("2026-11-30T20:31:22Z") == datetime(2026, 11, 30, 20, 31, 22, tzinfo=UTC)
    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time("yesterday") is None
    assert docker_time(None) is None


def test_boot_and_engine_start_times_come_from_proc(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1796022236\nprocesses 9\n")
    fields = ["S", *["0"] * 18, "12345"]  # state .. starttime (field 22), in clock ticks
    (proc / "4242" / "stat").write_text(f"4242 (dockerd (x)) {' '.join(fields)} 0 0\n")
    pid_file = tmp_path / "docker.pid"
    pid_file.write_text("4242\n")
    booted = datetime.fromtimestamp(1796022236, UTC)
    assert host_boot_time(proc / "stat") == booted
    ticks = os.sysconf("SC_CLK_TCK")
    assert engine_start_time(pid_file, proc) == booted + timedelta(seconds=12345 / ticks)
    assert engine_start_time(tmp_path / "absent.pid", proc) is None
    assert host_boot_time(tmp_path / "absent") is None


def test_the_real_engine_started_after_the_host_booted():
    booted, engine = host_boot_time(), engine_start_time()
    assert booted is not None
    if engine is not None:  # a local dockerd with its pid file
        assert booted <= engine <= datetime.now(UTC)
