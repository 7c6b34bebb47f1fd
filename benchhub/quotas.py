"""Limits per user and per group, the pure rule: which limits apply to a user, and may a start
(or a cluster's growth) happen given what the user already uses?

**The limits** (each a number >= 0, or absent/``None`` for no limit):

=========================  ======  =====================================================
``max_running_workspaces``  int     workspaces running (or starting, or stopping) at once
``max_cpus``                number  CPUs of running workspaces + their clusters' members
``max_memory_gb``           number  memory (GiB) of the same
``max_gpus``                int     GPUs of the same
``max_storage_gb``          number  allocated storage (GiB): workspaces' ``/data`` and
                                    members' ``/scratch``; enforced by storage admission as
                                    the user's quota (:mod:`benchhub.storage_allocations`)
``monthly_budget``          number  the user's spend this calendar month (UTC), in the
                                    usage ledger's unit (CPU-hours by default): at or over
                                    it, nothing more starts (:func:`budget_refusal`)
=========================  ======  =====================================================

**How levels combine** (:func:`effective_limits`), field by field:

1. the user's own value (configuration ``user_limits[<name>]``, overridden key by key by
   what an admin stored by REST) wins, whether it is more or less generous than a group's;
2. else the most generous value among the user's groups that set the field (a group that
   sets it to ``None`` grants no limit);
3. else the site default ``user_limits["*"]``;
4. else no limit.

A group is more specific than the site default, so a "free-tier" group's
``max_running_workspaces: 1`` holds even when the default allows 3.

**Decisions** (:func:`start_refusal`, :func:`members_that_fit`) compare what a request adds to
:class:`Use` (what runs now) and return the sentence a 403 carries, naming the limit, where it
comes from and the current use; :func:`budget_refusal` compares the month's :class:`Spend`
with the budget. Nothing here reads Docker, the hub's database or the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "LIMITS",
    "Limit",
    "LimitsError",
    "RUNNING_LIMITS",
    "Resources",
    "SITE_STORAGE_QUOTA",
    "Spend",
    "Use",
    "budget_refusal",
    "budget_unknown",
    "cluster_start_refusal",
    "container_resources",
    "effective_limits",
    "groups_of",
    "members_that_fit",
    "parse_limits",
    "start_refusal",
    "storage_quota",
    "user_documents",
]

# field -> (whole numbers only, how the sentence names an amount of it)
LIMITS: dict[str, tuple[bool, str]] = {
    "max_running_workspaces": (True, "workspace"),
    "max_cpus": (False, "CPU"),
    "max_memory_gb": (False, "GB of memory"),
    "max_gpus": (True, "GPU"),
    "max_storage_gb": (False, "GB of storage"),
    "monthly_budget": (False, "in the usage ledger's unit"),
}
ALLOWED = (
    "a number of 0 or more (whole for max_running_workspaces and max_gpus) or null for no "
    'limit, e.g. {"max_running_workspaces": 1, "max_cpus": 4, "monthly_budget": 100}'
)
# the limits a start is checked against with what runs now (start_refusal); the others are
# storage admission's (max_storage_gb) and the ledger's (monthly_budget)
RUNNING_LIMITS = ("max_running_workspaces", "max_cpus", "max_memory_gb", "max_gpus")
# where max_storage_gb comes from when no level sets it: storage admission's own setting
SITE_STORAGE_QUOTA = "StorageAdmission.user_quota"


class LimitsError(ValueError):
    """A bad limits document; ``str(e)`` is ``"<field>: <what is allowed>"`` for a 400."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def parse_limits(raw: object) -> dict[str, float | int | None]:
    """A limits document checked: a JSON object whose keys are :data:`LIMITS` and whose values
    are numbers >= 0 (whole for the int limits) or ``None``. Raises :class:`LimitsError`
    naming the first bad field and what is allowed."""
    if not isinstance(raw, Mapping):
        raise LimitsError("limits", f"must be a JSON object of limits: {ALLOWED}")
    checked: dict[str, float | int | None] = {}
    for key, value in raw.items():
        if key not in LIMITS:
            raise LimitsError(str(key), f"is not a limit; the limits are {', '.join(LIMITS)}")
        whole = LIMITS[key][0]
        if value is None:
            checked[key] = None
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not number_ok or not math.isfinite(value) or value < 0:
            raise LimitsError(key, f"{value!r} is not allowed; write {ALLOWED}")
        if whole and value != int(value):
            raise LimitsError(key, f"{value!r} is not a whole number; write e.g. 1")
        checked[key] = int(value) if whole else float(value)
    return checked


@dataclass(frozen=True)
class Limit:
    """One effective limit: ``value`` (None: no limit) and where it comes from, e.g.
    ``"user alice"``, ``"group free-tier"``, ``"site default"`` or ``"none set"``."""

    value: float | int | None
    source: str


