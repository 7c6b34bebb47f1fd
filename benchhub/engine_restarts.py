"""Did a container die with its Docker engine (or the whole host), or by itself?

After a host reboot (or an engine crash whose containers did not survive it) the engine comes
back and finds the containers it ran before dead: while it restores its state, it marks each
one exited, with the time of that restore as ``State.FinishedAt``. A container that ended by
itself (its server exited, the kernel killed it for memory) was marked by the engine that
watched it die, before the engine stopped. So the evidence, all durable and none of it
BenchHub's own memory, is:

- the container was started by an earlier engine: ``State.StartedAt`` < the running engine's
  start (the ``dockerd`` process's start time, :func:`engine_start_time`);
- and it was marked dead by the running engine's restore: ``State.FinishedAt`` >= that start;
- and not for memory (``OOMKilled``);
- and somebody still wanted it running (the caller's record: the hub's server record for a
  workspace, the clusters service's record for a cluster).

The cause is "host" when the host booted after the container started (``btime`` of
``/proc/stat``, :func:`host_boot_time`), else "engine". :func:`died_with_restart` is the pure
decision, tested by a table of cases (tests/unit/test_engine_restarts.py); the two readers are
thin. Limits (docs/operations.md, "The host reboots"): an engine without ``live-restore``
stops its containers itself at shutdown and marks them then (before its next start), so such a
restart looks like containers that exited by themselves and is not recognised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "RestartClock",
    "Interruption",
    "died_with_restart",
    "docker_time",
    "engine_start_time",
    "host_boot_time",
]

# btime is whole seconds and a process's start is counted in clock ticks after it: a start
# time read from /proc can be up to a second early; a restore's FinishedAt is never earlier
# than the engine's start, so a second of leeway keeps the rule true without admitting a
# container that ended by itself (it ended before the engine stopped, and the engine then
# took at least its shutdown and its start to come back)
LEEWAY = timedelta(seconds=1)


@dataclass(frozen=True)
class RestartClock:
    """When the running Docker engine started and when the host booted (None: unknown)."""

    engine_started: datetime | None
    host_booted: datetime | None = None


@dataclass(frozen=True)
class Interruption:
    """A container that died with its engine (``cause`` "engine") or its host ("host")."""

    cause: str
    container_started: datetime
    container_finished: datetime
    engine_started: datetime
    host_booted: datetime | None

    def sentence(self) -> str:
        """What happened, for the activity log and the workspace's status; it names the
        engine restart in every case (the metrics classify a run's end by "engine restart").

        >>> at = datetime(2026, 11, 30, 20, 31, 5, tzinfo=UTC)
        >>> Interruption("engine", at, at, at, None).sentence()
        'engine restarted: the container stopped with the Docker engine (engine restarted at 2026-11-30 20:31:05 UTC)'
        """  # noqa: E501
        engine = f"engine restarted at {_clock(self.engine_started)}"
        if self.cause == "host":
            return (
                "host restarted: the container stopped with the host (host booted at "
                f"{_clock(self.host_booted)}, {engine})"
            )
        return f"engine restarted: the container stopped with the Docker engine ({engine})"

    def fields(self) -> dict:
        """The evidence, as JSON for the activity log's ``fields``."""
        return {
            "interrupted_by": self.cause,
            "container_started": self.container_started.isoformat(),
            "container_finished": self.container_finished.isoformat(),
            "engine_started": self.engine_started.isoformat(),
            "host_booted": self.host_booted.isoformat() if self.host_booted else None,
        }


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def docker_time(text: str | None) -> datetime | None:
    """A Docker timestamp (``2026-11-30T20:31:05.123456789Z``) as an aware datetime; None for
    Docker's zero time (never started / never finished) or anything unreadable."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    head, dot, tail = text.replace("Z", "+00:00").partition(".")
    if dot:  # Python reads at most 6 fractional digits: cut the nanoseconds
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[: min(digits, 6)] + tail[digits:]
    try:
        moment = datetime.fromisoformat(head + dot + tail)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def died_with_restart(
    state: dict, clock: RestartClock, wanted_running: bool = True
) -> Interruption | None:
    """The interruption when a container with ``docker inspect``'s ``state`` died with the
    engine or host that ``clock`` describes, else None: it runs, nobody wanted it running,
    it ended by itself (before the engine's start, or under the running engine), ran out of
    memory, or the evidence is missing (the engine's start unknown, no timestamps)."""
    if not wanted_running or not isinstance(state, dict) or state.get("Running"):
        return None
    if state.get("OOMKilled") or clock.engine_started is None:
        return None
    started = docker_time(state.get("StartedAt"))
    finished = docker_time(state.get("FinishedAt"))
    if started is None or finished is None:
        return None
    if started >= clock.engine_started:
        return None  # started by the running engine, which saw it end: it ended by itself
    if finished < clock.engine_started - LEEWAY:
        return None  # the engine that ran it saw it end, before that engine stopped
    booted = clock.host_booted
    cause = "host" if booted is not None and started < booted else "engine"
    return Interruption(cause, started, finished, clock.engine_started, booted)


def host_boot_time(proc_stat: str | os.PathLike = "/proc/stat") -> datetime | None:
    """When the host booted: the ``btime`` line (seconds since the epoch) of ``proc_stat``;
    None when it cannot be read."""
    try:
        for line in Path(proc_stat).read_text().splitlines():
            if line.startswith("btime "):
                return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except (OSError, ValueError, IndexError):
        pass
    return None


def engine_start_time(
    pid_file: str | os.PathLike = "/var/run/docker.pid", proc: str | os.PathLike = "/proc"
) -> datetime | None:
    """When the local ``dockerd`` (the pid in ``pid_file``) started: its start time in clock
    ticks after boot (field 22 of ``/proc/<pid>/stat``) plus the real boot time; None when it
    cannot be read (no pid file, another host's engine, a pid namespace without it)."""
    booted = host_boot_time(Path(proc) / "stat")
    try:
        pid = int(Path(pid_file).read_text().strip())
        stat = (Path(proc) / str(pid) / "stat").read_text()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        ticks = int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    if booted is None:
        return None
    return booted + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))
