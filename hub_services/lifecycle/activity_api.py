"""The lifecycle service's activity endpoints: who did what to which workspace, and when.

Mounted under the service prefix by :func:`activity_handlers`:

- ``GET api/activity`` — JSON ``{"entries": [...], "total": N, "offset": O, "limit": L}``,
  newest first, filtered by the query parameters ``user``, ``workspace``, ``action``,
  ``since`` (inclusive), ``until`` (exclusive; both ISO 8601 with a timezone), ``offset`` and
  ``limit`` (1 to 1000, default 100). An empty parameter is no filter. A bad value is a 400
  and a refused one a 403, as ``{"status": ..., "message": "<field>: ..."}``;
- ``GET activity`` — the same query as an HTML page: a filter form, the table and paging links.

Callers authenticate with the hub (``HubOAuthenticated``); what they see is the one access
rule's (:mod:`benchhub.access`): ``user=NAME`` needs the right to see NAME's workspaces (a 403
otherwise). Without ``user``, whoever may see everyone's (an admin, a token with
``read:servers``) gets everyone's; a person their own; a service whose scopes cover only some
users nothing (it names the user).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

from jupyterhub.utils import url_path_join
from tornado import web

from benchhub.access import SEE, is_person, may, may_for_everyone
from benchhub.activity_journal import ACTIONS
from benchhub.service_pages import PageTemplates
from benchhub.service_web import ServiceHandler, ServicePage

from .activity_log import MAX_LIMIT, ActivityLog

__all__ = [
    "DEFAULT_LIMIT",
    "PARAMETERS",
    "ActivityQuery",
    "TEMPLATES",
    "QueryRefused",
    "activity_handlers",
    "parse_query",
    "scope_to_caller",
]

DEFAULT_LIMIT = 100
PARAMETERS = ("user", "workspace", "action", "since", "until", "offset", "limit", "project")
# HubAuth accepts an API token as ?token=...; it is not a filter but must not be refused
_AUTH_PARAMETERS = ("token",)
_TIME_EXAMPLE = "2025-03-01T08:00:00Z"
# the lifecycle service's pages (this one and web.py's), on the shared page template
TEMPLATES = PageTemplates(Path(__file__).parent / "templates")


class QueryRefused(Exception):
    """A query the caller got wrong (400) or may not make (403); ``message`` says which
    field and what is allowed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ActivityQuery:
    """A validated activity query: the keyword arguments of :meth:`ActivityLog.query`."""

    user: str | None = None
    workspace: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    project: str | None = None

    def url_arguments(self, offset: int) -> dict[str, str]:
        """The query as URL parameters (set filters only) at another ``offset``."""
        values = {**asdict(self), "offset": offset}
        return {
            name: value.isoformat() if isinstance(value, datetime) else str(value)
            for name, value in values.items()
            if value is not None
        }


def parse_query(arguments: dict[str, list[str]]) -> ActivityQuery:
    """The query in URL ``arguments`` (name → values), or :class:`QueryRefused` (400) with
    ``"<field>: <what is allowed>, got <value>"``. Empty values are absent filters; unknown
    names and repeated parameters are refused."""
    values = {}
    for name, given in arguments.items():
        if name in _AUTH_PARAMETERS:
            continue
        if name not in PARAMETERS:
            allowed = ", ".join(PARAMETERS)
            raise QueryRefused(400, f"{name}: not a parameter (use {allowed}), got {given!r}")
        if len(given) > 1:
            raise QueryRefused(400, f"{name}: give it at most once, got {given!r}")
        if given and given[0] != "":
            values[name] = given[0]
    query = ActivityQuery(
        user=values.get("user"),
        workspace=values.get("workspace"),
        action=_action(values.get("action")),
        since=_time("since", values.get("since")),
        until=_time("until", values.get("until")),
        offset=_whole("offset", values.get("offset"), 0, None, 0),
        limit=_whole("limit", values.get("limit"), 1, MAX_LIMIT, DEFAULT_LIMIT),
        project=values.get("project"),
    )
    if query.since and query.until and query.until <= query.since:
        raise QueryRefused(
            400, f"until: a time later than since ({values['since']}), got {values['until']!r}"
        )
    return query


def _action(value: str | None) -> str | None:
    if value is not None and value not in ACTIONS:
        raise QueryRefused(400, f"action: one of {', '.join(ACTIONS)}, got {value!r}")
    return value


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    message = f"{name}: an ISO 8601 time with a timezone, e.g. {_TIME_EXAMPLE}, got {value!r}"
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            raise ValueError("no timezone")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: out of range once in UTC
        raise QueryRefused(400, message) from None