def effective_limits(
    user: str,
    own: Mapping[str, float | int | None],
    groups: Mapping[str, Mapping[str, float | int | None]],
    default: Mapping[str, float | int | None],
) -> dict[str, Limit]:
    """The limit of every field for ``user`` (see the module docstring): ``own`` is the user's
    own document (configuration and REST already merged), ``groups`` the documents of the
    user's groups by group name, ``default`` the site default."""
    found: dict[str, Limit] = {}
    for name in LIMITS:
        if name in own:
            found[name] = Limit(own[name], f"user {user}")
            continue
        setting = sorted(
            (g for g, doc in groups.items() if name in doc),
            key=lambda g, limit=name: _generosity(groups[g][limit]),
        )
        if setting:
            best = setting[-1]  # the most generous; ties: the last name in order, stable
            found[name] = Limit(groups[best][name], f"group {best}")
        elif name in default:
            found[name] = Limit(default[name], "site default")
        else:
            found[name] = Limit(None, "none set")
    return found


def _generosity(value: float | int | None) -> float:
    return math.inf if value is None else float(value)


@dataclass(frozen=True)
class Resources:
    """CPUs, memory (GiB) and GPUs one container (or a request) holds."""

    cpus: float = 0.0
    memory_gb: float = 0.0
    gpus: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus + other.cpus, self.memory_gb + other.memory_gb, self.gpus + other.gpus
        )

    def times(self, count: int) -> Resources:
        return Resources(self.cpus * count, self.memory_gb * count, self.gpus * count)


def container_resources(host_config: Mapping) -> Resources:
    """What a container was given, from ``docker inspect``'s ``HostConfig``: CPUs from
    ``NanoCpus`` or ``CpuQuota``/``CpuPeriod``, memory from ``Memory``, GPUs from the counts
    of its device requests. A limit Docker does not set counts 0."""
    cpus = 0.0
    if host_config.get("NanoCpus"):
        cpus = host_config["NanoCpus"] / 1e9
    elif (host_config.get("CpuQuota") or 0) > 0 and host_config.get("CpuPeriod"):
        cpus = host_config["CpuQuota"] / host_config["CpuPeriod"]
    memory_gb = (host_config.get("Memory") or 0) / 1024**3
    gpus = sum(max(0, int(r.get("Count") or 0)) for r in host_config.get("DeviceRequests") or [])
    return Resources(cpus, memory_gb, gpus)


@dataclass(frozen=True)
class Use:
    """What a user holds now: the workspaces that count as running (``"user/workspace"``
    each), with their resources, and the running cluster members with theirs."""

    workspaces: Mapping[str, Resources] = field(default_factory=dict)
    members: int = 0
    member_resources: Resources = Resources()

    @property
    def total(self) -> Resources:
        found = self.member_resources
        for resources in self.workspaces.values():
            found = found + resources
        return found

    def as_json(self) -> dict:
        total = self.total
        return {
            "running_workspaces": len(self.workspaces),
            "running": sorted(self.workspaces),
            "cluster_members": self.members,
            "cpus": round(total.cpus, 3),
            "memory_gb": round(total.memory_gb, 3),
            "gpus": total.gpus,
        }


def _amount(value: float, unit: str) -> str:
    number = _number(value)
    plural = unit in ("CPU", "GPU", "workspace") and value != 1
    return f"{number} {unit}{'s' if plural else ''}"


def _holders(use: Use) -> str:
    """``"alice/lab, alice/big and 2 cluster members"`` (or ``"nothing"``)."""
    parts = sorted(use.workspaces)
    if use.members:
        parts.append(f"{use.members} cluster member{'s' if use.members != 1 else ''}")
    if not parts:
        return "nothing"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


_RESOURCE_LIMITS = (("max_cpus", "cpus"), ("max_memory_gb", "memory_gb"), ("max_gpus", "gpus"))


def start_refusal(
    user: str, limits: Mapping[str, Limit], use: Use, workspace: str, asks: Resources
) -> str | None:
    """Why starting ``workspace`` (``"user/name"``, holding ``asks``) would exceed a limit,
    or None when it may start. ``use`` must not contain ``workspace`` itself. The sentence
    starts with the limit's name, e.g. ``"max_running_workspaces: alice may run at most 1
    workspace at a time (limit of group free-tier); 1 is running (alice/lab)"``."""
    running = limits["max_running_workspaces"]
    if running.value is not None and len(use.workspaces) + 1 > running.value:
        count = len(use.workspaces)
        listing = f" ({', '.join(sorted(use.workspaces))})" if count else ""
        return (
            f"max_running_workspaces: {user} may run at most "
            f"{_amount(running.value, 'workspace')} at a time (limit of {running.source}); "
            f"{count} {'is' if count == 1 else 'are'} running{listing}"
        )
    return _resource_refusal(user, limits, use, asks, f"{workspace} needs")


