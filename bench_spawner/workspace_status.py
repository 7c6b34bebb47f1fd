"""What a user sees as a workspace's status, and why.

Statuses: ``starting``, ``running``, ``stopping``, ``stopped``, ``errored``. The live ones come
from JupyterHub's own spawner flags; ``stopped`` versus ``errored`` comes from the last outcome
record, a small JSON file in the workspace's host directory written when a run ends. The record
is written atomically (temp file + ``os.replace``), so a crash leaves the previous one readable.

The functions that turn Docker's container state into a sentence are pure and unit-tested.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchhub.atomic import atomic_write

RECORD_NAME = "status.json"


@dataclass(frozen=True)
class Outcome:
    """How the last run of a workspace ended: ``stopped`` or ``errored`` with a reason."""

    status: str
    reason: str
    at: str

    @classmethod
    def now(cls, status: str, reason: str = "") -> Outcome:
        return cls(status, reason, datetime.now(UTC).isoformat(timespec="seconds"))


def exit_reason(state: dict, memory_gb: float | None) -> str:
    """A sentence for a container that stopped on its own, from ``docker inspect``'s State.

    >>> exit_reason({"OOMKilled": True, "ExitCode": 137}, 8)
    'out of memory: limit 8 GB'
    """
    code = state.get("ExitCode")
    limit = f": limit {memory_gb:g} GB" if memory_gb else ""
    if state.get("OOMKilled"):
        return f"out of memory{limit}"
    if state.get("Error"):
        return f"container error: {state['Error']}"
    if code == 137:
        return f"killed (exit code 137, SIGKILL; out of memory is the usual cause{limit})"
    if code in (None, 0):
        return "the server exited by itself (exit code 0)"
    if code > 128:
        return f"killed by signal {code - 128} (exit code {code})"
    return f"the server exited with code {code}"


def describe_failure(error: BaseException) -> str:
    """A one-line reason for a start that failed."""
    # HTTPError and JupyterHub's SpawnException carry the sentence meant for people here
    text = (getattr(error, "log_message", None) or str(error)).strip() or type(error).__name__
    return text.splitlines()[0][:500]


def live_status(pending: str | None, ready: bool) -> str | None:
    """The status from JupyterHub's flags, or None when the workspace is not active."""
    if pending == "spawn":
        return "starting"
    if pending == "stop":
        return "stopping"
    if ready:
        return "running"
    return None


def status_report(
    live: str | None, outcome: Outcome | None, live_reason: str = "", checkpoint=None
) -> dict:
    """``{status, reason, since}`` as the workspaces API shows it, for any spawner.

    ``live`` is :func:`live_status`; ``outcome`` the last recorded one (its time is ``since``);
    ``live_reason`` a caveat of a live workspace (e.g. its egress proxy is down). A live
    workspace also carries ``checkpoint`` (``{}`` without). Not live: ``errored`` with the
    recorded reason, else ``stopped``.

    >>> status_report(None, Outcome("errored", "node lost", "t"))
    {'status': 'errored', 'reason': 'node lost', 'since': 't'}
    """
    since = outcome.at if outcome else None
    if live:
        return {
            "status": live,
            "reason": live_reason,
            "since": since,
            "checkpoint": checkpoint or {},
        }
    if outcome and outcome.status == "errored":
        return {"status": "errored", "reason": outcome.reason, "since": since}
    return {"status": "stopped", "reason": "", "since": since}


def read_outcome(workspace_dir: Path) -> Outcome | None:
    """The last recorded outcome, or None (never ran, or deleted)."""
    try:
        data = json.loads((workspace_dir / RECORD_NAME).read_text())
        return Outcome(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_outcome(workspace_dir: Path, outcome: Outcome) -> None:
    """Record an outcome atomically."""
    atomic_write(workspace_dir / RECORD_NAME, json.dumps(asdict(outcome)))
