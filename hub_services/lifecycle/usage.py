"""The usage arithmetic: run intervals and storage periods, clipped, split by UTC day or
month, and priced. Pure: no database, no clock (``now`` is an argument).

Times are POSIX seconds (UTC; a day is 86,400 s). A **run** is anything with the attributes
``user``, ``workspace``, ``project``, ``resource_model``, ``cpus``, ``memory_gb``, ``gpus``,
``start`` and ``stop`` (None while it runs: it counts until ``now``), e.g. :class:`Run` or a
row of the ledger. A **storage period** has ``user``, ``workspace``, ``project``, ``gb``,
``start`` and ``stop``. Every interval is half-open, ``[start, stop)``, and is clipped to the
query's ``[since, until)`` and to ``now``.

Storage is counted in GB-months of the calendar month it falls in: holding 1 GB for all of
February is 1 GB-month, as is holding it for all of March, so a day's share is
GB × seconds / seconds of that month. Splitting by day or by month never changes a total.

:func:`usage` returns :class:`Totals` per group; :data:`GROUPS` are the groupings.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

__all__ = [
    "DAY",
    "GROUPS",
    "Rates",
    "Run",
    "StoragePeriod",
    "Totals",
    "month_starts",
    "DayPiece",
    "add_pieces",
    "day_pieces",
    "usage",
]

DAY = 86_400
HOUR = 3_600
GROUPS = ("user", "workspace", "project", "day", "month")


class Run(NamedTuple):
    """One run interval of a container (a workspace or a cluster node of one)."""

    user: str
    workspace: str
    project: str
    resource_model: str
    cpus: float
    memory_gb: float
    gpus: int
    start: float
    stop: float | None


class StoragePeriod(NamedTuple):
    """A workspace's allocated ``/data`` size, ``gb``, from ``start`` until ``stop``."""

    user: str
    workspace: str
    project: str
    gb: float
    start: float
    stop: float | None


@dataclass(frozen=True)
class Rates:
    """What an hour of a run and a GB-month of storage cost, in ``unit``.

    A run of a resource model named in ``model_hour`` costs that many units per hour; any
    other run (cluster nodes, whose containers carry no model, and models without a rate)
    ``cpus × cpu_hour + memory_gb × memory_gb_hour + gpus × gpu_hour`` per hour. The default
    is CPU-hours: 1 per CPU and hour, storage free."""

    unit: str = "CPU-hours"
    model_hour: Mapping[str, float] = field(default_factory=dict)
    cpu_hour: float = 1.0
    memory_gb_hour: float = 0.0
    gpu_hour: float = 0.0
    storage_gb_month: float = 0.0

    def per_hour(self, run) -> float:
        """What one hour of ``run`` costs."""
        rate = self.model_hour.get(run.resource_model)
        if rate is not None:
            return rate
        return (
            run.cpus * self.cpu_hour
            + run.memory_gb * self.memory_gb_hour
            + run.gpus * self.gpu_hour
        )


@dataclass
class Totals:
    """The usage of one group: hours of runs, CPU-, memory GB- and GPU-hours, GB-months of
    storage and what it all costs (``charge``, in the rates' unit)."""

    hours: float = 0.0
    cpu_hours: float = 0.0
    memory_gb_hours: float = 0.0
    gpu_hours: float = 0.0
    storage_gb_months: float = 0.0
    charge: float = 0.0

    def add_run(self, hours: float, run, rate: float) -> None:
        self.hours += hours
        self.cpu_hours += hours * run.cpus
        self.memory_gb_hours += hours * run.memory_gb
        self.gpu_hours += hours * run.gpus
        self.charge += hours * rate

    def add_storage(self, gb_months: float, rate: float) -> None:
        self.storage_gb_months += gb_months
        self.charge += gb_months * rate

    def add(self, other: Totals) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def month_starts(since: float, until: float) -> list[float]:
    """The starts of the UTC calendar months that ``[since, until)`` touches, and the start
    of the month after the last (so consecutive pairs bound each month)."""
    first = _utc(since).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [first.timestamp()]
    year, month = first.year, first.month
    while starts[-1] < until or len(starts) < 2:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        starts.append(datetime(year, month, 1, tzinfo=UTC).timestamp())
    return starts


