"""The user's CPU, memory and GPU limits, applied to a cluster's start and growth.

The hub owns the limits and observes the use (``GET /hub/api/bench/quotas/users/<name>``, which
this service's ``read:users`` scope may read): the user's running workspaces and every cluster
member Docker runs for them. :class:`ClusterQuotaGate` asks it and applies the pure rule
(:func:`benchhub.quotas.members_that_fit`):

* a cluster start whose first members (``members``, or ``min_members`` of an autoscaled
  cluster) do not fit is refused with a 403 naming the limit and the use (:meth:`start_refusal`);
* a scale-up adds only the members that fit, the members of this cluster that are recorded but
  not yet created counting as used; when not all fit, the scaler log says which limit stops
  it, once until that changes (:meth:`members_that_fit`).

When the hub cannot be asked, nothing is started (a start is a 503, a scale-up waits and
says why): a limit is not lifted because the hub restarts.

Not serialised with the hub's own admission: a workspace start and a scale-up in the same
instant may both pass (each sees the other once its container exists).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from benchhub.hub_client import HubClient
from benchhub.quotas import Limit, Resources, Use, cluster_start_refusal, members_that_fit
from benchhub.resource_models import ResourceModel

from .settings import ClusterSettings
from .state import ClusterRecord

__all__ = ["ClusterQuotaGate", "QuotaUnknown"]


class QuotaUnknown(Exception):
    """The hub could not say what the user's limits are."""


def _resources(model: ResourceModel) -> Resources:
    return Resources(model.cpus, model.memory_gb, model.gpus)


class ClusterQuotaGate:
    """Reads a user's limits and use from the hub with the service's token."""

    def __init__(self, hub: HubClient, log: logging.Logger | None = None):
        self.hub = hub
        self.log = log or logging.getLogger("benchhub.clusters")
        self._notes: dict[str, str] = {}  # cluster key -> the last sentence logged

    async def _limits_and_use(self, user: str) -> tuple[dict[str, Limit], Use]:
        try:
            report = await self.hub.request("GET", f"bench/quotas/users/{quote(user)}")
        except Exception as e:
            raise QuotaUnknown(f"cannot read {user}'s limits from the hub ({e})") from e
        limits = {
            name: Limit(value, report.get("sources", {}).get(name, ""))
            for name, value in report["limits"].items()
        }
        used = report["use"]
        held = Resources(used["cpus"], used["memory_gb"], used["gpus"])
        # the totals are what matters; the names only go into the sentence
        use = Use({key: Resources() for key in used["running"]}, used["cluster_members"], held)
        return limits, use

    async def start_refusal(
        self, user: str, workspace: str, settings: ClusterSettings, model: ResourceModel
    ) -> str | None:
        """Why the cluster's first ``min_members`` members would exceed a limit, or None.
        Raises :class:`QuotaUnknown`."""
        first = settings.min_members
        if first <= 0:
            return None
        limits, use = await self._limits_and_use(user)
        cluster = f"the cluster of {user}/{workspace}"
        return cluster_start_refusal(user, limits, use, _resources(model), first, cluster)

    async def members_that_fit(
        self, rec: ClusterRecord, model: ResourceModel, count: int
    ) -> tuple[int, list[str]]:
        """How many of ``count`` new members of ``rec`` fit the user's limits now, and the
        scaler-log lines saying why not all (once, until the reason changes)."""
        try:
            limits, use = await self._limits_and_use(rec.user)
        except QuotaUnknown as e:
            return 0, self._note(rec.key, f"no member added: {e}")
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

    def _note(self, key: str, line: str) -> list[str]:
        if self._notes.get(key) == line:
            return []
        self._notes[key] = line
        self.log.info("%s: %s", key, line)
        return [line]
