"""Limits per user and per group, the hub's side: the settings, where REST changes are kept,
what a user uses now, and the admission of a start.

* :class:`BenchQuotas` holds the site's limits (``c.BenchQuotas.user_limits`` and
  ``group_limits``) and what admins set by REST: a group's in its JupyterHub group
  ``properties`` (key :data:`GROUP_PROPERTY`, in the hub's database), a user's in a small JSON
  file (``users_file``; JupyterHub users have no properties). The rule that combines them is
  :func:`benchhub.quotas.effective_limits`.
* :class:`QuotaAdmission` is a mixin of :class:`bench_spawner.spawner.BenchSpawner` that
  extends :class:`~.storage_limits.WorkspaceStorageLimits`: a start's ``claim_storage`` first
  admits the start against the user's running-workspace, CPU, memory and GPU limits (a 403
  naming the limit and the current use, before the storage claim and before anything is
  created), and ``max_storage_gb`` becomes the user's quota in storage admission (replacing
  ``c.StorageAdmission.user_quota`` for that user; the one quota, not a second one).

**The monthly budget** is checked only for a user whom a ``monthly_budget`` applies to (no
extra work on the spawn path otherwise): the hub asks the lifecycle service for the user's
spend this calendar month (UTC) with :class:`benchhub.spend_client.SpendClient` (its own
token, a short timeout). At or over the budget, the start is a 403 naming the limit, its
source and the spend; when the service cannot answer, a 503 saying the budget cannot be
checked (the start is not let through unchecked). The quota report carries the spend too, so
the home page shows it and the clusters service (which reads the report) applies the budget
to cluster starts and growth without a credential for the ledger of its own.

**Use** is observed, not remembered: the user's workspaces that run, start or stop (from the
hub's spawners, each with its resource model) and their clusters' members (Docker containers
labelled with the user, any state but exited, with the CPUs, memory and GPUs Docker gives
them). Admission is serialised per user in the hub process (an ``asyncio.Lock`` around check
and reservation): a start that passed counts from then on for other starts of the same user,
so two starts at once cannot both pass a "max 1 running" limit.
"""

from __future__ import annotations

import asyncio
import json
from functools import cached_property
from pathlib import Path

from docker.errors import NotFound
from tornado import web
from traitlets import Dict, Float, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from benchhub.atomic import atomic_write
from benchhub.labels import cluster_label
from benchhub.quotas import (
    RUNNING_LIMITS,
    SITE_STORAGE_QUOTA,
    Limit,
    LimitsError,
    Resources,
    Spend,
    Use,
    budget_refusal,
    budget_unknown,
    container_resources,
    effective_limits,
    groups_of,
    parse_limits,
    start_refusal,
    storage_quota,
    user_documents,
)
from benchhub.spend_client import SpendClient, SpendUnknown
from benchhub.storage_admission import GIB
from benchhub.storage_allocations import StorageAdmission
from benchhub.workspace_spec import WorkspaceSpec

from .storage_limits import WorkspaceStorageLimits

__all__ = ["GROUP_PROPERTY", "BenchQuotas", "QuotaAdmission"]

GROUP_PROPERTY = "bench_quotas"  # the key in a JupyterHub group's properties
_GONE = ("exited", "dead", "removing")  # cluster containers in these states hold nothing


