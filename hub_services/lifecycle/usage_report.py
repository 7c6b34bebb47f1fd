"""The usage query and its answer: parameters checked, who may ask for what, rows, CSV and
the per-day chart. Pure (the ledger read and the clock are the caller's).

Parameters of ``GET api/usage`` (and the Usage page): ``user``, ``project``, ``from``
(inclusive) and ``to`` (exclusive) — ISO 8601 with a timezone, or a date (``2025-03-01``,
midnight UTC) — ``group_by`` (one of :data:`~.usage.GROUPS`, default ``workspace``) and
``format`` (``json`` or ``csv``). Defaults: from the start of the current UTC month to now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from benchhub.access import SEE, is_person, may, may_for_everyone

from .usage import GROUPS, Totals

__all__ = [
    "COLUMNS",
    "PARAMETERS",
    "UsageQuery",
    "UsageRefused",
    "chart_bars",
    "day_labels",
    "parse_usage_query",
    "rows",
    "scope_usage_query",
    "to_csv",
]

PARAMETERS = ("user", "project", "from", "to", "group_by", "format")
_AUTH_PARAMETERS = ("token",)
FORMATS = ("json", "csv")
_TICK = timedelta(microseconds=1)
_TIME_EXAMPLE = "2025-03-01 or 2025-03-01T08:00:00Z"
COLUMNS = ("hours", "cpu_hours", "memory_gb_hours", "gpu_hours", "storage_gb_months", "charge")
GROUP_COLUMNS = {
    "user": ("user",),
    "workspace": ("user", "workspace"),
    "project": ("project",),
    "day": ("day",),
    "month": ("month",),
}


class UsageRefused(Exception):
    """A usage query the caller got wrong (400) or may not make (403); the message names the
    field and what is allowed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UsageQuery:
    """A checked usage query (times as aware UTC datetimes)."""

    since: datetime
    until: datetime
    group_by: str = "workspace"
    user: str | None = None
    project: str | None = None
    format: str = "json"


def _time(name: str, value: str) -> datetime:
    message = (
        f"{name}: a date or an ISO 8601 time with a timezone, e.g. {_TIME_EXAMPLE}, got {value!r}"
    )
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            raise ValueError("no timezone")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageRefused(400, message) from None


def parse_usage_query(arguments: Mapping[str, list[str]], now: datetime) -> UsageQuery:
    """The query in URL ``arguments`` (name → values) at ``now``, or :class:`UsageRefused`
    (400) naming the field. Empty values are absent; unknown or repeated names are refused."""
    values: dict[str, str] = {}
    for name, given in arguments.items():
        if name in _AUTH_PARAMETERS:
            continue
        if name not in PARAMETERS:
            raise UsageRefused(
                400, f"{name}: not a parameter (use {', '.join(PARAMETERS)}), got {given!r}"
            )
        if len(given) > 1:
            raise UsageRefused(400, f"{name}: give it at most once, got {given!r}")
        if given and given[0] != "":
            values[name] = given[0]
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    since = _time("from", values["from"]) if "from" in values else month_start
    until = _time("to", values["to"]) if "to" in values else now.astimezone(UTC)
    if until <= since:
        raise UsageRefused(
            400, f"to: a time later than from ({since.isoformat()}), got {until.isoformat()!r}"
        )
    group_by = values.get("group_by", "workspace")
    if group_by not in GROUPS:
        raise UsageRefused(400, f"group_by: one of {', '.join(GROUPS)}, got {group_by!r}")
    form = values.get("format", "json")
    if form not in FORMATS:
        raise UsageRefused(400, f"format: one of {', '.join(FORMATS)}, got {form!r}")
    return UsageQuery(since, until, group_by, values.get("user"), values.get("project"), form)


def scope_usage_query(query: UsageQuery, caller: Mapping) -> UsageQuery:
    """``query`` as ``caller`` may run it (:mod:`benchhub.access`): a named project for its
    members and whoever sees everyone's; a named user for whoever may see their workspaces;
    nothing named: everyone's for those who see everyone's, a person's own. Else
    :class:`UsageRefused` (403) naming the field."""
    if query.project is not None:
        member = is_person(caller) and query.project in (caller.get("groups") or ())
        if member or may_for_everyone(caller, SEE):
            return query
        raise UsageRefused(
            403, f"project: only the usage of a project you are a member of, got {query.project!r}"
        )
    if query.user is not None:
        if may(caller, SEE, query.user):
            return query
        raise UsageRefused(
            403,
            f"user: only your own usage ({caller.get('name')}) unless you are an admin, "
            f"got {query.user!r}",
        )
    if may_for_everyone(caller, SEE):
        return query
    if is_person(caller):
        return replace(query, user=caller["name"])
    raise UsageRefused(403, "user: name the user whose usage you may see")


def rows(totals: Mapping[tuple, Totals], group_by: str) -> list[dict]:
    """The groups as rows (the group's columns, then :data:`COLUMNS`), in key order."""
    names = GROUP_COLUMNS[group_by]
    return [
        {**dict(zip(names, key, strict=True)), **vars(found)}
        for key, found in sorted(totals.items())
    ]


def total(totals: Mapping[tuple, Totals]) -> dict:
    """The sum of every group."""
    whole = Totals()
    for found in totals.values():
        whole.add(found)
    return vars(whole)


def to_csv(table: list[dict], group_by: str, unit: str) -> str:
    """The rows as CSV with a header (``charge`` labelled with ``unit``); numbers to 6
    decimals. A cell that a spreadsheet would take for a formula is quoted with a ``'``."""
    names = GROUP_COLUMNS[group_by]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*names, *COLUMNS[:-1], f"charge ({unit})"])
    for row in table:
        writer.writerow(
            [_cell(row[name]) for name in names] + [f"{row[column]:.6f}" for column in COLUMNS]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass(frozen=True)
class Bar:
    """One bar of the per-day chart, in the SVG's coordinates."""

    label: str
    value: float
    x: float
    y: float
    width: float
    height: float


def day_labels(since: datetime, until: datetime) -> list[str]:
    """Every UTC day ``[since, until)`` touches, as ``YYYY-MM-DD``."""
    first, last = since.astimezone(UTC).date(), (until.astimezone(UTC) - _TICK).date()
    return [date.fromordinal(n).isoformat() for n in range(first.toordinal(), last.toordinal() + 1)]


def chart_bars(
    days: Mapping[tuple, Totals], labels: list[str], width: float = 800, height: float = 160
) -> tuple[list[Bar], float]:
    """The per-day chart: one bar per day of ``labels`` (a day absent from ``days``, the
    usage grouped by day, is 0), its height the day's ``charge``, filling ``width`` ×
    ``height``; and the tallest value."""
    if not labels:
        return [], 0.0
    values = [days[(label,)].charge if (label,) in days else 0.0 for label in labels]
    top = max(values) or 1.0
    step = width / len(labels)
    bars = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        tall = height * value / top
        bars.append(Bar(label, value, index * step, height - tall, max(step * 0.8, 0.5), tall))
    return bars, top
