"""The auto scaler's log, ``/data/logs/sge-scaler.log`` inside the workspace (as ICA Bench has it).

The service writes it on the host, in the directory bind-mounted at the workspace's ``/data``
(through :mod:`.data_files`: a link the user puts there is not followed), owned by the
workspace user (uid 1000, gid 100) so the user can read, rotate or delete it. One
line per event: ``2026-01-31T18:00:00Z <what happened>``. A log that cannot be written (the
workspace's ``/data`` went away) costs a warning in the service log, never a scale operation.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from benchhub.file_tail import TAIL_BYTES
from benchhub.user_files import append_in_data, tail_in_data

__all__ = ["LOG_IN_DATA", "ScalerLog"]

LOG_IN_DATA = "logs/sge-scaler.log"  # relative to /data

log = logging.getLogger("benchhub.clusters")


class ScalerLog:
    """The log file of one cluster; ``data_dir`` is the host path behind the workspace's /data."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = os.fspath(data_dir)

    def append(self, at: datetime, lines: list[str]) -> None:
        """Append ``lines`` stamped with ``at`` (UTC). Blocking: call it in a thread."""
        if not lines:
            return
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            text = "".join(f"{stamp} {line}\n" for line in lines)
            append_in_data(self.data_dir, LOG_IN_DATA, text)
        except OSError as e:
            log.warning("cannot write the scaler log in %s: %s", self.data_dir, e)

    def tail(self, count: int = 20, max_bytes: int = TAIL_BYTES) -> list[str]:
        """The last ``count`` lines (without newlines) among the log's last ``max_bytes``
        bytes; [] when there is no log (or a link, a FIFO, ... in its place). Blocking: call
        it in a thread. The user owns the file and may make it any size: this reads at most
        ``max_bytes`` whatever the size, and never follows a link."""
        try:
            return tail_in_data(self.data_dir, LOG_IN_DATA, count, max_bytes)
        except OSError:
            return []
