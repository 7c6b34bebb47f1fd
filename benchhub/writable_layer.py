"""The size limit of a container's own files (its writable layer), measured and decided.

A workspace's home, ``/tmp`` and the packages a user installs live in the container's overlay2
upper directory on the engine's filesystem. On this engine (overlay2 on ext4) Docker cannot cap
it (``--storage-opt size`` needs XFS with project quotas, and the host filesystem has no
project-quota feature), so the limit is watched: the hub (root) measures the upper directory
(``docker inspect`` → ``GraphDriver.Data.UpperDir``) and stops a container that passed the
resource model's ``disk_gb``, with the reason :func:`over_limit_reason` gives. The stop takes
its checkpoint like any other, so nothing is lost.

**What counts** (:class:`LayerUsage`): the larger of the files' apparent size (a sparse file
counts in full: a checkpoint restores every byte of it), the blocks they occupy, and 4 KiB per
inode (a million empty files fill an inode table, not blocks). It is measured with GNU ``du``
(``-x``: one filesystem; it never follows symlinks and copes with any depth), three walks of
the tree, about 0.1 s each per 30 000 files.

**How often** (:func:`next_check_in`): the time the remaining headroom lasts at the faster of
the observed growth and an assumed write rate, halved, between ``min_interval`` and
``max_interval``. Far from the limit a check is a minute apart; close to it, every
``min_interval``. A workspace can therefore pass its limit by what it writes in
``min_interval`` plus one measurement (at 200 MB/s and 1 s: about 0.3 GB), or by more if it
writes faster than the assumed rate from far below the limit within one interval.

**A run that begins above the limit** — restored from the checkpoint of a run stopped for it —
must be usable to clean up: :func:`run_ceiling` lets it keep what it was restored with plus
:data:`CLEANUP_ALLOWANCE`, never more than :func:`hard_cap` (twice the limit, or the limit and
1 GB for small limits, whichever is more: room for the overshoot of a stop), which is also the
most a checkpoint may hold to be restored (:func:`restore_refusal`): restoring writes every
byte to the host's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from traitlets import Float, Integer, validate
from traitlets.config import LoggingConfigurable

__all__ = [
    "CLEANUP_ALLOWANCE",
    "format_size",
    "hard_cap",
    "INODE_CHARGE",
    "Cadence",
    "LayerUsage",
    "WritableLayerWatch",
    "measure",
    "next_check_in",
    "over_limit_reason",
    "restore_refusal",
    "run_ceiling",
]

GIB = 1024**3
MIB = 1024**2
INODE_CHARGE = 4096
CLEANUP_ALLOWANCE = 64 * MIB
WORKSPACE_FILES = "the workspace's own files (home, /tmp, installed packages)"
MEMBER_FILES = "the member's own files (/tmp and everything outside /data and /scratch)"


def format_size(size_bytes: float) -> str:
    """``"0.25 GB"``, ``"20 GB"``: three significant digits below 10 GB, whole GB above."""
    return f"{size_bytes / GIB:.3g} GB" if size_bytes < 10 * GIB else f"{size_bytes / GIB:.0f} GB"


@dataclass(frozen=True)
class LayerUsage:
    """What ``du`` found: apparent bytes, allocated bytes (blocks), inodes."""

    apparent_bytes: int
    allocated_bytes: int
    inodes: int

    @property
    def charged(self) -> int:
        """The size held against the limit (see the module docstring)."""
        return max(self.apparent_bytes, self.allocated_bytes, self.inodes * INODE_CHARGE)


@dataclass(frozen=True)
class Cadence:
    """Seconds between checks, at least ``min_interval`` and at most ``max_interval``;
    ``assumed_rate`` (bytes/s) is the growth assumed when none faster was seen."""

    min_interval: float = 1.0
    max_interval: float = 60.0
    assumed_rate: float = 200 * MIB


def hard_cap(limit_bytes: int) -> int:
    """The most a layer may ever hold or a restore write: the limit plus the larger of the
    limit and 1 GB."""
    return limit_bytes + max(limit_bytes, GIB)


def run_ceiling(limit_bytes: int, baseline_bytes: int | None) -> int:
    """What the layer may reach in this run. ``baseline_bytes`` is its size when the run
    began (after any restore); None when unknown (a hub that adopted a running container),
    which gives no cleanup allowance."""
    if baseline_bytes is None or baseline_bytes <= limit_bytes:
        return limit_bytes
    return min(baseline_bytes + CLEANUP_ALLOWANCE, hard_cap(limit_bytes))


def over_limit_reason(
    usage: LayerUsage, limit_bytes: int, ceiling_bytes: int, whose: str = WORKSPACE_FILES
) -> str | None:
    """The ``errored`` reason when ``usage`` passed the run's ceiling, else None."""
    if usage.charged <= ceiling_bytes:
        return None
    if ceiling_bytes <= limit_bytes:
        return f"disk limit: {whose} passed {format_size(limit_bytes)}; /data is separate"
    size, limit = format_size(usage.charged), format_size(limit_bytes)
    return (
        f"disk limit: {whose} are {size}, over the {limit} limit, and grew after the "
        "start; delete files outside /data to get below the limit (/data is separate)"
    )


