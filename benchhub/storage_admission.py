"""Storage admission, the pure decision: may this much volume storage be allocated now?

Workspace ``/data`` volumes and cluster members' ``/scratch`` are sparse ext4 images: creating
one takes no disk space, filling it does. So they are admitted by their *allocated* (apparent)
size, the size each may grow to, against two limits:

* **capacity** — what the host's volume filesystem can hold for BenchHub. Unless an operator
  states a figure, it is derived from the filesystem (:func:`derived_capacity`): the space
  still free for it plus what BenchHub's own images already occupy, less a reserve kept for
  everything else on that filesystem. With the default overcommit of 1 the allocations then
  never add up to more than the disk can store, so every volume can fill up. An operator may
  allow ``overcommit`` > 1 (most volumes are never full), accepting that writes into volumes
  fail with I/O errors if the filesystem fills first.
* **a per-user quota** — a size in GB or a share of the admitted total, so one user cannot
  take it all.

:func:`decide` turns the facts (filesystem, allocations, the request) and the policy into a
:class:`Verdict`: admitted, or the sentence that says what does not fit, what is free or
what the quota leaves, and the most that could be chosen. Growth counts only the difference:
a volume that keeps its size is always admitted, even when the limits have since shrunk.

Sizes are bytes; "GB" in messages means GiB, as everywhere in BenchHub. Nothing here touches
the disk (:mod:`benchhub.storage_allocations` gathers the facts and holds the lock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "GIB",
    "AdmissionPolicy",
    "Allocations",
    "FilesystemFacts",
    "Quota",
    "StorageRequest",
    "Verdict",
    "decide",
    "derived_capacity",
    "format_gb",
    "parse_quota",
]

GIB = 1024**3


def format_gb(size_bytes: int, round_down: bool = False) -> str:
    """``"61.4 GB"``: GiB with at most one decimal, ``round_down`` for amounts offered (what is
    free is never overstated)."""
    tenths = size_bytes * 10 / GIB
    tenths = math.floor(tenths) if round_down else round(tenths)
    return f"{tenths / 10:g} GB"


@dataclass(frozen=True)
class Quota:
    """A per-user limit: ``size_bytes`` (fixed) or ``share`` of the admitted total (0-1].
    ``source`` names where it comes from in refusals, e.g. ``"max_storage_gb, limit of
    group free-tier"`` ("" for the site's ``user_quota``)."""

    size_bytes: int | None = None
    share: float | None = None
    source: str = ""

    def limit(self, admitted_total: int) -> int:
        if self.size_bytes is not None:
            return self.size_bytes
        return int(admitted_total * (self.share or 0))

    def describe(self, admitted_total: int) -> str:
        """``"20 GB"``, or ``"50% of the storage (35 GB)"`` for a share; with a source,
        ``"20 GB (max_storage_gb, limit of user alice)"``."""
        if self.size_bytes is not None:
            text = format_gb(self.size_bytes, True)
        else:
            limit = format_gb(self.limit(admitted_total), True)
            text = f"{(self.share or 0) * 100:g}% of the storage ({limit})"
        return f"{text} ({self.source})" if self.source else text


