"""The egress service's Prometheus series (``/services/egress/metrics``, docs/metrics.md).

``benchhub_egress_refusals_total{protocol}``: requests of restricted workspaces the proxy
refused (not on the workspace's whitelist, or to a forbidden destination), ``https`` (a
CONNECT: only the host is visible) or ``http``. Only restricted workspaces use the proxy, so
there is no access-mode label; the destination host is not a label either (unbounded: the
refusals API shows hosts per workspace to those who may see them).

The count comes from squid's access log: every full pass reads what was appended since the
last one (:meth:`EgressMetrics.read_access_log`), following a rotation (the rest of the
rotated file first), at most :data:`MAX_READ_BYTES` a pass (the rest the next pass). A
restarted service starts at the log's end: counters start again at 0, as Prometheus expects of
a restarted process.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from benchhub.file_tail import open_regular_file
from benchhub.service_metrics import zeroed

from .policy import parse_access_log

__all__ = ["MAX_READ_BYTES", "PROTOCOLS", "EgressMetrics"]

PROTOCOLS = ("https", "http")
MAX_READ_BYTES = 8 * 1024 * 1024
LOG, ROTATED = "access.log", "access.log.0"  # squid's names (logfile_rotate 1)


class EgressMetrics:
    """The series in their own ``registry``, counted from the access logs in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike):
        self.log_dir = Path(log_dir)
        self.registry = CollectorRegistry()
        self.refusals = zeroed(
            Counter(
                "benchhub_egress_refusals_total",
                "Requests of restricted workspaces the egress proxy refused, by protocol.",
                ["protocol"],
                registry=self.registry,
            ),
            PROTOCOLS,
        )
        self._position: tuple[int, int] | None = None  # (inode, offset) counted up to

    def read_access_log(self) -> int:
        """Count the refusals logged since the last call; the number counted. The first call
        only notes where the log ends. Blocking. The files are squid's, in a directory the
        proxy container writes: a link or a non-regular file there is not read."""
        fd = _open(self.log_dir / LOG)
        if fd is None:
            return 0
        try:
            inode, size = os.fstat(fd).st_ino, os.fstat(fd).st_size
            if self._position is None:
                self._position = (inode, size)
                return 0
            seen, offset = self._position
            budget, lines = MAX_READ_BYTES, []
            if inode != seen:  # rotated: the rest of the previous file (now ROTATED) first
                rotated = _open(self.log_dir / ROTATED)
                if rotated is not None:
                    try:
                        if os.fstat(rotated).st_ino == seen:
                            old, _ = _whole_lines(rotated, offset, budget)
                            lines += old
                            budget -= sum(len(line) + 1 for line in old)
                    finally:
                        os.close(rotated)
                offset = 0
            elif size < offset:  # truncated
                offset = 0
            new, offset = _whole_lines(fd, offset, max(0, budget))
            self._position = (inode, offset)
        finally:
            os.close(fd)
        return self.count(lines + new)

    def count(self, lines: list[str]) -> int:
        """Count the refusals among access-log ``lines``; the number counted."""
        counted = 0
        for line in lines:
            if parse_access_log([line]):
                fields = line.split()
                self.refusals.labels("https" if fields[3] == "CONNECT" else "http").inc()
                counted += 1
        return counted


def _open(path: Path) -> int | None:
    try:
        return open_regular_file(path)
    except OSError:  # missing, or not a regular file
        return None


def _whole_lines(fd: int, offset: int, limit: int) -> tuple[list[str], int]:
    """The complete lines from ``offset`` (at most ``limit`` bytes) and the offset after the
    last one: a line squid is still writing is read next time."""
    data = os.pread(fd, limit, offset)
    end = data.rfind(b"\n") + 1
    text = data[:end].decode(errors="replace")
    return text.splitlines(), offset + end
