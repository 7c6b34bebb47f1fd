"""The user's CPU, memory, GPU, storage and budget limits, applied to a cluster's start and
growth.

The hub owns the limits and observes the use (``GET /hub/api/bench/quotas/users/<name>``, which
this service's ``read:users`` scope may read): the user's running workspaces and every cluster
member Docker runs for them. :class:`ClusterQuotaGate` asks it and applies the pure rule
(:func:`benchhub.quotas.members_that_fit`):

* a cluster start whose first members (``members``, or ``min_members`` of an autoscaled
  cluster) do not fit is refused with a 403 naming the limit and the use (:meth:`start_refusal`);
* a scale-up adds only the members that fit, the members of this cluster that are recorded but
  not yet created counting as used; when not all fit, the scaler log says which limit stops
  it, once until that changes (:meth:`members_that_fit`).
* **monthly_budget**: the hub's report carries the user's spend this month (UTC) when a budget
  applies to them (the hub asks the usage ledger). At or over it, a cluster start is a 403
  (also one with no first members: its manager would be charged) and an autoscaled cluster
  adds no member; its scaler log says so once per budget (not each pass, although the spend
  grows). A spend the hub could not read counts as unknown: a 503 / no member added.
* **max_storage_gb**: each time it reads a user's limits, the gate gives storage admission
  (``admission``, the service's :class:`~benchhub.storage_allocations.StorageAdmission`)
  that user's own quota, so their members' ``/scratch`` is checked at the start and at each
  scale-up, and claimed when each member is made, against it (the refusal names the limit)
  instead of ``StorageAdmission.user_quota``. A member recorded before a restart of this
  service and made before its owner's limits are read again is claimed against the site's
  quota.

When the hub cannot be asked, nothing is started (a start is a 503, a scale-up waits and
says why): a limit is not lifted because the hub restarts.

Not serialised with the hub's own admission: a workspace start and a scale-up in the same
instant may both pass (each sees the other once its container exists).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from benchhub.hub_client import HubClient
from benchhub.quotas import (
    LIMITS,
    Limit,
    Resources,
    Spend,
    Use,
    budget_refusal,
    cluster_start_refusal,
    members_that_fit,
    storage_quota,
)
from benchhub.resource_models import ResourceModel
from benchhub.storage_allocations import StorageAdmission

from .settings import ClusterSettings
from .state import ClusterRecord

__all__ = ["ClusterQuotaGate", "QuotaUnknown"]


class QuotaUnknown(Exception):
    """The hub could not say what the user's limits are."""


def _resources(model: ResourceModel) -> Resources:
    return Resources(model.cpus, model.memory_gb, model.gpus)


class ClusterQuotaGate:
    """Reads a user's limits, use and spend from the hub with the service's token; gives
    ``admission`` (if any) each user's storage quota."""

    def __init__(
        self,
        hub: HubClient,
        log: logging.Logger | None = None,
        admission: StorageAdmission | None = None,
    ):
        self.hub = hub
        self.log = log or logging.getLogger("benchhub.clusters")
        self.admission = admission
        self._notes: dict[str, object] = {}  # cluster key -> what the last line logged said

    async def _limits_and_use(self, user: str) -> tuple[dict[str, Limit], Use, dict | None]:
        """The user's limits (every one: a hub that does not report one: none set), use and
        spend report (None: no budget applies)."""
        try:
            report = await self.hub.request("GET", f"bench/quotas/users/{quote(user)}")
        except Exception as e:
            raise QuotaUnknown(f"cannot read {user}'s limits from the hub ({e})") from e
        sources = report.get("sources", {})
        limits = {
            name: Limit(report["limits"].get(name), sources.get(name, "none set"))
            for name in LIMITS
        }
        used = report["use"]
        held = Resources(used["cpus"], used["memory_gb"], used["gpus"])
        # the totals are what matters; the names only go into the sentence
        use = Use({key: Resources() for key in used["running"]}, used["cluster_members"], held)
        if self.admission is not None:
            storage = limits["max_storage_gb"]
            source = f"max_storage_gb, limit of {storage.source}"
            self.admission.set_owner_quota(user, storage_quota(storage), source)
        return limits, use, report.get("spend")

    @staticmethod
    def _budget_refusal(user: str, limits: dict[str, Limit], spend: dict | None) -> str | None:
        """The budget's refusal, or None; raises :class:`QuotaUnknown` when a budget applies
        and the hub could not read the spend."""
        if limits["monthly_budget"].value is None:
            return None
        if not spend or spend.get("amount") is None:
            raise QuotaUnknown((spend or {}).get("error") or "monthly_budget: no spend reported")
        return budget_refusal(user, limits, Spend(spend["amount"], spend["unit"]))

    async def start_refusal(
        self, user: str, workspace: str, settings: ClusterSettings, model: ResourceModel
    ) -> str | None:
        """Why starting the cluster would exceed a limit (the budget, or the first
        ``min_members`` members' CPUs, memory or GPUs), or None. Raises
        :class:`QuotaUnknown`."""
        limits, use, spend = await self._limits_and_use(user)
        refusal = self._budget_refusal(user, limits, spend)
        if refusal:
            return refusal
        cluster = f"the cluster of {user}/{workspace}"
        first = settings.min_members
        return cluster_start_refusal(user, limits, use, _resources(model), first, cluster)

    async def members_that_fit(
        self, rec: ClusterRecord, model: ResourceModel, count: int
    ) -> tuple[int, list[str]]:
        """How many of ``count`` new members of ``rec`` fit the user's limits now, and the
        scaler-log lines saying why not all (once, until the reason changes)."""
        try:
            limits, use, spend = await self._limits_and_use(rec.user)
            over_budget = self._budget_refusal(rec.user, limits, spend)
        except QuotaUnknown as e:
            return 0, self._note(rec.key, f"no member added: {e}")
        if over_budget:  # the spend grows every pass: logged once per budget, not per amount
            budget = limits["monthly_budget"]
            line = f"at the budget, no new member starts: {over_budget}"
            return 0, self._note(rec.key, line, ("monthly_budget", budget.value, budget.source))
        waiting = sum(1 for m in rec.members.values() if m.waiting_to_start)
        if waiting:  # recorded in an earlier pass, not yet a container the hub can see
            use = Use(
                use.workspaces,
                use.members + waiting,
                use.member_resources + _resources(model).times(waiting),
            )
        fit, sentence = members_that_fit(rec.user, limits, use, _resources(model), count)
        if sentence is None:
            self._notes.pop(rec.key, None)
            return fit, []
        starting = f"only {fit} of {count} new members start" if fit else "no new member starts"
        return fit, self._note(rec.key, f"at the limit, {starting}: {sentence}")

    def _note(self, key: str, line: str, same: object = None) -> list[str]:
        """``[line]`` (and the service log) unless the last note of cluster ``key`` said the
        same: ``same`` when given (what makes two lines the same news), else the line."""
        said = line if same is None else same
        if self._notes.get(key) == said:
            return []
        self._notes[key] = said
        self.log.info("%s: %s", key, line)
        return [line]
