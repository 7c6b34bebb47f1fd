"""The usage endpoints and page of the lifecycle service, and the rates they price with.

Mounted under the service prefix by :func:`usage_handlers`:

- ``GET api/usage`` — JSON ``{"from", "to", "unit", "group_by", "rows": [...], "total": {...}}``,
  each row the group's columns (``user``; ``user`` + ``workspace``; ``project``; ``day``;
  ``month``) and ``hours``, ``cpu_hours``, ``memory_gb_hours``, ``gpu_hours``,
  ``storage_gb_months`` and ``charge`` (in ``unit``). Parameters: :mod:`.usage_report`.
  ``?format=csv`` or ``GET api/usage.csv``: the rows as CSV.
- ``GET usage`` — the Usage page: the filter form, a bar chart of the charge per day (an SVG
  drawn on the server, no script), the table and a link to the CSV.

A bad parameter is a 400 and a refused one a 403, naming the field (JSON for the API, the
page with the message for the page). What a caller sees: :func:`.usage_report.scope_usage_query`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlencode

from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Dict, Float, Unicode, validate
from traitlets.config import Configurable

from benchhub.access import SEE, may_for_everyone
from benchhub.service_web import ServiceHandler, ServicePage

from .activity_api import TEMPLATES
from .ledger import Ledger, to_us
from .usage import Rates, add_pieces, day_pieces, usage
from .usage_report import (
    PARAMETERS,
    UsageQuery,
    UsageRefused,
    chart_bars,
    day_labels,
    parse_usage_query,
    rows,
    scope_usage_query,
    to_csv,
    total,
)

__all__ = ["UsageRates", "menu_entry_redirect", "usage_handlers"]


class UsageRates(Configurable):
    """What usage costs, in the site's unit (``c.UsageRates`` in the lifecycle config)."""

    unit = Unicode(
        "CPU-hours", help="Name of the unit charges are in, e.g. CPU-hours or credits."
    ).tag(config=True)
    model_hour = Dict(
        value_trait=Float(),
        help="""Units per hour of a workspace run, by resource model name, e.g.
        {"standard-small": 2, "gpu-small": 12}. Models not named here (and cluster nodes,
        which carry no model) cost cpus × cpu_hour + memory_gb × memory_gb_hour +
        gpus × gpu_hour per hour.""",
    ).tag(config=True)
    cpu_hour = Float(1.0, help="Units per CPU and hour, e.g. 1 (CPU-hours).").tag(config=True)
    memory_gb_hour = Float(0.0, help="Units per GB of memory and hour, e.g. 0.1.").tag(config=True)
    gpu_hour = Float(0.0, help="Units per GPU and hour, e.g. 10.").tag(config=True)
    storage_gb_month = Float(
        0.0,
        help="""Units per GB and calendar month of allocated storage (a workspace's /data,
        and a cluster member's /scratch while it runs), e.g. 0.02.""",
    ).tag(config=True)

    @validate("cpu_hour", "memory_gb_hour", "gpu_hour", "storage_gb_month")
    def _not_negative(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be 0 or more, got {proposal['value']}")
        return proposal["value"]

    @validate("model_hour")
    def _rates_not_negative(self, proposal):
        bad = {name: rate for name, rate in proposal["value"].items() if rate < 0}
        if bad:
            raise ValueError(f"model_hour rates must be 0 or more, got {bad}")
        return proposal["value"]

    def rates(self) -> Rates:
        return Rates(
            unit=self.unit,
            model_hour=dict(self.model_hour),
            cpu_hour=self.cpu_hour,
            memory_gb_hour=self.memory_gb_hour,
            gpu_hour=self.gpu_hour,
            storage_gb_month=self.storage_gb_month,
        )


def compute(ledger: Ledger, rates: Rates, query: UsageQuery, now: float, group_by=None):
    """The usage ``query`` asks for, from the ledger (blocking: run it in the executor). Run
    time is summed in the database (:meth:`Ledger.run_pieces`), storage through
    :func:`.usage.usage`: the same figures as ``usage`` of every run row."""
    group_by = group_by or query.group_by
    since, until = query.since.timestamp(), query.until.timestamp()
    end = min(until, now)
    who = {"user": query.user, "project": query.project}
    if end <= since:
        return {}
    pieces = ledger.run_pieces(to_us(since), to_us(end), group_by, **who)
    if group_by in ("day", "month"):
        pieces = day_pieces(pieces)
    storage = ledger.storage(to_us(since), to_us(end), **who)
    totals = usage([], storage, since, until, now, rates, group_by)
    add_pieces(totals, pieces, rates, group_by)
    return totals


class _UsageHandler:
    def initialize(self, ledger: Ledger | None, rates: UsageRates, run_blocking) -> None:
        self.ledger = ledger
        self.usage_rates = rates
        self.run_blocking = run_blocking

    def _query(self) -> UsageQuery:
        arguments = {name: self.get_query_arguments(name) for name in self.request.query_arguments}
        asked = parse_usage_query(arguments, datetime.now(UTC))
        return scope_usage_query(asked, self.current_user)

    async def _report(self, query: UsageQuery) -> tuple[dict, Rates]:
        if self.ledger is None:
            raise web.HTTPError(503, "the usage ledger is not configured in this service")
        rates = self.usage_rates.rates()
        found = await self.run_blocking(partial(compute, self.ledger, rates, query, time.time()))
        return {
            "from": query.since.isoformat(),
            "to": query.until.isoformat(),
            "unit": rates.unit,
            "group_by": query.group_by,
            "rows": rows(found, query.group_by),
            "total": total(found),
        }, rates


class UsageApiHandler(_UsageHandler, ServiceHandler):
    """``GET api/usage`` (and ``api/usage.csv`` with ``csv=True``)."""

    def initialize(self, csv: bool = False, **kwargs) -> None:
        super().initialize(**kwargs)
        self.csv = csv

    @web.authenticated
    async def get(self) -> None:
        try:
            query = self._query()
        except UsageRefused as refused:
            raise web.HTTPError(refused.status, refused.message) from None
        report, rates = await self._report(query)
        if self.csv or query.format == "csv":
            self.set_header("Content-Type", "text/csv; charset=UTF-8")
            self.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
            self.write(to_csv(report["rows"], query.group_by, rates.unit))
            return
        self.write(report)


class UsagePageHandler(_UsageHandler, ServicePage):
    """``GET usage``: the Usage page."""

    templates = TEMPLATES

    @web.authenticated
    async def get(self) -> None:
        caller = self.current_user
        form = {name: self.get_query_argument(name, "") for name in PARAMETERS}
        context = {"report": None, "bars": [], "top": 0.0, "error": None, "csv_url": ""}
        try:
            query = self._query()
        except UsageRefused as refused:
            self.set_status(refused.status)
            context["error"] = refused.message
        else:
            report, rates = await self._report(query)
            days = await self.run_blocking(
                partial(compute, self.ledger, rates, query, time.time(), "day")
            )
            bars, top = chart_bars(days, day_labels(query.since, query.until))
            arguments = {k: v for k, v in form.items() if v and k != "format"}
            csv_url = url_path_join(self.settings["prefix"], "api/usage.csv")
            context.update(
                report=report,
                bars=bars,
                top=top,
                csv_url=f"{csv_url}?{urlencode(arguments)}" if arguments else csv_url,
            )
        await self.render_page(
            "usage.html",
            "Usage",
            caller=caller["name"],
            everyone=may_for_everyone(caller, SEE),
            form=form,
            **context,
        )


def usage_handlers(
    prefix: str, ledger: Ledger | None, rates: UsageRates, run_blocking
) -> list[tuple]:
    """The tornado routes of the usage API, its CSV and the Usage page under ``prefix``;
    ``run_blocking(fn, *args)`` runs the ledger reads off the event loop."""
    kwargs = {"ledger": ledger, "rates": rates, "run_blocking": run_blocking}
    return [
        (url_path_join(prefix, "api/usage"), UsageApiHandler, kwargs),
        (url_path_join(prefix, r"api/usage\.csv"), UsageApiHandler, {**kwargs, "csv": True}),
        (url_path_join(prefix, "usage"), UsagePageHandler, kwargs),
    ]


def menu_entry_redirect(prefix: str) -> tuple:
    """The route that makes the Usage page an entry of the hub's Services menu.

    The menu lists hub services, so ``jupyterhub_config.py`` declares a service ``usage`` at
    this service's URL: the proxy sends ``/services/usage/…`` here, and this route redirects
    it to the page (a redirect only: the page asks for the login and applies the access
    rule)."""
    entry = url_path_join(os.environ.get("JUPYTERHUB_BASE_URL", "/"), "services/usage/")
    return (entry + ".*", web.RedirectHandler, {"url": url_path_join(prefix, "usage")})
