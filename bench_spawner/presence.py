"""Who is in a workspace: who used its server in the last few minutes, from the hub's records.

Everyone who opens a workspace's server in a browser goes through the hub's OAuth: the hub
issues them a token for that server's OAuth client (``orm.APIToken.client_id`` is the
spawner's ``oauth_client_id``) and records the token's ``last_activity`` whenever the server
asks the hub who a request is from. Those records are in the hub's database, so who is in
survives a hub restart. Someone whose share was revoked has no such token any more (the
revocation deletes it) and so is not listed.

:func:`present` is the pure part (who, with which standing, seen when); :func:`who_is_in`
reads the hub's database; :class:`WorkspacePresence` holds the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jupyterhub import orm
from traitlets import Integer
from traitlets.config import LoggingConfigurable

__all__ = ["Visit", "WorkspacePresence", "present", "presence_of", "who_is_in"]


@dataclass(frozen=True)
class Visit:
    """One person's use of a workspace: ``who`` is ``owner``, ``admin`` (a site or project
    administrator in someone else's workspace, logged) or ``collaborator``; ``last_seen``
    is aware UTC."""

    name: str
    who: str
    last_seen: datetime

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "who": self.who,
            "last_seen": self.last_seen.isoformat().replace("+00:00", "Z"),
        }


def present(
    seen: Iterable[tuple[str, datetime | None]],
    owner: str,
    now: datetime,
    window: timedelta,
    is_admin: Callable[[str], bool],
) -> list[Visit]:
    """Who used the workspace within ``window`` before ``now``: ``seen`` holds (user name,
    last activity of one of their tokens, aware UTC or None for never used) pairs; each
    person once, with their latest time, most recent first (ties by name). ``is_admin(name)``
    says whether someone other than the owner is there as an administrator."""
    latest: dict[str, datetime] = {}
    for name, at in seen:
        if at is None or now - at > window:
            continue
        if name not in latest or at > latest[name]:
            latest[name] = at
    visits = [
        Visit(
            name,
            "owner" if name == owner else "admin" if is_admin(name) else "collaborator",
            at,
        )
        for name, at in latest.items()
    ]
    return sorted(visits, key=lambda v: (-v.last_seen.timestamp(), v.name))


def _aware(at: datetime | None) -> datetime | None:
    # the hub stores naive UTC
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def who_is_in(
    db, orm_spawner, window: timedelta, is_admin: Callable[[str], bool], now=None
) -> list[Visit]:
    """:func:`present` for ``orm_spawner`` from the hub's OAuth tokens of its server."""
    if not orm_spawner.oauth_client_id:
        return []
    tokens = (
        db.query(orm.APIToken)
        .filter(orm.APIToken.client_id == orm_spawner.oauth_client_id)
        .filter(orm.APIToken.user_id.isnot(None))
    )
    seen = [(t.user.name, _aware(t.last_activity or t.created)) for t in tokens]
    now = now or datetime.now(UTC)
    return present(seen, orm_spawner.user.name, now, window, is_admin)


class WorkspacePresence(LoggingConfigurable):
    """How far back "who is in a workspace" looks."""

    window_seconds = Integer(
        900,
        min=60,
        help="""Who is in a workspace lists everyone who used its server within this many
        seconds (the home page, the workspace's details and GET /hub/api/bench/workspaces
        show them). The hub notes a person's activity at most every 30 s
        (JupyterHub.activity_resolution), so shorter windows than a minute say little.
        Example: 900 (15 minutes).""",
    ).tag(config=True)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)


def presence_of(handler, orm_spawner) -> list[dict]:
    """Who is in ``orm_spawner``'s workspace, as the API gives it (a hub handler asks)."""
    from .share_rule import entry_decision  # reads projects; imported late, as handlers are

    def is_admin(name: str) -> bool:
        user = orm.User.find(handler.db, name)
        return user is not None and entry_decision(handler.db, user, orm_spawner).logged

    window = WorkspacePresence(config=handler.settings.get("config")).window
    return [v.as_json() for v in who_is_in(handler.db, orm_spawner, window, is_admin)]
