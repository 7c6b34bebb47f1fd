"""The lifecycle service's append-only activity store, and its ingest of the hub's journal.

:class:`ActivityLog` keeps every workspace action (the "Activity" tab: date, actor,
description) in one table, ``activity``, on SQLite (WAL) or PostgreSQL, through SQLAlchemy.
Rows are only ever inserted: the class has no update or delete, and database triggers refuse
UPDATE and DELETE (and TRUNCATE on PostgreSQL) from anyone else. Each entry carries a ``uid``;
inserting a ``uid`` already present is a no-op, so every write is idempotent.

:meth:`ActivityLog.ingest` copies new complete lines of the hub's journal
(:mod:`benchhub.activity_journal`) and records how far it read in ``journal_offsets``,
both in one transaction: a crash at any moment neither loses nor duplicates an entry.

Every method blocks (run them in the service's executor) and may be called from any thread:
one lock serialises them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url

from benchhub.activity_journal import read_from

__all__ = ["MAX_LIMIT", "ActivityLog"]

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_TEXT_KEYS = ("uid", "user", "workspace", "actor", "action", "description")
_BUSY_TIMEOUT_MS = 10_000


class UTCDateTime(sa.TypeDecorator):
    """A timezone-aware UTC datetime on every backend: stored as naive UTC on SQLite (whose
    fixed-width text sorts in time order), as ``timestamptz`` on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"a timezone-aware datetime is needed, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
activity = sa.Table(
    "activity",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String, nullable=False, unique=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("user", sa.String, nullable=False),
    sa.Column("workspace", sa.String, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    # the workspace's project ("" = personal); added after the first release (see _migrate)
    sa.Column("project", sa.String, nullable=False, server_default=""),
    sa.Index("ix_activity_user_workspace_at", "user", "workspace", "at"),
    sa.Index("ix_activity_action_at", "action", "at"),
    sa.Index("ix_activity_project_at", "project", "at"),
)
journal_offsets = sa.Table(
    "journal_offsets",
    metadata,
    sa.Column("path", sa.String, primary_key=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
)

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER activity_no_{op.lower()} BEFORE {op} ON activity "
    "BEGIN SELECT RAISE(ABORT, 'activity is append-only'); END"
    for op in ("UPDATE", "DELETE")
]
# Not exercised by the unit tests (no PostgreSQL here): only checked to be emitted for it.
_POSTGRESQL_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION activity_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'activity is append-only'; END $$",
    "CREATE TRIGGER activity_append_only BEFORE UPDATE OR DELETE ON activity "
    "FOR EACH ROW EXECUTE FUNCTION activity_append_only()",
    "CREATE TRIGGER activity_no_truncate BEFORE TRUNCATE ON activity "
    "FOR EACH STATEMENT EXECUTE FUNCTION activity_append_only()",
]
for _dialect, _statements in (("sqlite", _SQLITE_TRIGGERS), ("postgresql", _POSTGRESQL_TRIGGERS)):
    for _statement in _statements:
        sa.event.listen(activity, "after_create", sa.DDL(_statement).execute_if(dialect=_dialect))
