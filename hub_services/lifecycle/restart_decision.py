"""Whether a workspace that died with the Docker engine or the host is started again (pure).

The hub records such a run's end in the activity log (``bench_spawner/reboot_recovery.py``):
action ``errored``, actor ``hub``, and in ``fields`` the evidence (``interrupted_by``:
"host" or "engine") and ``restart``: true when the hub found the run dead in a poll, false
when a person's stop found it so. :func:`decide_restart` says whether that entry is due for a
start now; the lifecycle service's pass (:mod:`.restarts`) carries it out. Tested by a table of
cases in tests/unit/test_restart_decision.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RestartDecision", "decide_restart", "is_interruption", "same_end"]


@dataclass(frozen=True)
class RestartDecision:
    """``due``: start the workspace again now; ``why``: the reason either way (for logs)."""

    due: bool
    why: str


def is_interruption(entry: dict) -> bool:
    """Whether an activity entry is the hub's record of a run that died with the engine."""
    fields = entry.get("fields") or {}
    return (
        entry.get("action") == "errored"
        and entry.get("actor") == "hub"
        and fields.get("interrupted_by") in ("host", "engine")
    )


def same_end(entry: dict) -> bool:
    """Whether an entry after the interruption is the hub's own record of that same end (the
    checkpoint of the dead container failed: the next start saves it), not an action."""
    return entry.get("actor") == "hub" and entry.get("action") == "errored"


def decide_restart(
    entry: dict, later: list[dict], active: bool, now: datetime, within: timedelta
) -> RestartDecision:
    """Decide on the interruption ``entry`` of a workspace whose activity entries after it
    are ``later`` and that is ``active`` (running or pending in the hub) or not.

    Due only when nothing happened to the workspace since (a person's start, stop, edit or
    delete; an earlier restart, whose own entry is then among ``later``), it does not run,
    the hub asked for it, and the interruption is at most ``within`` old (0: never)."""
    if not is_interruption(entry):
        return RestartDecision(False, "not a run that died with the engine or the host")
    if (entry.get("fields") or {}).get("restart") is not True:
        return RestartDecision(False, "a stop was asked for when it was found dead")
    if not all(same_end(e) for e in later):
        return RestartDecision(False, "the workspace was acted on since (or already restarted)")
    if active:
        return RestartDecision(False, "it runs or starts already")
    if within <= timedelta(0):
        return RestartDecision(False, "starting interrupted workspaces again is switched off")
    at = entry.get("at")
    if not isinstance(at, datetime) or now - at > within:
        return RestartDecision(False, f"the interruption is more than {within} old")
    cause = entry["fields"]["interrupted_by"]
    return RestartDecision(True, f"it was running when the {cause} restarted")