def _day_label(day: int) -> str:
    return _utc(day * DAY).strftime("%Y-%m-%d")


def _month_label(start: float) -> str:
    return _utc(start).strftime("%Y-%m")


def _group_key(kind: str, item) -> tuple:
    if kind == "user":
        return (item.user,)
    if kind == "workspace":
        return (item.user, item.workspace)
    return (item.project,)


def usage(
    runs: Iterable,
    storage: Iterable,
    since: float,
    until: float,
    now: float,
    rates: Rates,
    group_by: str,
) -> dict[tuple, Totals]:
    """The usage of ``runs`` and ``storage`` within ``[since, until)`` (and before ``now``)
    per group: ``group_by`` "user" → ``(user,)``, "workspace" → ``(user, workspace)``,
    "project" → ``(project,)``, "day" → ``("2025-03-01",)``, "month" → ``("2025-03",)``.
    Groups with nothing in them are absent. ``group_by`` outside :data:`GROUPS`, or
    ``until`` < ``since``, is a :class:`ValueError`."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}, got {group_by!r}")
    if until < since:
        raise ValueError(f"until ({until}) must not be before since ({since})")
    end = min(until, now)
    totals: dict[tuple, Totals] = {}
    if end <= since:
        return totals
    months = month_starts(since, end)
    if group_by == "day":
        _runs_by_day(runs, since, end, rates, totals)
    elif group_by == "month":
        _runs_by_month(runs, since, end, rates, months, totals)
    else:
        _runs_by_group(runs, since, end, rates, group_by, totals)
    _storage(storage, since, end, rates, months, group_by, totals)
    return totals


def _clip(item, since: float, end: float) -> tuple[float, float]:
    stop = item.stop
    return max(item.start, since), end if stop is None or stop > end else stop


def _runs_by_group(runs, since, end, rates: Rates, group_by, totals) -> None:
    for run in runs:
        start, stop = _clip(run, since, end)
        if stop <= start:
            continue
        key = _group_key(group_by, run)
        found = totals.get(key)
        if found is None:
            found = totals[key] = Totals()
        found.add_run((stop - start) / HOUR, run, rates.per_hour(run))


def _runs_by_day(runs, since, end, rates: Rates, totals) -> None:
    by_day: dict[int, Totals] = {}
    for run in runs:
        start, stop = _clip(run, since, end)
        if stop <= start:
            continue
        rate = rates.per_hour(run)
        day = int(start // DAY)
        while start < stop:
            boundary = min((day + 1) * DAY, stop)
            found = by_day.get(day)
            if found is None:
                found = by_day[day] = Totals()
            found.add_run((boundary - start) / HOUR, run, rate)
            start, day = boundary, day + 1
    for day, found in by_day.items():
        totals[(_day_label(day),)] = found


def _runs_by_month(runs, since, end, rates: Rates, months: list[float], totals) -> None:
    by_month: dict[int, Totals] = {}
    for run in runs:
        start, stop = _clip(run, since, end)
        if stop <= start:
            continue
        rate = rates.per_hour(run)
        index = bisect.bisect_right(months, start) - 1
        while start < stop:
            boundary = min(months[index + 1], stop)
            found = by_month.get(index)
            if found is None:
                found = by_month[index] = Totals()
            found.add_run((boundary - start) / HOUR, run, rate)
            start, index = boundary, index + 1
    for index, found in by_month.items():
        totals[(_month_label(months[index]),)] = found


def _storage(storage, since, end, rates: Rates, months, group_by: str, totals) -> None:
    """Each period split at month boundaries: GB × the share of the month's seconds it
    covers. Per day, the periods' sum (a step function) is split instead, so the work grows
    with periods + days, not periods × days."""
    if group_by == "day":
        _storage_by_day(storage, since, end, rates, months, totals)
        return
    for period in storage:
        start, stop = _clip(period, since, end)
        index = bisect.bisect_right(months, start) - 1
        while start < stop:
            month_end = months[index + 1]
            boundary = min(month_end, stop)
            if group_by == "month":
                key = (_month_label(months[index]),)
            else:
                key = _group_key(group_by, period)
            found = totals.setdefault(key, Totals())
            share = (boundary - start) / (month_end - months[index])
            found.add_storage(period.gb * share, rates.storage_gb_month)
            start, index = boundary, index + 1


def _storage_by_day(storage, since, end, rates: Rates, months, totals) -> None:
    changes: dict[float, float] = {}
    for period in storage:
        start, stop = _clip(period, since, end)
        if start < stop:
            changes[start] = changes.get(start, 0.0) + period.gb
            changes[stop] = changes.get(stop, 0.0) - period.gb
    held, moments = 0.0, sorted(changes)
    for start, stop in zip(moments, moments[1:], strict=False):
        held += changes[start]
        if held <= 1e-12:
            continue
        while start < stop:
            day = int(start // DAY)
            index = bisect.bisect_right(months, start) - 1
            boundary = min((day + 1) * DAY, stop)
            found = totals.setdefault((_day_label(day),), Totals())
            share = (boundary - start) / (months[index + 1] - months[index])
            found.add_storage(held * share, rates.storage_gb_month)
            start = boundary


def add_pieces(totals: dict[tuple, Totals], pieces: Iterable, rates: Rates, group_by: str) -> None:
    """Add run time already summed per group (the ledger's :meth:`~.ledger.Ledger.run_pieces`)
    to ``totals``: each piece has the group's attributes (``day``, days since the epoch, for
    "day" and "month"), ``resource_model``, ``cpus``, ``memory_gb``, ``gpus`` and
    ``seconds``, all within one UTC day for "day" and "month". Adds what :func:`usage` would
    for the runs it sums."""
    labels: dict[int, tuple] = {}
    for piece in pieces:
        if group_by in ("day", "month"):
            key = labels.get(piece.day)
            if key is None:
                when = piece.day * DAY
                key = labels[piece.day] = (
                    (_day_label(piece.day),) if group_by == "day" else (_month_label(when),)
                )
        else:
            key = _group_key(group_by, piece)
        found = totals.get(key)
        if found is None:
            found = totals[key] = Totals()
        found.add_run(piece.seconds / HOUR, piece, rates.per_hour(piece))


class DayPiece(NamedTuple):
    """Run time of one UTC ``day`` (days since the epoch) at one price."""

    day: int
    resource_model: str
    cpus: float
    memory_gb: float
    gpus: int
    seconds: float


def day_pieces(groups: Iterable) -> list[DayPiece]:
    """Spread runs summed per first and last day (``first_day``, ``last_day``, ``runs``,
    ``first_offset`` = Σ start − first day's midnight, ``last_offset`` = Σ end − last day's
    midnight, in seconds; see :meth:`~.ledger.Ledger.run_pieces`) over their days: a run
    within one day gives it end − start; one across midnights gives its first day the rest
    of that day, each day between a whole day and its last day what it ran of that one."""
    pieces = []
    for g in groups:
        priced = (g.resource_model, g.cpus, g.memory_gb, g.gpus)
        if g.first_day == g.last_day:
            pieces.append(DayPiece(g.first_day, *priced, g.last_offset - g.first_offset))
            continue
        pieces.append(DayPiece(g.first_day, *priced, g.runs * DAY - g.first_offset))
        for day in range(g.first_day + 1, g.last_day):
            pieces.append(DayPiece(day, *priced, g.runs * DAY))
        pieces.append(DayPiece(g.last_day, *priced, g.last_offset))
    return pieces