def _whole(name: str, value: str | None, low: int, high: int | None, default: int) -> int:
    if value is None:
        return default
    allowed = f"a whole number from {low} to {high}" if high else f"a whole number >= {low}"
    number = int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else -1
    if number < low or high and number > high:
        raise QueryRefused(400, f"{name}: {allowed}, got {value!r}")
    return number


def scope_to_caller(query: ActivityQuery, caller: dict) -> ActivityQuery | None:
    """``query`` as ``caller`` (the hub's user or service model) may run it, by the access
    rule: a named user the caller may see, as is; another user's → QueryRefused (403). No user
    named: everyone's for a caller who may see everyone's, a person's own, and None (nothing
    to show) for a service that may see only some users' (it has to name one).

    A ``project`` named is the project's activity, for whoever may see everyone's and for the
    project's members (every project role sees the project's workspaces: the caller's groups,
    as the hub identifies them); anyone else's → QueryRefused (403)."""
    if query.project is not None:
        member = is_person(caller) and query.project in (caller.get("groups") or ())
        if member or may_for_everyone(caller, SEE):
            return query
        raise QueryRefused(
            403,
            f"project: only the activity of a project you are a member of, got {query.project!r}",
        )
    if query.user is not None:
        if may(caller, SEE, query.user):
            return query
        raise QueryRefused(
            403,
            f"user: only your own activity ({caller['name']}) unless you are an admin, "
            f"got {query.user!r}",
        )
    if may_for_everyone(caller, SEE):
        return query
    if is_person(caller):
        return replace(query, user=caller["name"])
    return None


class _ActivityHandler:
    def initialize(self, activity_log: ActivityLog, run_blocking) -> None:
        self.activity_log = activity_log
        self.run_blocking = run_blocking

    def _arguments(self) -> dict[str, list[str]]:
        return {name: self.get_query_arguments(name) for name in self.request.query_arguments}

    async def _run(self, query: ActivityQuery | None) -> tuple[list[dict], int]:
        """The page of entries ``query`` selects (in the service's executor) and the total;
        none for None (the caller may see nobody's)."""
        if query is None:
            return [], 0
        return await self.run_blocking(partial(self.activity_log.query, **asdict(query)))


class ActivityApiHandler(_ActivityHandler, ServiceHandler):
    """``GET api/activity``: see the module docstring."""

    @web.authenticated
    async def get(self) -> None:
        try:
            asked = parse_query(self._arguments())
            query = scope_to_caller(asked, self.current_user)
        except QueryRefused as refused:
            raise web.HTTPError(refused.status, refused.message) from None
        entries, total = await self._run(query)
        self.write(
            {
                "entries": [{**entry, "at": entry["at"].isoformat()} for entry in entries],
                "total": total,
                "offset": asked.offset,
                "limit": asked.limit,
            }
        )


class ActivityPageHandler(_ActivityHandler, ServicePage):
    """``GET activity``: the filter form, one page of the table and links to the others."""

    templates = TEMPLATES

    @web.authenticated
    async def get(self) -> None:
        caller = self.current_user
        form = {name: self.get_query_argument(name, "") for name in PARAMETERS}
        context = {
            "entries": [],
            "total": 0,
            "error": None,
            "first": 0,
            "newer": None,
            "older": None,
        }
        try:
            asked = parse_query(self._arguments())
            entries, total = await self._run(scope_to_caller(asked, caller))
        except QueryRefused as refused:
            self.set_status(refused.status)
            context["error"] = refused.message
        else:
            context.update(entries=entries, total=total, **self._paging(asked, total))
        await self.render_page(
            "activity.html",
            "Workspace activity",
            caller=caller["name"],
            everyone=may_for_everyone(caller, SEE),
            actions=ACTIONS,
            form=form,
            **context,
        )

    def _paging(self, query: ActivityQuery, total: int) -> dict:
        """Links to the newer and older pages (None at either end)."""
        base = self.request.path

        def link(offset: int) -> str:
            return f"{base}?{urlencode(query.url_arguments(offset))}"

        newer = link(max(query.offset - query.limit, 0)) if query.offset > 0 else None
        older = link(query.offset + query.limit) if query.offset + query.limit < total else None
        return {"newer": newer, "older": older, "first": query.offset + 1}


def activity_handlers(prefix: str, log: ActivityLog, run_blocking) -> list[tuple]:
    """The tornado routes of the activity API and page under the service ``prefix``.

    ``run_blocking(fn, *args)`` returns an awaitable of ``fn(*args)`` run off the event loop
    (the service's executor); every store call goes through it.
    """
    kwargs = {"activity_log": log, "run_blocking": run_blocking}
    return [
        (url_path_join(prefix, "api/activity"), ActivityApiHandler, kwargs),
        (url_path_join(prefix, "activity"), ActivityPageHandler, kwargs),
    ]
