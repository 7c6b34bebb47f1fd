"""A job submitted to a dynamic cluster as an event, not something the next pass finds.

The scaler sees pending jobs only when a pass asks the manager (``qstat``); between passes
the service waits ``interval`` seconds (5 by default). So a ``qsub`` into a cluster at its
minimum waited on average half an interval, and up to a whole one, before its member was
even decided, and a burst's jobs were decided in chunks, one per pass (issue 17: passes 1.4-1.7
s apart at a 1 s interval decided a 20-job burst's members in two chunks). So after each pass
of a dynamic cluster that can still grow, the scaler keeps one ``docker exec`` open in the
manager that looks every :data:`POLL_S` whether the qmaster's spool changed (a ``stat``; a
``qsub`` writes it) and only then asks for the pending jobs' numbers (``qstat``, a client call
that costs the qmaster CPU: asked 5 times a second, it cost 0.28 of a core on an idle cluster).
It returns as soon as a job is numbered above the highest the scaler has seen pending in that
cluster (Grid Engine numbers jobs in submission order); the service then runs a pass at once.
A job that becomes pending again (rescheduled, released from a hold) keeps its number and is
found by the next pass, as is every job after Grid Engine's numbers wrap around (at
``max_jobid``, 9999999).

Bounds: a watch ends after :data:`WATCH_SECONDS` at the latest (the next pass starts
another) and never returns sooner than :data:`MIN_SECONDS` after it started, so however fast
jobs arrive (a user's loop of ``qsub``), one cluster wakes the service at most once per pass
plus that time. What the manager prints is read only as job numbers (digits); anything else
is ignored. The watches run on a Docker thread pool of their own
(``ClusterController.watch_threads``), so a watch never holds a thread the passes need; with
more clusters than threads a watch waits for one and the cluster falls back to the interval.

Pure: the argv to run and the parsing of what it prints; :mod:`.nodes` runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "MIN_SECONDS",
    "POLL_S",
    "WATCH_SECONDS",
    "highest_job",
    "parse_new_jobs",
    "watch_argv",
]

POLL_S = 0.2
WATCH_SECONDS = 30
MIN_SECONDS = 0.5

# python3 -c SCRIPT LOOKS POLL MIN_LOOKS AFTER SPOOL: print the numbers of pending jobs above
# AFTER, one a line, as soon as there is one (but not before MIN_LOOKS looks); print nothing
# after LOOKS looks POLL seconds apart without. ``qstat -s p`` lists pending jobs after a
# two-line header, the job number first. It asks qstat (a client call the qmaster answers, the
# watch's whole cost) only at the first look and when a file in SPOOL (the qmaster's Berkeley
# DB, written at each qsub) changed in the last two looks; SPOOL unreadable: at every look.
_SCRIPT = r"""
import os, subprocess, sys, time
looks, min_looks, after = int(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4])
poll, spool = float(sys.argv[2]), sys.argv[5]
def signature():
    try:
        stats = [(e.name, e.stat()) for e in os.scandir(spool)]
    except OSError:
        return None
    return sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats)
def pending_above():
    try:
        argv = ["qstat", "-s", "p", "-u", "*"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split() for line in out.splitlines()[2:]]
    return [row[0] for row in rows if row and row[0].isdigit() and int(row[0]) > after]
before = last = None
look = 0
while look < looks:
    now = signature()  # asked again one look after a change: its job may not be listed yet
    if look == 0 or now is None or now != last or last != before:
        new = pending_above()
        if new:
            time.sleep(max(0, min_looks - look) * poll)
            print("\n".join(new), flush=True)
            sys.exit(0)
    before, last, look = last, now, look + 1
    time.sleep(poll)
"""
SPOOL = "/var/spool/gridengine/spooldb"  # the manager's qmaster spool (images/cluster)
_JOB = re.compile(r"[0-9]{1,12}")


def watch_argv(
    after: int,
    seconds: float = WATCH_SECONDS,
    poll: float = POLL_S,
    min_seconds: float = MIN_SECONDS,
    spool: str = SPOOL,
) -> list[str]:
    """The command (run in the manager) that waits until a job numbered above ``after`` (the
    highest the scaler has seen pending) is pending, about ``seconds`` at most, looking every
    ``poll`` seconds and returning no sooner than ``min_seconds``; what it prints goes to
    :func:`parse_new_jobs`."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"watch_argv needs a job number >= 0 as after, got {after!r}")
    if poll <= 0 or seconds <= 0 or min_seconds < 0:
        raise ValueError(
            f"watch_argv needs poll > 0, seconds > 0 and min_seconds >= 0, got {poll}, "
            f"{seconds}, {min_seconds}"
        )
    looks = max(1, round(seconds / poll))
    min_looks = round(min_seconds / poll)
    return ["python3", "-c", _SCRIPT, str(looks), f"{poll:g}", str(min_looks), str(after), spool]


def highest_job(job_ids: Iterable[str], seen: int = 0) -> int:
    """The highest job number among ``job_ids`` and ``seen`` (ids that are not numbers are
    skipped): the watch's ``after``."""
    numbers = [int(job) for job in job_ids if _JOB.fullmatch(job)]
    return max([seen, *numbers])


def parse_new_jobs(output: str) -> list[str]:
    """The job numbers the watch saw newly pending (none when it timed out or failed), sorted
    by number; lines that are not a job number are ignored."""
    found = {line.strip() for line in output.splitlines()}
    return sorted((job for job in found if _JOB.fullmatch(job)), key=int)