class BenchQuotas(LoggingConfigurable):
    """The site's limits and the ones admins set by REST (``c.BenchQuotas``)."""

    user_limits = Dict(
        help="""Limits per user name; "*" is the site default for everyone. Each value is a
        dict of limits: max_running_workspaces (workspaces at once), max_cpus (CPUs),
        max_memory_gb (GB, GiB), max_gpus (GPUs), max_storage_gb (GB of /data and /scratch
        allocated), monthly_budget (spend this calendar month, UTC, in the usage ledger's
        unit, CPU-hours by default; at or over it nothing more starts); a number >= 0 or
        None for no limit; a limit not named falls through to the user's groups, then "*".
        A user's own value wins over their groups'. REST
        (PUT /hub/api/bench/quotas/users/<name>) overrides these key by key. Example:
        {"*": {"max_running_workspaces": 3, "max_cpus": 8}, "alice": {"max_cpus": 16}}.""",
    ).tag(config=True)
    group_limits = Dict(
        help="""Limits per JupyterHub group name, the same keys as user_limits. A user in
        several groups gets, limit by limit, the most generous of them (None: no limit).
        REST (PUT /hub/api/bench/quotas/groups/<name>) overrides these key by key. Example:
        {"free-tier": {"max_running_workspaces": 1, "max_cpus": 2, "max_gpus": 0}}.""",
    ).tag(config=True)
    users_file = Unicode(
        "/var/lib/benchhub/quotas-users.json",
        help="""JSON file keeping the per-user limits admins set by REST, so they survive a
        hub restart (written atomically by the hub), e.g. /var/lib/benchhub/quotas-users.json.
        Groups' REST limits are kept in the hub's database (group properties).""",
    ).tag(config=True)
    spend_url = Unicode(
        "",
        help="""The lifecycle service's usage API, which monthly_budget is checked against
        (asked only for users with a budget), e.g.
        http://127.0.0.1:10102/services/lifecycle/api/usage. Empty: a budget cannot be
        checked, so a user with one cannot start anything (a 503 says so).""",
    ).tag(config=True)
    spend_token = Unicode(
        "",
        help="""The API token the hub sends to spend_url: a hub service's token whose role
        holds read:servers and access:services!service=lifecycle (jupyterhub_config.py
        makes one, "budget-reader", kept in <state dir>/budget-reader-token).""",
    ).tag(config=True)
    spend_timeout = Float(
        5.0,
        help="""Seconds the hub waits for the lifecycle service's answer about a user's
        spend before it refuses the start (503, "the budget cannot be checked"), e.g. 5.""",
    ).tag(config=True)

    @validate("user_limits", "group_limits")
    def _check_limits(self, proposal):
        for name, doc in proposal.value.items():
            try:
                parse_limits(doc)
            except LimitsError as e:
                raise TraitError(
                    f"BenchQuotas.{proposal.trait.name}[{name!r}]: {e}; e.g. "
                    '{"max_running_workspaces": 1}'
                ) from None
        return proposal.value

    _write_lock = asyncio.Lock()

    # ---- what REST stored -------------------------------------------------------------------

    def stored_users(self) -> dict[str, dict]:
        """Every user's REST-set document; a missing or unreadable file is none (logged)."""
        try:
            found = json.loads(Path(self.users_file).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self.log.warning("quotas: cannot read %s (%s); no REST user limits", self.users_file, e)
            return {}
        return {name: self._checked(doc, f"user {name}") for name, doc in found.items()}

    async def store_user(self, user: str, doc: dict) -> None:
        """Replace ``user``'s REST-set document (``{}`` removes it); atomic, serialised."""
        async with BenchQuotas._write_lock:
            stored = await asyncio.to_thread(self.stored_users)
            if doc:
                stored[user] = doc
            else:
                stored.pop(user, None)
            text = json.dumps(stored, indent=1, sort_keys=True)
            await asyncio.to_thread(atomic_write, Path(self.users_file), text, 0o600)

    def stored_group(self, orm_group) -> dict:
        return self._checked((orm_group.properties or {}).get(GROUP_PROPERTY) or {}, orm_group.name)

    @staticmethod
    def store_group(db, orm_group, doc: dict) -> None:
        """Replace the group's REST-set document in its properties and commit."""
        properties = {k: v for k, v in (orm_group.properties or {}).items() if k != GROUP_PROPERTY}
        if doc:
            properties[GROUP_PROPERTY] = doc
        orm_group.properties = properties  # a new dict: the JSON column notices the change
        db.commit()

    def _checked(self, doc: object, whose: str) -> dict:
        """A stored document as the rule reads it; a bad one (e.g. written through
        JupyterHub's own group properties API) counts as none, with a warning."""
        try:
            return parse_limits(doc)
        except LimitsError as e:
            self.log.warning("quotas: the stored limits of %s are ignored: %s", whose, e)
            return {}

    # ---- the effective limits -------------------------------------------------------------

    def group_documents(self, orm_groups) -> dict[str, dict]:
        stored = {g.name: self.stored_group(g) for g in orm_groups}
        return groups_of(stored, self.group_limits, stored)

    def own_document(self, user: str) -> dict:
        return user_documents(user, self.user_limits, self.stored_users())

    async def month_spend(self, user: str) -> Spend:
        """``user``'s spend this month (UTC, until now); raises
        :class:`~benchhub.spend_client.SpendUnknown` saying why it cannot be read."""
        client = SpendClient(self.spend_url, self.spend_token, self.spend_timeout)
        return await client.month_to_date(user)

    def limits_for(self, user) -> dict[str, Limit]:
        """The effective limits of ``user`` (a JupyterHub user, with ``name`` and ``groups``)."""
        return effective_limits(
            user.name,
            self.own_document(user.name),
            self.group_documents(user.groups),
            self.user_limits.get("*") or {},
        )


def _counts_as_running(spawner) -> bool:
    """Whether a workspace holds its resources now: running, being checked or stopped, or
    starting *and admitted* (a start not yet admitted is counted by its own admission)."""
    if spawner.ready or spawner.pending in ("stop", "check"):
        return True
    admitted = getattr(spawner, "_quota_admitted_at", None)
    orm_spawner = getattr(spawner, "orm_spawner", None)
    return (
        spawner.pending == "spawn"
        and admitted is not None
        and orm_spawner is not None
        and admitted == orm_spawner.started
    )


class QuotaAdmission(WorkspaceStorageLimits):
    """Storage limits plus the user's limits at start (see the module docstring)."""

    _admission_locks: dict[str, asyncio.Lock] = {}  # by user name, in the hub process
    _quota_admitted_at = None  # orm_spawner.started of the start that passed admission

    @cached_property
    def quotas(self) -> BenchQuotas:
        return BenchQuotas(parent=self, log=self.log)

    @property
    def storage_admission(self) -> StorageAdmission:
        """``c.StorageAdmission``, with the user's ``max_storage_gb`` as their quota when a
        user, group or site default sets one."""
        limit = self.quotas.limits_for(self.user)["max_storage_gb"]
        admission = StorageAdmission(roots=[self.storage_root], parent=self, log=self.log)
        source = f"max_storage_gb, limit of {limit.source}"
        admission.set_owner_quota(self.user.name, storage_quota(limit), source)
        return admission

    async def claim_storage(self, spec: WorkspaceSpec) -> None:
        """Admit the start against the user's limits (403), then claim ``/data`` (400)."""
        await self.admit_within_limits(spec)
        await super().claim_storage(spec)

    async def admit_within_limits(self, spec: WorkspaceSpec) -> None:
        """A 403 naming the limit and the current use when starting this workspace with
        ``spec`` would exceed one of its owner's limits; otherwise it counts as running for
        the owner's other starts from now on."""
        lock = QuotaAdmission._admission_locks.setdefault(self.user.name, asyncio.Lock())
        async with lock:
            self._quota_admitted_at = None
            limits = self.quotas.limits_for(self.user)
            if any(limits[name].value is not None for name in RUNNING_LIMITS):
                model = self.schema.resource_models[spec.resource_model]
                asks = Resources(model.cpus, model.memory_gb, model.gpus)
                use = await self.quota_use(exclude=self.name)
                refusal = start_refusal(
                    self.user.name, limits, use, f"{self.user.name}/{self.name}", asks
                )
                if refusal:
                    self.log.info("%s: start refused: %s", self._log_name, refusal)
                    raise web.HTTPError(403, refusal)
            if limits["monthly_budget"].value is not None:  # only then is the ledger asked
                await self._admit_within_budget(limits)
            self._quota_admitted_at = self.orm_spawner.started if self.orm_spawner else None

    async def _admit_within_budget(self, limits: dict[str, Limit]) -> None:
        """A 403 when the owner's spend this month is at or over their budget; a 503 when
        the lifecycle service cannot say what it is."""
        try:
            spend = await self.quotas.month_spend(self.user.name)
        except SpendUnknown as e:
            sentence = budget_unknown(str(e))
            self.log.warning("%s: start refused: %s", self._log_name, sentence)
            raise web.HTTPError(503, sentence) from None
        refusal = budget_refusal(self.user.name, limits, spend)
        if refusal:
            self.log.info("%s: start refused: %s", self._log_name, refusal)
            raise web.HTTPError(403, refusal)

    async def quota_use(self, exclude: str | None = None) -> Use:
        """What the owner holds now (the workspace ``exclude`` left out)."""
        workspaces = {}
        for spawner in list(self.user.spawners.values()):
            if not spawner.name or spawner.name == exclude or not _counts_as_running(spawner):
                continue
            workspaces[f"{self.user.name}/{spawner.name}"] = self._charge_of(spawner)
        members, held = await self._cluster_members()
        return Use(workspaces, members, held)

    def _charge_of(self, spawner) -> Resources:
        spec = spawner.current_spec() if hasattr(spawner, "current_spec") else None
        model = self.schema.resource_models.get(spec.resource_model) if spec else None
        return Resources(model.cpus, model.memory_gb, model.gpus) if model else Resources()

    async def _cluster_members(self) -> tuple[int, Resources]:
        """The owner's cluster members under this hub's prefix (any state but gone)."""
        labels = [
            f"{cluster_label('prefix')}={self.prefix}",
            f"{cluster_label('user')}={self.user.name}",
            f"{cluster_label('role')}=member",
        ]
        found = await self.docker("containers", all=True, filters={"label": labels})
        count, held = 0, Resources()
        for container in found:
            if container.get("State") in _GONE:
                continue
            try:
                obj = await self.docker("inspect_container", container["Id"])
            except NotFound:
                continue  # removed meanwhile
            count += 1
            held = held + container_resources(obj.get("HostConfig") or {})
        return count, held

    async def quota_report(self) -> dict:
        """The owner's effective limits (value and source), own REST/config document and
        current use, as ``GET /hub/api/bench/quotas/users/<name>`` answers."""
        limits = self.quotas.limits_for(self.user)
        use = await self.quota_use()
        admission = self.storage_admission
        storage = await asyncio.to_thread(admission.usage, self.user.name)
        report_limits = {name: limit.value for name, limit in limits.items()}
        sources = {name: limit.source for name, limit in limits.items()}
        if limits["max_storage_gb"].source == "none set" and admission.user_quota:
            sources["max_storage_gb"] = f"{SITE_STORAGE_QUOTA} ({admission.user_quota})"
        return {
            "user": self.user.name,
            "limits": report_limits,
            "sources": sources,
            "use": {**use.as_json(), "storage_gb": round(storage / GIB, 3)},
            "spend": await self._spend_report(limits["monthly_budget"]),
            "own": self.quotas.own_document(self.user.name),
            "groups": sorted(g.name for g in self.user.groups),
        }

    async def _spend_report(self, budget: Limit) -> dict | None:
        """``{"amount", "unit", "error"}``: the owner's spend this month (UTC) when a budget
        applies to them (None otherwise: the ledger is not asked); ``amount`` and ``unit``
        are null and ``error`` says why when the lifecycle service cannot answer."""
        if budget.value is None:
            return None
        try:
            spend = await self.quotas.month_spend(self.user.name)
        except SpendUnknown as e:
            return {"amount": None, "unit": None, "error": budget_unknown(str(e))}
        return {"amount": round(spend.amount, 6), "unit": spend.unit, "error": None}
