"""A job submitted to a growing cluster seen as it happens (hub_services.clusters.pending_watch):
the command the service runs in the manager, run here against a stand-in ``qstat`` that prints
the real ``qstat -s p -u '*'`` format (Grid Engine 8.1.9), including a hostile job name, and a
stand-in spool. The live check is tests/integration/test_cluster_job_arrivals.py (a qsub into a
dynamic cluster at 0 members gets its member long before the next pass)."""

import threading
import time

import pytest
from support.scripted_command import run_with_scripted_command

from hub_services.clusters.pending_watch import (
    highest_job,
    parse_new_jobs,
    watch_argv,
)

HEADER = (
    "job-ID  prior   name       user         state submit/start at     queue"
    "                          slots ja-task-ID \n" + "-" * 113 + "\n"
)


def row(job: int, name: str = "sleep", state: str = "qw") -> str:
    return f"{job:>7} 0.00000 {name:<10} jovyan       {state:<5} 12/01/2026 19:20:11{' ' * 36}1\n"


def qstat(*rows: str) -> str:
    return HEADER + "".join(rows) if rows else ""  # qstat prints nothing without jobs


def run_watch(
    tmp_path, outputs: list[str], after: int, seconds=2, min_seconds=0.0, spool_writes=True
):
    """Run the watch with a ``qstat`` that prints ``outputs`` one call after another (the last
    again and again) and records what it was asked; with ``spool_writes`` each call also
    changes the spool the watch looks at (as if a job came each time)."""
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    argv = watch_argv(after, seconds=seconds, poll=0.05, min_seconds=min_seconds, spool=str(spool))
    after_each = f"echo $n > {spool}/n\n" if spool_writes else ""
    return run_with_scripted_command(tmp_path, "qstat", outputs, argv, after_each)


def test_the_watch_returns_a_job_submitted_after_the_pass_as_soon_as_it_is_pending(tmp_path):
    seen = qstat(row(7, state="hqw"))  # the pass saw job 7
    done, took, asked = run_watch(tmp_path, [seen, seen, qstat(row(7), row(8), row(9))], 7)
    assert done.returncode == 0, done.stderr
    assert parse_new_jobs(done.stdout) == ["8", "9"]
    assert took < 1.5  # three looks 0.05 s apart, not the whole watch
    assert asked.splitlines()[0] == "-s p -u *"


def test_jobs_the_pass_saw_and_an_empty_queue_never_wake_and_the_watch_ends_after_its_time(
    tmp_path,
):
    done, took, _ = run_watch(tmp_path, ["", qstat(row(3), row(12))], 12, seconds=1)
    assert done.returncode == 0 and parse_new_jobs(done.stdout) == []
    assert 0.5 < took < 5


def test_a_watch_returns_no_sooner_than_its_minimum_however_fast_jobs_come(tmp_path):
    done, took, _ = run_watch(tmp_path, [qstat(row(1))], 0, min_seconds=0.5)
    assert parse_new_jobs(done.stdout) == ["1"]
    assert took >= 0.45  # a loop of qsubs wakes the service at most once per pass plus this


def test_qstat_is_asked_only_when_the_spool_changed(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "log.0000000001").write_text("a")
    seen = qstat(row(4))

    def a_qsub_writes_the_spool():
        time.sleep(0.4)
        (spool / "log.0000000001").write_text("ab")

    threading.Thread(target=a_qsub_writes_the_spool).start()
    done, _, asked = run_watch(tmp_path, [seen], 4, seconds=1, spool_writes=False)
    assert parse_new_jobs(done.stdout) == []
    # ~20 looks: asked at the first two and at the two after the write, never in between
    assert len(asked.splitlines()) == 4


def test_lines_that_are_not_job_rows_and_a_failing_qstat_never_wake(tmp_path):
    # qstat's errors, and a job whose name looks like a number (job names are the user's)
    noise = "error: commlib error: got select error\n" + qstat(row(5, name="999999"))
    done, _, _ = run_watch(tmp_path, ["", noise], 5, seconds=1)
    assert done.returncode == 0 and parse_new_jobs(done.stdout) == []
    # only job numbers count, and only up to 12 digits
    assert parse_new_jobs("12\n; rm -rf /\n  13 \n12\nabc\n" + "9" * 20) == ["12", "13"]


def test_the_highest_job_seen_is_the_watch_baseline_and_bad_values_are_refused():
    assert highest_job(["3", "12", "7"]) == 12
    assert highest_job([], 40) == 40 and highest_job(["x", "41"], 40) == 41
    for bad in (-1, "7", True, 1.5):
        with pytest.raises(ValueError, match="job number"):
            watch_argv(bad)
    with pytest.raises(ValueError, match="poll > 0"):
        watch_argv(1, poll=0)
