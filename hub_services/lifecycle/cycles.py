"""What the lifecycle service must remember per workspace across its own restarts.

Everything else (running or not, activity, options) is observed again on each pass; this is
the part that cannot be: which reminders went out and which actions were done in the current
run ("cycle"), the run time carried over a security restart, and an action in flight.

One row per workspace in ``workspace_cycles`` (same database as the activity log), written in
a transaction; an action is recorded as *pending* before the service calls the hub and as
*done* after, so a service killed in between finishes that same action on restart instead of
forgetting it or doing a second one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, replace

import sqlalchemy as sa

__all__ = ["Cycle", "CycleStore"]

_metadata = sa.MetaData()
_cycles = sa.Table(
    "workspace_cycles",
    _metadata,
    sa.Column("key", sa.String(200), primary_key=True),  # "<user>/<workspace>"
    sa.Column("record", sa.Text, nullable=False),  # Cycle as JSON
)


@dataclass(frozen=True)
class Cycle:
    """One run of a workspace: from the hub's ``started`` until it stops.

    ``carried_over_s`` is run time from before a security restart (counts toward the
    after-start shutdown); ``pending`` is the action in flight (``{"event_id", "action",
    "reason", "phase"}``) or None; ``carry_next`` is what the run started by our restart
    inherits (``{"after": ISO time, "carried_over_s": float}``); ``skipped`` the last reason
    the policy could not be read (logged once, not every pass).
    """

    started: str
    carried_over_s: float = 0.0
    reminders_sent: tuple[str, ...] = ()
    actions_done: tuple[str, ...] = ()
    pending: dict | None = None
    carry_next: dict | None = None
    skipped: str = ""

    def with_reminder(self, reminder_id: str) -> Cycle:
        return replace(self, reminders_sent=(*self.reminders_sent, reminder_id)[-50:])

    def with_done(self, event_id: str) -> Cycle:
        return replace(self, actions_done=(*self.actions_done, event_id)[-50:], pending=None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Cycle:
        data = json.loads(text)
        data["reminders_sent"] = tuple(data.get("reminders_sent", ()))
        data["actions_done"] = tuple(data.get("actions_done", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CycleStore:
    """Rows of :class:`Cycle` by workspace key. Blocking; safe from any one thread at a time."""

    url: str
    _engine: sa.Engine = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        args = {"timeout": 10} if self.url.startswith("sqlite") else {}
        self._engine = sa.create_engine(self.url, connect_args=args)
        _metadata.create_all(self._engine)

    def all(self) -> dict[str, Cycle]:
        with self._lock, self._engine.connect() as conn:
            rows = conn.execute(sa.select(_cycles)).all()
        return {row.key: Cycle.from_json(row.record) for row in rows}

    def save(self, key: str, cycle: Cycle) -> None:
        with self._lock, self._engine.begin() as conn:
            updated = conn.execute(
                _cycles.update().where(_cycles.c.key == key).values(record=cycle.to_json())
            ).rowcount
            if not updated:
                conn.execute(_cycles.insert().values(key=key, record=cycle.to_json()))

    def forget(self, key: str) -> None:
        with self._lock, self._engine.begin() as conn:
            conn.execute(_cycles.delete().where(_cycles.c.key == key))

    def close(self) -> None:
        self._engine.dispose()
