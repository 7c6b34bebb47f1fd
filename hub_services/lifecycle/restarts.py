"""Workspaces that died with the Docker engine or the host are started again, once.

Each lifecycle pass (after copying the hub's journal) asks :meth:`InterruptedRestarts.due`
for the interruptions of the last ``within`` that :func:`~.restart_decision.decide_restart`
finds due, and launches :meth:`InterruptedRestarts.restart` for each: it first appends its own
activity entry (action ``restarting``, uid ``restart:<uid of the interruption>``), then asks
the hub to start the workspace with its stored options, as a person's start would (the hub
journals "started by service:lifecycle", or why the start failed). The entry is written
before the start and is idempotent by its uid, so a workspace is started again at most once
per interruption: by a second pass, a second service process, or a service killed between
the entry and the start (then it is not started; its entry says it was about to be).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from tornado.httpclient import HTTPClientError

from benchhub.hub_client import HubClient

from . import policy as policy_module
from .activity_log import MAX_LIMIT, ActivityLog
from .restart_decision import decide_restart, is_interruption

__all__ = ["InterruptedRestarts"]

ACTION = "restarting"
LOOK_AFTER = 50  # entries read after an interruption: any one that is an action is enough


class InterruptedRestarts:
    """Starts again the workspaces the hub found dead after an engine or host restart."""

    def __init__(self, activity_log: ActivityLog, hub: HubClient, actor: str, within: float, log):
        self.activity_log, self.hub, self.actor, self.log = activity_log, hub, actor, log
        self.within = timedelta(seconds=within)

    async def due(self, active: set[str]) -> list[tuple[str, Awaitable[None]]]:
        """``(user/workspace, restart coroutine)`` for each workspace due for a start;
        ``active`` holds the keys that run, start or have an action in flight."""
        if self.within <= timedelta(0):
            return []
        now = policy_module.utcnow()
        recent, _ = await asyncio.to_thread(
            self.activity_log.query, action="errored", since=now - self.within, limit=MAX_LIMIT
        )
        newest: dict[str, dict] = {}
        for entry in recent:  # newest first
            if is_interruption(entry):
                newest.setdefault(f"{entry['user']}/{entry['workspace']}", entry)
        found = []
        for key, entry in newest.items():
            since, _ = await asyncio.to_thread(
                self.activity_log.query,
                user=entry["user"],
                workspace=entry["workspace"],
                since=entry["at"],
                limit=LOOK_AFTER,
            )
            later = [e for e in since if e["uid"] != entry["uid"]]
            decision = decide_restart(entry, later, key in active, now, self.within)
            if decision.due:
                found.append((key, self.restart(entry, decision.why)))
        return found

    async def restart(self, interruption: dict, why: str) -> None:
        """Start the workspace of ``interruption`` again (once: see the module)."""
        user, workspace = interruption["user"], interruption["workspace"]
        entry = self._entry(interruption, "restart", f"starting it again: {why}")
        if not await asyncio.to_thread(self.activity_log.append, entry):
            return  # another pass or process took it
        self.log.info("%s/%s: starting it again (%s)", user, workspace, why)
        try:
            await self.hub.start_server(user, workspace)
        except HTTPClientError as e:
            body = e.response.body.decode(errors="replace")[:300] if e.response else str(e)
            self.log.warning("%s/%s: not started again: %s", user, workspace, body)
            failed = self._entry(interruption, "restart-failed", f"not started again: {body}")
            await asyncio.to_thread(self.activity_log.append, failed)

    def _entry(self, interruption: dict, kind: str, description: str) -> dict:
        return {
            "uid": f"{kind}:{interruption['uid']}",
            "at": policy_module.utcnow(),
            "user": interruption["user"],
            "workspace": interruption["workspace"],
            "actor": self.actor,
            "action": ACTION,
            "description": description,
            "fields": {"interruption": interruption["uid"]},
            "project": interruption.get("project", ""),
        }
