"""Container CPU use from the cgroup files Docker keeps, read for many containers at once.

``docker stats`` costs one API call (and a one-second sampling wait) per container; the same
figures are plain files under ``/sys/fs/cgroup``, so a pass reads every workspace's usage in
one go. Supported layouts: cgroup v1 (``cpuacct.usage`` in nanoseconds, CFS quota/period) and
cgroup v2 (``cpu.stat`` ``usage_usec``, ``cpu.max``), with Docker's ``cgroupfs`` or
``systemd`` driver. :class:`CpuWindow` turns successive samples into the share of the
container's CPU limit used over a window.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSample", "CpuWindow", "read_cpu"]


@dataclass(frozen=True)
class CpuSample:
    """CPU time a container used since it started (``used_s``) and its limit in CPUs."""

    used_s: float
    limit_cpus: float


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _v1(root: Path, container_id: str, host_cpus: float) -> CpuSample | None:
    for parent in ("docker", f"system.slice/docker-{container_id}.scope"):
        base = f"{parent}/{container_id}" if parent == "docker" else parent
        usage = _read(root / "cpuacct" / base / "cpuacct.usage")
        if usage is None:
            continue
        quota = _read(root / "cpu" / base / "cpu.cfs_quota_us")
        period = _read(root / "cpu" / base / "cpu.cfs_period_us")
        limit = host_cpus
        if quota and period and int(quota) > 0:
            limit = int(quota) / int(period)
        return CpuSample(int(usage) / 1e9, limit)
    return None


def _v2(root: Path, container_id: str, host_cpus: float) -> CpuSample | None:
    for base in (f"system.slice/docker-{container_id}.scope", f"docker/{container_id}"):
        stat = _read(root / base / "cpu.stat")
        if stat is None:
            continue
        fields = dict(line.split() for line in stat.splitlines() if line.strip())
        limit = host_cpus
        quota, _, period = (_read(root / base / "cpu.max") or "max").strip().partition(" ")
        if quota != "max" and period:
            limit = int(quota) / int(period)
        return CpuSample(int(fields["usage_usec"]) / 1e6, limit)
    return None


def read_cpu(
    container_ids: list[str], root: str | os.PathLike = "/sys/fs/cgroup", host_cpus: float = 0
) -> dict[str, CpuSample]:
    """``{container id: CpuSample}`` for each container whose cgroup files exist (full ids).

    Containers without a CPU quota count the host's CPUs (``host_cpus``, default
    ``os.cpu_count()``) as their limit. Missing containers are left out.
    """
    root = Path(root)
    host_cpus = host_cpus or float(os.cpu_count() or 1)
    unified = (root / "cgroup.controllers").exists()
    reader = _v2 if unified else _v1
    samples = {}
    for container_id in container_ids:
        sample = reader(root, container_id, host_cpus)
        if sample is not None:
            samples[container_id] = sample
    return samples


class CpuWindow:
    """The share of its CPU limit a container used over the last ``window_s`` seconds.

    :meth:`add` takes a sample at a monotonic time; :meth:`share` is the use between the
    oldest sample still inside the window and the newest, as a fraction of the limit (0..1,
    may exceed 1 briefly when a limit changes), or None until two samples at least
    ``min_span_s`` apart exist (unknown counts as busy for the idle rule).
    """

    def __init__(self, window_s: float, min_span_s: float = 1.0):
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._samples: deque[tuple[float, CpuSample]] = deque()

    def add(self, at: float, sample: CpuSample) -> None:
        if self._samples and sample.used_s < self._samples[-1][1].used_s:
            self._samples.clear()  # a new container under the same key: start over
        self._samples.append((at, sample))
        # keep one sample at or before the window's start, so the window is fully covered
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window_s:
            self._samples.popleft()

    def share(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span < self.min_span_s or last.limit_cpus <= 0:
            return None
        return max(0.0, (last.used_s - first.used_s) / (span * last.limit_cpus))
