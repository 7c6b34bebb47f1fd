"""The spawner's activity journal: every action on a workspace, with who caused it.

A mixin of :class:`~bench_spawner.spawner.BenchSpawner`. The journal is a file the hub appends
to (:class:`benchhub.activity_journal.ActivityJournal`, fsynced, so an action is recorded even
while the lifecycle service, which copies it into the activity log, is down). The actor of an
entry is the request being served (:attr:`action_request`: see :mod:`.actors`) unless the
caller names one; admins who entered someone else's workspace are :attr:`visitors` until they
log out or the run ends.
"""

from __future__ import annotations

import asyncio

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from benchhub.activity_journal import ActivityJournal

from .actors import HUB, ActionRequest

__all__ = ["WorkspaceActivity"]


class WorkspaceActivity(LoggingConfigurable):
    activity_journal = Unicode(
        "",
        help="""File the hub appends workspace activity to, one JSON line per action (created,
        started, stopped, errored, edited, deleted, shares, admin entries, moves: the list is
        benchhub.activity_journal.ACTIONS, described in docs/api.md); the lifecycle service
        copies it into its activity log. "" = keep no activity log. Example:
        /var/lib/benchhub/hub/activity.jsonl""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The request behind the action in progress, for the activity journal: a start takes
        # it from the requesting handler; BenchHub's handlers set it on this very object
        # (user.spawners[name], the one JupyterHub stops and deletes) for a stop or delete.
        self.action_request: ActionRequest | None = None
        # Names of people other than the owner who entered this workspace (OAuth) and have not
        # left: hub memory, so a hub restart forgets them and writes no "exited" for them.
        self.visitors: set[str] = set()

    async def record_activity(
        self, action: str, description: str, fields=None, actor: str | None = None
    ) -> None:
        """Append an entry to the activity journal (if configured) for this workspace, with
        ``actor``, else the actor of the request being served (:attr:`action_request`), else
        ``hub``."""
        if not self.activity_journal:
            return
        actor = actor or (self.action_request or HUB).actor
        journal = ActivityJournal(self.activity_journal)
        project = (self.user_options or {}).get("project", "")
        await asyncio.to_thread(
            journal.record,
            action,
            self.user.name,
            self.name,
            actor,
            description,
            fields,
            project=project if isinstance(project, str) else "",
        )

    def _note_start_request(self) -> None:
        """The request that asked for this start (JupyterHub sets ``handler``; None without)
        becomes the actor of the start's journal entries (started, moved, errored)."""
        asker = getattr(self.handler, "current_user", None) if self.handler else None
        self.action_request = ActionRequest.by(asker, self.user.name)

    def _take_request(self) -> ActionRequest:
        """The request that caused this action (or :data:`~.actors.HUB`), forgetting it."""
        request, self.action_request = self.action_request or HUB, None
        return request

    def _by(self, verb: str) -> str:
        return (self.action_request or HUB).describe(verb)

    async def record_visitors_left(self, why: str, visitor: str | None = None) -> None:
        """Journal that ``visitor`` (else every admin inside, :attr:`visitors`) left this
        workspace, ``why``."""
        leaving = {visitor} & self.visitors if visitor else set(self.visitors)
        self.visitors -= leaving
        for name in sorted(leaving):
            await self.record_activity(
                "admin-exited", f"{name} left ({why})", actor=f"admin:{name}"
            )