def _resource_refusal(
    user: str, limits: Mapping[str, Limit], use: Use, asks: Resources, needs: str
) -> str | None:
    total = use.total
    for name, attribute in _RESOURCE_LIMITS:
        limit = limits[name]
        wanted = getattr(asks, attribute)
        held = getattr(total, attribute)
        if limit.value is None or wanted <= 0 or held + wanted <= limit.value + 1e-9:
            continue
        unit = LIMITS[name][1]
        return (
            f"{name}: {user} may use at most {_amount(limit.value, unit)} at a time "
            f"(limit of {limit.source}); {_amount(held, unit)} in use ({_holders(use)}) and "
            f"{needs} {_amount(wanted, unit)}"
        )
    return None


def cluster_start_refusal(
    user: str, limits: Mapping[str, Limit], use: Use, member: Resources, first: int, cluster: str
) -> str | None:
    """Why starting a cluster (``cluster``, e.g. ``"the cluster of alice/lab"``) with ``first``
    members of ``member`` each would exceed the user's CPU, memory or GPU limit, or None."""
    if first <= 0:
        return None
    counted = f"{first} member{'s' if first != 1 else ''} of {cluster} need"
    return _resource_refusal(user, limits, use, member.times(first), counted)


def members_that_fit(
    user: str, limits: Mapping[str, Limit], use: Use, member: Resources, count: int
) -> tuple[int, str | None]:
    """How many of ``count`` new cluster members of ``member`` each fit the user's CPU,
    memory and GPU limits on top of ``use``, and (when not all) the sentence naming the limit
    that stops the next one."""
    fit = 0
    while fit < count:
        refusal = _resource_refusal(
            user, limits, _plus_members(use, member, fit), member, "a new member needs"
        )
        if refusal:
            return fit, refusal
        fit += 1
    return fit, None


def _plus_members(use: Use, member: Resources, count: int) -> Use:
    return Use(use.workspaces, use.members + count, use.member_resources + member.times(count))


@dataclass(frozen=True)
class Spend:
    """What a user spent this calendar month (UTC) so far, ``amount`` in ``unit`` (the usage
    ledger's charge, e.g. CPU-hours), as the lifecycle service computed it."""

    amount: float
    unit: str


def budget_refusal(user: str, limits: Mapping[str, Limit], spend: Spend) -> str | None:
    """Why ``user`` may start nothing more this month, or None: their ``monthly_budget`` is
    set and ``spend`` is at or over it (a budget of 0 allows nothing). The sentence starts
    with the limit's name, e.g. ``"monthly_budget: alice used 12.5 of 12 CPU-hours this month
    (limit of group free-tier); ..."``."""
    budget = limits["monthly_budget"]
    if budget.value is None or spend.amount < budget.value:
        return None
    return (
        f"monthly_budget: {user} used {_number(spend.amount)} of {_number(budget.value)} "
        f"{spend.unit} this month (limit of {budget.source}); nothing more starts until an "
        "admin raises the budget or the month ends (months are UTC)"
    )


def budget_unknown(reason: str) -> str:
    """The sentence of a start refused because a budget applies and the spend cannot be
    read (a 503: the budget is not lifted because the ledger cannot answer)."""
    return f"monthly_budget: the budget cannot be checked: {reason}; try again shortly"


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{round(value, 2):g}"


def storage_quota(limit: Limit) -> str | None:
    """The per-user quota storage admission applies for a user's ``max_storage_gb`` limit
    (:class:`~benchhub.storage_allocations.StorageAdmission` ``owner_quotas``): None when no
    user, group or site default sets it (``StorageAdmission.user_quota`` applies), ``""``
    when one sets no limit, else the GB as text (0 is the smallest size: nothing fits)."""
    if limit.source == "none set" or limit.source.startswith(SITE_STORAGE_QUOTA):
        return None
    if limit.value is None:
        return ""
    return f"{max(float(limit.value), 1e-9):g}"


def user_documents(
    user: str, configured: Mapping[str, Mapping], stored: Mapping[str, Mapping]
) -> dict:
    """The user's own document: the configuration's ``configured[user]`` with the REST-stored
    ``stored[user]`` over it, key by key."""
    return {**(configured.get(user) or {}), **(stored.get(user) or {})}


def groups_of(names: Iterable[str], configured: Mapping, stored: Mapping) -> dict[str, dict]:
    """Each group's document (configuration, then REST-stored over it, key by key) for the
    groups in ``names`` that set anything."""
    found = {}
    for name in names:
        doc = {**(configured.get(name) or {}), **(stored.get(name) or {})}
        if doc:
            found[name] = doc
    return found
