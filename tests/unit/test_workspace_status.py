"""Statuses and reasons, and the last-outcome record."""

import pytest
from jupyterhub.spawner import SpawnException

from bench_spawner.workspace_status import (
    Outcome,
    describe_failure,
    exit_reason,
    live_status,
    read_outcome,
    write_outcome,
)


@pytest.mark.parametrize(
    "state, memory, reason",
    [
        ({"OOMKilled": True, "ExitCode": 137}, 8, "out of memory: limit 8 GB"),
        ({"OOMKilled": True, "ExitCode": 137}, 0.5, "out of memory: limit 0.5 GB"),
        (
            {"OOMKilled": False, "ExitCode": 137},
            8,
            "killed (exit code 137, SIGKILL; out of memory is the usual cause: limit 8 GB)",
        ),
        ({"ExitCode": 1}, 8, "the server exited with code 1"),
        ({"ExitCode": 143}, 8, "killed by signal 15 (exit code 143)"),
        ({"ExitCode": 0}, 8, "the server exited by itself (exit code 0)"),
        ({"ExitCode": 127, "Error": "no such file"}, 8, "container error: no such file"),
    ],
)
def test_exit_reasons(state, memory, reason):
    assert exit_reason(state, memory) == reason


def test_live_status_from_hub_flags():
    assert live_status("spawn", False) == "starting"
    assert live_status("stop", True) == "stopping"
    assert live_status(None, True) == "running"
    assert live_status(None, False) is None


def test_outcome_record_round_trip_and_replacement(tmp_path):
    assert read_outcome(tmp_path) is None
    write_outcome(tmp_path, Outcome.now("errored", "out of memory: limit 8 GB"))
    write_outcome(tmp_path / "ws", Outcome.now("stopped"))
    assert read_outcome(tmp_path).reason == "out of memory: limit 8 GB"
    assert read_outcome(tmp_path / "ws").status == "stopped"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_corrupt_record_reads_as_none(tmp_path):
    (tmp_path / "status.json").write_text("{not json")
    assert read_outcome(tmp_path) is None


def test_failure_reasons_are_the_sentence_not_the_repr():
    err = SpawnException("image missing: x:1 is not on this host", reason="image")
    assert describe_failure(err) == "image missing: x:1 is not on this host"
    assert describe_failure(RuntimeError("boom\nsecond line")) == "boom"