def parse_quota(text: str, source: str = "") -> Quota | None:
    """``"200"`` (GB), ``"0.5"`` (GB), ``"50%"`` (of the admitted total) or ``""`` (no quota);
    ``source`` goes into the :class:`Quota`.

    Raises ValueError with how to write it."""
    value = text.strip()
    if not value:
        return None
    how = "write a size in GB such as '200', a share such as '50%', or '' for no quota"
    try:
        number = float(value[:-1] if value.endswith("%") else value)
    except ValueError:
        raise ValueError(f"user quota {text!r} is not a number; {how}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"user quota {text!r} must be greater than 0; {how}")
    if value.endswith("%"):
        if number > 100:
            raise ValueError(f"user quota {text!r} is more than 100%; {how}")
        return Quota(share=number / 100, source=source)
    return Quota(size_bytes=int(number * GIB), source=source)


@dataclass(frozen=True)
class AdmissionPolicy:
    """The operator's settings. ``capacity_bytes`` None: derive it from the filesystem
    (then it and the allocations are per filesystem); a stated capacity covers every volume
    root together. ``reserve_fraction`` of the filesystem's size is left for everything else
    on it (derived capacity only). ``quota`` None: no per-user quota."""

    capacity_bytes: int | None = None
    overcommit: float = 1.0
    reserve_fraction: float = 0.05
    quota: Quota | None = None


@dataclass(frozen=True)
class FilesystemFacts:
    """The filesystem a volume goes on (``statvfs``): its size, the bytes still available,
    and the bytes BenchHub's own images on it occupy now (their blocks, not their size)."""

    size_bytes: int
    available_bytes: int
    ours_used_bytes: int


@dataclass(frozen=True)
class Allocations:
    """Allocated (apparent) sizes already admitted: ``total_bytes`` in the capacity's scope,
    ``owner_bytes`` of the requesting user anywhere."""

    total_bytes: int
    owner_bytes: int


@dataclass(frozen=True)
class StorageRequest:
    """``units`` volumes of ``unit_bytes`` each for ``owner``, asked for in option ``field``.

    ``current_bytes`` is what the one volume being resized holds now (0 for new volumes);
    only growth beyond it needs room. ``what`` names the volumes in the sentence, e.g.
    ``"/data"`` or ``"/scratch"``."""

    field: str
    owner: str
    unit_bytes: int
    units: int = 1
    current_bytes: int = 0
    what: str = "/data"

    @property
    def extra_bytes(self) -> int:
        return max(0, self.unit_bytes * self.units - self.current_bytes)


@dataclass(frozen=True)
class Verdict:
    """The decision. ``message`` (refusals only) is a sentence without the field name;
    ``room_bytes`` is what could still be allocated to this owner here (free space and quota
    together)."""

    admitted: bool
    message: str
    capacity_bytes: int
    free_bytes: int
    quota_left_bytes: int | None

    @property
    def room_bytes(self) -> int:
        if self.quota_left_bytes is None:
            return self.free_bytes
        return min(self.free_bytes, self.quota_left_bytes)


def derived_capacity(fs: FilesystemFacts, reserve_fraction: float) -> int:
    """What BenchHub's volumes on ``fs`` can hold in all: what is available plus what its
    images already occupy, less the reserve; never below 0."""
    reserve = int(fs.size_bytes * reserve_fraction)
    return max(0, fs.available_bytes + fs.ours_used_bytes - reserve)


def decide(
    policy: AdmissionPolicy, fs: FilesystemFacts, allocations: Allocations, request: StorageRequest
) -> Verdict:
    """Admit ``request`` or say why not (see the module docstring)."""
    if policy.capacity_bytes is not None:
        capacity = policy.capacity_bytes
    else:
        capacity = derived_capacity(fs, policy.reserve_fraction)
    admitted_total = int(capacity * policy.overcommit)
    free = max(0, admitted_total - allocations.total_bytes)
    quota_limit = policy.quota.limit(admitted_total) if policy.quota else None
    quota_left = None if quota_limit is None else max(0, quota_limit - allocations.owner_bytes)
    verdict = Verdict(True, "", admitted_total, free, quota_left)
    extra = request.extra_bytes
    if extra <= 0 or extra <= verdict.room_bytes:
        return verdict
    problems = []
    if extra > free:
        problems.append(
            f"only {format_gb(free, True)} is free for workspace and cluster storage on this "
            f"host ({format_gb(allocations.total_bytes)} of {format_gb(admitted_total, True)} "
            "allocated)"
        )
    if quota_left is not None and extra > quota_left:
        problems.append(
            f"{request.owner}'s storage quota is {policy.quota.describe(admitted_total)}, of "
            f"which {format_gb(allocations.owner_bytes)} is allocated, so "
            f"{format_gb(quota_left, True)} is left"
        )
    offer = _offer(request, verdict)
    message = f"{_asked(request)} does not fit: {' and '.join(problems)}; {offer}"
    return Verdict(False, message, admitted_total, free, quota_left)


def _asked(request: StorageRequest) -> str:
    size = format_gb(request.unit_bytes)
    if request.units > 1:
        return (
            f"{request.units} x {size} of {request.what} ({format_gb(request.extra_bytes)} in all)"
        )
    if request.current_bytes:
        return (
            f"growing {request.what} from {format_gb(request.current_bytes)} to {size} "
            f"({format_gb(request.extra_bytes)} more)"
        )
    return f"{size} of {request.what}"


def _offer(request: StorageRequest, verdict: Verdict) -> str:
    """The most that can be chosen now, in whole GB, or that nothing more fits."""
    most = (verdict.room_bytes + request.current_bytes) // request.units // GIB
    per = " per member" if request.units > 1 else ""
    if request.units > 1 and most >= 1:
        fit = verdict.room_bytes // max(1, request.unit_bytes)
        return (
            f"choose at most {most} GB{per}, or fewer members "
            f"({fit} fit at {format_gb(request.unit_bytes)})"
        )
    if most * GIB > request.current_bytes and most >= 1:
        return f"choose at most {most} GB{per}"
    if request.current_bytes:
        return (
            f"keep {format_gb(request.current_bytes)} or free space first (delete a "
            "workspace you no longer need)"
        )
    return (
        "nothing more can be allocated now: delete a workspace you no longer need, or ask an admin"
    )