def next_check_in(usage_bytes: int, ceiling_bytes: int, rate: float, cadence: Cadence) -> float:
    """Seconds until the next measurement (see the module docstring). ``rate`` is the growth
    observed since the last one (bytes/s; negative or 0 when it shrank or stayed)."""
    headroom = ceiling_bytes - usage_bytes
    if headroom <= 0:
        return cadence.min_interval
    seconds = headroom / max(rate, cadence.assumed_rate) / 2
    return min(cadence.max_interval, max(cadence.min_interval, seconds))


def restore_refusal(logical_bytes: int, limit_bytes: int, checkpoint: str) -> str | None:
    """Why a checkpoint is too big to restore under the model's limit (None if it is not)."""
    if logical_bytes <= hard_cap(limit_bytes):
        return None
    size, limit = format_size(logical_bytes), format_size(limit_bytes)
    return (
        f"restore_checkpoint: checkpoint {checkpoint} holds {size} of files, far more than "
        f"the resource model's disk limit ({limit}), "
        "and restoring it would write all of it to the host's disk; choose an earlier "
        "checkpoint with the option restore_checkpoint, or 'none' for the image as built"
    )


async def measure(upper_dir: str, limit_s: float = 120) -> LayerUsage:
    """:class:`LayerUsage` of ``upper_dir`` (three ``du`` walks, see the module docstring).
    Raises OSError when ``du`` gives no total (e.g. the directory is gone)."""

    async def total(*options: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            "du",
            "-s",
            "-x",
            *options,
            "--",
            upper_dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise OSError(f"du {upper_dir} took more than {limit_s:g} s") from None
        # du exits 1 when files vanish while it walks (a running container): the total stands
        fields = out.split()
        if not fields or not fields[0].isdigit():
            raise OSError(f"du {upper_dir} failed: {err.decode(errors='replace').strip()}")
        return int(fields[0])

    apparent = await total("-B1", "--apparent-size")
    allocated = await total("-B1")
    inodes = await total("--inodes")
    return LayerUsage(apparent, allocated, inodes)


class WritableLayerWatch(LoggingConfigurable):
    """How the hub and the clusters service watch writable layers (``c.WritableLayerWatch``)."""

    min_interval = Float(
        1.0,
        help="""Seconds between measurements of a layer close to its limit, e.g. 1. How far a
        container can pass its limit: what it writes in this time plus one measurement.""",
    ).tag(config=True)
    max_interval = Float(
        60.0, help="Seconds between measurements of a layer far below its limit, e.g. 60."
    ).tag(config=True)
    assumed_write_rate_mb = Float(
        200.0,
        help="""MB/s a container is assumed able to write when planning the next measurement
        (the faster observed rate wins), e.g. 200.""",
    ).tag(config=True)
    concurrency = Integer(2, help="Measurements (du walks) at once in this process, e.g. 2.").tag(
        config=True
    )
    timeout = Float(120.0, help="Seconds one measurement may take, e.g. 120.").tag(config=True)

    @validate("min_interval", "max_interval", "assumed_write_rate_mb", "timeout")
    def _positive(self, proposal):
        if not (proposal.value > 0 and math.isfinite(proposal.value)):
            raise ValueError(f"{proposal.trait.name} must be above 0, e.g. 1; got {proposal.value}")
        return proposal.value

    @validate("concurrency")
    def _at_least_one(self, proposal):
        if proposal.value < 1:
            raise ValueError(f"concurrency must be at least 1, e.g. 2; got {proposal.value}")
        return proposal.value

    _slots: dict[int, asyncio.Semaphore] = {}

    @property
    def cadence(self) -> Cadence:
        return Cadence(
            self.min_interval,
            max(self.min_interval, self.max_interval),
            self.assumed_write_rate_mb * MIB,
        )

    async def usage(self, upper_dir: str) -> LayerUsage:
        """Measure ``upper_dir`` (at most ``concurrency`` at once in this process)."""
        slots = WritableLayerWatch._slots.setdefault(
            id(asyncio.get_running_loop()), asyncio.Semaphore(self.concurrency)
        )
        async with slots:
            return await measure(upper_dir, self.timeout)