_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class ActivityLog:
    """The activity store at the SQLAlchemy ``url`` (``sqlite:///path`` or a PostgreSQL URL
    with an installed driver); creates its tables on first use.

    Entries are dicts with ``uid``, ``at`` (aware datetime, or ISO 8601 text with a timezone
    on input), ``user``, ``workspace``, ``actor``, ``action``, ``description`` and ``fields``
    (a JSON mapping). Results always carry ``at`` as an aware UTC datetime.
    """

    #: about how many journal bytes one ingest transaction reads
    ingest_chunk_bytes = 4 * 1024 * 1024

    def __init__(self, url: str):
        parsed = make_url(url)
        dialect = parsed.get_backend_name()
        if dialect not in _INSERT:
            raise ValueError(f"url must be a sqlite:/// or postgresql:// URL, got {dialect!r}")
        if dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise ValueError("url must name a SQLite file, e.g. sqlite:////srv/activity.sqlite")
        self.engine = sa.create_engine(url, pool_pre_ping=dialect != "sqlite")
        if dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._insert_stmt = _INSERT[dialect](activity).on_conflict_do_nothing(
            index_elements=["uid"]
        )
        self._lock = threading.Lock()
        metadata.create_all(self.engine)
        _migrate(self.engine)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def append(self, entry: dict) -> bool:
        """Insert ``entry``; False (and nothing written) if its ``uid`` is already stored.
        A malformed entry raises :class:`ValueError` naming the field."""
        return self.append_many([entry]) == 1

    def append_many(self, entries: Iterable[dict]) -> int:
        """Insert the entries in one transaction, skipping ``uid``\\ s already stored (or
        repeated in ``entries``); the number inserted. A malformed entry raises
        :class:`ValueError` and nothing is inserted."""
        rows = [_row(entry) for entry in entries]
        with self._lock, self.engine.begin() as conn:
            return self._insert(conn, rows)

    def has(self, uid: str) -> bool:
        """Whether an entry with ``uid`` is stored."""
        with self._lock, self.engine.connect() as conn:
            found = conn.execute(sa.select(activity.c.id).where(activity.c.uid == uid))
            return found.first() is not None

    def query(
        self,
        user: str | None = None,
        workspace: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
        project: str | None = None,
    ) -> tuple[list[dict], int]:
        """One page of the matching entries, newest first (``at``, then insertion order),
        and how many match in all. ``None`` filters are not applied; ``since`` is inclusive,
        ``until`` exclusive (both aware). ``offset`` >= 0 and 1 <= ``limit`` <= 1000, else
        :class:`ValueError`."""
        _check_page(offset, limit)
        where = _filters(user, workspace, action, since, until)
        if project is not None:
            where.append(activity.c.project == project)
        page = (
            sa.select(activity)
            .where(*where)
            .order_by(activity.c.at.desc(), activity.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        count = sa.select(sa.func.count()).select_from(activity).where(*where)
        with self._lock, self.engine.connect() as conn:
            total = conn.scalar(count)
            rows = conn.execute(page).mappings().all()
        return [_entry(row) for row in rows], total

    def journal_offset(self, path: str | os.PathLike) -> int:
        """The byte offset up to which the journal at ``path`` has been ingested (0 if never)."""
        with self._lock, self.engine.connect() as conn:
            return self._offset(conn, _key(path))

    def ingest(self, path: str | os.PathLike) -> int:
        """Copy the journal's new complete lines into the store; the number of new entries.

        Each chunk's entries and the new offset are committed in one transaction, so a crash
        at any moment leaves both before or both after it. A journal shorter than the stored
        offset has been replaced: it is read again from the start (known uids are skipped).
        Corrupt lines are logged and skipped by :func:`read_from`.
        """
        key, inserted = _key(path), 0
        while True:
            with self._lock, self.engine.begin() as conn:
                stored = self._offset(conn, key)
                start = stored if _size(path) >= stored else self._restart(key, stored)
                entries, end = read_from(path, start, self.ingest_chunk_bytes)
                inserted += self._insert(conn, [_row(entry) for entry in entries])
                if end != stored:
                    self._store_offset(conn, key, end)
            if end == start:
                return inserted

    def _insert(self, conn: Connection, rows: list[dict]) -> int:
        return sum(conn.execute(self._insert_stmt, row).rowcount for row in rows)

    def _offset(self, conn: Connection, key: str) -> int:
        stored = conn.scalar(
            sa.select(journal_offsets.c.offset).where(journal_offsets.c.path == key)
        )
        return stored or 0

    def _store_offset(self, conn: Connection, key: str, offset: int) -> None:
        upsert = _INSERT[conn.dialect.name](journal_offsets).values(path=key, offset=offset)
        conn.execute(upsert.on_conflict_do_update(index_elements=["path"], set_={"offset": offset}))

    @staticmethod
    def _restart(key: str, stored: int) -> int:
        log.warning("activity journal %s is shorter than offset %d: re-reading it", key, stored)
        return 0


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL (readers never block the writer), a busy timeout instead of "database is locked",
    and fsync at every commit (as the hub's journal does)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _key(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def _size(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _row(entry: dict) -> dict:
    """The table row of ``entry``, or ValueError naming the bad field."""
    if not isinstance(entry, dict):
        raise ValueError(f"an entry must be a mapping, got {entry!r}")
    row = {}
    for key in _TEXT_KEYS:
        if not isinstance(entry.get(key), str):
            raise ValueError(f"entry {key} must be text, got {entry.get(key)!r}")
        row[key] = entry[key]
    if not row["uid"] or not row["action"]:
        raise ValueError(f"entry uid and action must not be empty, got {entry!r}")
    row["at"] = _aware_utc(entry.get("at"))
    fields = entry.get("fields", {})
    if not isinstance(fields, dict):
        raise ValueError(f"entry fields must be a mapping, got {fields!r}")
    row["fields"] = fields
    project = entry.get("project", "")
    if not isinstance(project, str):
        raise ValueError(f"entry project must be text, got {project!r}")
    row["project"] = project
    return row


def _aware_utc(value: object) -> datetime:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if not isinstance(parsed, datetime) or parsed.utcoffset() is None:
        raise ValueError(f"entry at must be an aware datetime or ISO 8601 text, got {value!r}")
    return parsed.astimezone(UTC)


def _entry(row) -> dict:
    return {key: row[key] for key in ("uid", "at", *_TEXT_KEYS[1:], "fields", "project")}


def _migrate(engine: sa.Engine) -> None:
    """Bring a store made by an earlier release up to this table: add the ``project`` column
    (every older entry belongs to a personal project, "") and its index. Adding a column is
    not an UPDATE, so the append-only triggers stay as they are."""
    columns = {column["name"] for column in sa.inspect(engine).get_columns("activity")}
    if "project" in columns:
        return
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE activity ADD COLUMN project VARCHAR NOT NULL DEFAULT ''"))
        conn.execute(sa.text("CREATE INDEX ix_activity_project_at ON activity (project, at)"))
    log.info("activity store: added the project column")


def _check_page(offset: int, limit: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a whole number >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")


def _filters(user, workspace, action, since, until) -> list:
    where = [
        activity.c[name] == value
        for name, value in (("user", user), ("workspace", workspace), ("action", action))
        if value is not None
    ]
    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if since is not None:
        where.append(activity.c.at >= since)
    if until is not None:
        where.append(activity.c.at < until)
    return where
