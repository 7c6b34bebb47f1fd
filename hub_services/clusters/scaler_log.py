"""The auto scaler's log, ``/data/logs/sge-scaler.log`` inside the workspace (as ICA Bench has it).

The service writes it on the host, in the directory bind-mounted at the workspace's ``/data``,
owned by the workspace user (uid 1000, gid 100) so the user can read, rotate or delete it. One
line per event: ``2026-01-31T18:00:00Z <what happened>``. A log that cannot be written (the
workspace's ``/data`` went away) costs a warning in the service log, never a scale operation.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from datetime import datetime
from pathlib import Path

from bench_spawner.storage import DATA_GID, DATA_UID

__all__ = ["LOG_IN_DATA", "ScalerLog"]

LOG_IN_DATA = "logs/sge-scaler.log"  # relative to /data

log = logging.getLogger("benchhub.clusters")


class ScalerLog:
    """The log file of one cluster; ``data_dir`` is the host path behind the workspace's /data."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / LOG_IN_DATA

    def append(self, at: datetime, lines: list[str]) -> None:
        """Append ``lines`` stamped with ``at`` (UTC). Blocking: call it in a thread."""
        if not lines:
            return
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self._ensure()
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(f"{stamp} {line}\n" for line in lines))
        except OSError as e:
            log.warning("cannot write the scaler log %s: %s", self.path, e)

    def _ensure(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        if os.geteuid() == 0:
            for path in (self.path.parent, self.path):
                if path.stat().st_uid == 0:
                    os.chown(path, DATA_UID, DATA_GID)

    def tail(self, count: int = 20) -> list[str]:
        """The last ``count`` lines (without newlines); [] when there is no log."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return [line.rstrip("\n") for line in deque(f, maxlen=count)]
        except OSError:
            return []
