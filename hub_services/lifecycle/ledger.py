"""The usage ledger's store: run intervals and storage periods, keyed and idempotent.

Two tables next to ``activity`` in the lifecycle service's database (SQLite or PostgreSQL,
through SQLAlchemy), created on first use:

- ``usage_runs``: one row per run of a container, keyed by ``(container_id, start_us)`` (the
  engine's ``State.StartedAt``, in microseconds since the epoch): the same run observed twice
  (an event and a reconciliation, two service processes, a replay after a crash) is one row.
  ``stop_us`` is NULL while it runs and is set once: the first recorded end wins, and how it
  was known is in ``stop_source`` (see :mod:`.run_evidence`). Who and what: ``kind``
  (workspace, cluster-manager, cluster-member), ``user``, ``workspace``, ``project`` ("" =
  personal), ``resource_model`` ("" for cluster nodes), ``cpus``, ``memory_gb``, ``gpus``,
  and ``scratch_gb``: a cluster member's own ``/scratch`` (its allocation, 0: none), which is
  storage for as long as the run lasts (:meth:`Ledger.storage` gives it as a storage period).
- ``usage_storage``: a workspace's allocated ``/data`` GB from ``start_us`` until ``stop_us``
  (NULL: still allocated), keyed by ``(user, workspace, start_us)``; a change of size or
  project closes the period and opens the next.

Times are whole microseconds (integers sort and compare the same on every backend). Every
method blocks (run them in the service's executor) and may be called from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from .activity_log import _sqlite_pragmas, activity

__all__ = ["KINDS", "Ledger", "ObservedRun", "OpenRun", "to_us"]

KINDS = ("workspace", "cluster-manager", "cluster-member")

metadata = sa.MetaData()
usage_runs = sa.Table(
    "usage_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("container_id", sa.String, nullable=False),
    sa.Column("start_us", sa.BigInteger, nullable=False),
    sa.Column("stop_us", sa.BigInteger, nullable=True),
    sa.Column("stop_source", sa.String, nullable=False, server_default=""),
    sa.Column("seen_us", sa.BigInteger, nullable=False),  # last seen running
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("container_name", sa.String, nullable=False),
    sa.Column("user", sa.String, nullable=False),
    sa.Column("workspace", sa.String, nullable=False),
    sa.Column("project", sa.String, nullable=False, server_default=""),
    sa.Column("resource_model", sa.String, nullable=False, server_default=""),
    sa.Column("cpus", sa.Float, nullable=False),
    sa.Column("memory_gb", sa.Float, nullable=False),
    sa.Column("gpus", sa.Integer, nullable=False),
    sa.Column("scratch_gb", sa.Float, nullable=False, server_default="0"),
    sa.UniqueConstraint("container_id", "start_us", name="uq_usage_runs_run"),
    # covers the usage query: a year of everyone's runs is read from the index alone
    sa.Index(
        "ix_usage_runs_period",
        "start_us",
        "stop_us",
        "user",
        "workspace",
        "project",
        "resource_model",
        "cpus",
        "memory_gb",
        "gpus",
    ),
    sa.Index("ix_usage_runs_user_start", "user", "start_us"),
    sa.Index("ix_usage_runs_project_start", "project", "start_us"),
    sa.Index("ix_usage_runs_open", "stop_us"),
)
# the members' scratch as storage periods: only runs with scratch, read by their times
_SCRATCH = usage_runs.c.scratch_gb > 0
scratch_index = sa.Index(
    "ix_usage_runs_scratch",
    usage_runs.c.start_us,
    usage_runs.c.stop_us,
    sqlite_where=_SCRATCH,
    postgresql_where=_SCRATCH,
)
usage_storage = sa.Table(
    "usage_storage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user", sa.String, nullable=False),
    sa.Column("workspace", sa.String, nullable=False),
    sa.Column("project", sa.String, nullable=False, server_default=""),
    sa.Column("gb", sa.Float, nullable=False),
    sa.Column("start_us", sa.BigInteger, nullable=False),
    sa.Column("stop_us", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("user", "workspace", "start_us", name="uq_usage_storage_period"),
    sa.Index("ix_usage_storage_open", "stop_us"),
)
_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_DAY_US = 86_400 * 1_000_000
_GROUP_COLUMNS = {"user": ("user",), "workspace": ("user", "workspace"), "project": ("project",)}


def to_us(seconds: float) -> int:
    """POSIX seconds as whole microseconds (how the ledger stores times)."""
    return round(seconds * 1_000_000)


@dataclass(frozen=True)
class ObservedRun:
    """A run as the engine shows it (built by :func:`.run_evidence.observed_run`)."""

    container_id: str
    container_name: str
    kind: str
    user: str
    workspace: str
    resource_model: str
    cpus: float
    memory_gb: float
    gpus: int
    start_us: int
    scratch_gb: float = 0.0  # a cluster member's /scratch allocation (the recorder reads it)


@dataclass(frozen=True)
class OpenRun:
    """A run the ledger holds as still running."""

    container_id: str
    start_us: int
    seen_us: int
    kind: str
    user: str
    workspace: str
    project: str


class Ledger:
    """The ledger at the SQLAlchemy ``url`` (the lifecycle service's ``db_url``)."""

    def __init__(self, url: str):
        dialect = make_url(url).get_backend_name()
        if dialect not in _INSERT:
            raise ValueError(f"url must be a sqlite:/// or postgresql:// URL, got {dialect!r}")
        self.engine = sa.create_engine(url, pool_pre_ping=dialect != "sqlite")
        if dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._insert = _INSERT[dialect]
        self._lock = threading.Lock()
        metadata.create_all(self.engine)
        self._add_scratch_column()

    def _add_scratch_column(self) -> None:
        """A ledger made before members' scratch was counted gets its column (0: none) and
        index; its old runs stay as they were recorded."""
        with self.engine.begin() as conn:
            columns = {column["name"] for column in sa.inspect(conn).get_columns("usage_runs")}
            if "scratch_gb" not in columns:
                conn.execute(
                    sa.text("ALTER TABLE usage_runs ADD COLUMN scratch_gb FLOAT NOT NULL DEFAULT 0")
                )
            scratch_index.create(conn, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    # ---- runs ----------------------------------------------------------------------------------

    def open_run(self, run: ObservedRun, project: str, seen_us: int) -> bool:
        """Record ``run`` as running (seen at ``seen_us``); False if it is already recorded
        (then only its last-seen time moves on, and its project while it is open). An older
        run of the same container still open ended no later than this one began: it is closed
        there (source ``restarted``), so one container never has two open runs."""
        row = {
            "container_id": run.container_id,
            "start_us": run.start_us,
            "seen_us": max(seen_us, run.start_us),
            "kind": run.kind,
            "container_name": run.container_name,
            "user": run.user,
            "workspace": run.workspace,
            "project": project,
            "resource_model": run.resource_model,
            "cpus": run.cpus,
            "memory_gb": run.memory_gb,
            "gpus": run.gpus,
            "scratch_gb": run.scratch_gb,
        }
        insert = (
            self._insert(usage_runs)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["container_id", "start_us"])
        )
        c = usage_runs.c
        with self._lock, self.engine.begin() as conn:
            added = conn.execute(insert).rowcount == 1
            conn.execute(
                sa.update(usage_runs)
                .where(c.container_id == run.container_id, c.start_us < run.start_us)
                .where(c.stop_us.is_(None))
                .values(stop_us=run.start_us, stop_source="restarted")
            )
            if not added:
                seen = sa.case((c.seen_us < row["seen_us"], row["seen_us"]), else_=c.seen_us)
                # a scratch not readable at the first observation is taken from a later one
                scratch = sa.case(
                    (c.scratch_gb < run.scratch_gb, run.scratch_gb), else_=c.scratch_gb
                )
                conn.execute(
                    sa.update(usage_runs)
                    .where(c.container_id == run.container_id, c.start_us == run.start_us)
                    .where(c.stop_us.is_(None))
                    .values(seen_us=seen, project=project, scratch_gb=scratch)
                )
        return added

    def close_run(self, container_id: str, stop_us: int, source: str) -> int:
        """End the open run(s) of ``container_id`` at ``stop_us`` (never before a run's start),
        saying how that was known; the number closed (0: none was open, e.g. a second
        report of the same end: the first one stays)."""
        c = usage_runs.c
        stop = sa.case((c.start_us > stop_us, c.start_us), else_=stop_us)
        with self._lock, self.engine.begin() as conn:
            return conn.execute(
                sa.update(usage_runs)
                .where(c.container_id == container_id, c.stop_us.is_(None))
                .values(stop_us=stop, stop_source=source)
            ).rowcount

    def open_runs(self) -> list[OpenRun]:
        """Every run still open."""
        c = usage_runs.c
        query = sa.select(
            c.container_id, c.start_us, c.seen_us, c.kind, c.user, c.workspace, c.project
        ).where(c.stop_us.is_(None))
        with self._lock, self.engine.connect() as conn:
            return [OpenRun(*row) for row in conn.execute(query)]

    def mark_seen(self, container_ids: Iterable[str], seen_us: int) -> None:
        """The open runs of ``container_ids`` were seen running at ``seen_us``."""
        ids = list(container_ids)
        if not ids:
            return
        c = usage_runs.c
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                sa.update(usage_runs)
                .where(c.container_id.in_(ids), c.stop_us.is_(None), c.seen_us < seen_us)
                .values(seen_us=seen_us)
            )

    def journal_time(
        self, user: str, workspace: str, actions: tuple[str, ...], after_us: int
    ) -> int | None:
        """When the activity log first records one of ``actions`` (e.g. stopped, errored) for
        ``user``'s ``workspace`` at or after ``after_us``; None if it does not (yet)."""
        after = datetime.fromtimestamp(after_us / 1_000_000, UTC)
        a = activity.c
        query = sa.select(sa.func.min(a.at)).where(
            a.user == user,
            a.workspace == workspace,
            a.action.in_(actions),
            a.at >= after,
        )
        with self._lock, self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("activity"):
                return None
            found = conn.scalar(query)
        if found is None:
            return None
        if isinstance(found, str):  # SQLite's MIN() returns the stored text, untyped
            found = datetime.fromisoformat(found)
        if found.tzinfo is None:
            found = found.replace(tzinfo=UTC)
        return to_us(found.timestamp())

    def runs(
        self,
        since_us: int,
        until_us: int,
        user: str | None = None,
        project: str | None = None,
        workspace: str | None = None,
    ) -> list:
        """The runs overlapping ``[since_us, until_us)``, as rows with the attributes
        :func:`.usage.usage` reads (``start``/``stop`` in seconds)."""
        c = usage_runs.c
        query = sa.select(
            c.user,
            c.workspace,
            c.project,
            c.resource_model,
            c.cpus,
            c.memory_gb,
            c.gpus,
            (c.start_us / 1_000_000.0).label("start"),
            (c.stop_us / 1_000_000.0).label("stop"),
        ).where(c.start_us < until_us, sa.or_(c.stop_us.is_(None), c.stop_us > since_us))
        query = query.where(*_who(c, user, project, workspace))
        with self._lock, self.engine.connect() as conn:
            return conn.execute(query).all()

    def run_pieces(
        self,
        since_us: int,
        end_us: int,
        group_by: str,
        user: str | None = None,
        project: str | None = None,
    ) -> list:
        """The runs within ``[since_us, end_us)`` summed in the database, for
        :func:`.usage.add_pieces`: one row per group with its columns, what a rate depends on
        (``resource_model``, ``cpus``, ``memory_gb``, ``gpus``) and ``seconds`` of clipped run
        time; for "day" and "month" instead per first and last UTC day of the clipped runs
        (``first_day``, ``last_day``, days since the epoch), with ``runs`` (how many) and the
        sums of their start and end within those days (``first_offset``, ``last_offset``, in
        seconds), which :func:`.usage.day_pieces` spreads over the days exactly."""
        c = usage_runs.c
        lo = sa.case((c.start_us < since_us, since_us), else_=c.start_us)
        hi = sa.case((sa.or_(c.stop_us.is_(None), c.stop_us > end_us), end_us), else_=c.stop_us)
        where = [
            c.start_us < end_us,
            sa.or_(c.stop_us.is_(None), c.stop_us > since_us),
            *_who(c, user, project, None),
        ]
        priced = [c.resource_model, c.cpus, c.memory_gb, c.gpus]
        if group_by in ("day", "month"):
            first, last = lo // _DAY_US, (hi - 1) // _DAY_US
            query = (
                sa.select(
                    first.label("first_day"),
                    last.label("last_day"),
                    *priced,
                    sa.func.count().label("runs"),
                    (sa.func.sum(lo - first * _DAY_US) / 1_000_000.0).label("first_offset"),
                    (sa.func.sum(hi - last * _DAY_US) / 1_000_000.0).label("last_offset"),
                )
                .where(*where)
                .group_by(first, last, *priced)
            )
        else:
            columns = [c[name] for name in _GROUP_COLUMNS[group_by]]
            seconds = sa.func.sum((hi - lo) / 1_000_000.0).label("seconds")
            query = sa.select(*columns, *priced, seconds).where(*where).group_by(*columns, *priced)
        with self._lock, self.engine.connect() as conn:
            return conn.execute(query).all()

    def run_rows(self) -> list[dict]:
        """Every run row as a dict (for tests and checks)."""
        with self._lock, self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.select(usage_runs)).mappings()]

    # ---- storage -------------------------------------------------------------------------------

    def storage_now(self) -> dict[tuple[str, str], tuple[float, str, int]]:
        """``{(user, workspace): (gb, project, start_us)}`` of every open storage period."""
        c = usage_storage.c
        query = sa.select(c.user, c.workspace, c.gb, c.project, c.start_us).where(
            c.stop_us.is_(None)
        )
        with self._lock, self.engine.connect() as conn:
            return {(u, w): (gb, p, s) for u, w, gb, p, s in conn.execute(query)}

    def last_storage_end(self, user: str, workspace: str) -> int | None:
        """When the workspace's last closed storage period ended (None: it never had one)."""
        c = usage_storage.c
        query = sa.select(sa.func.max(c.stop_us)).where(c.user == user, c.workspace == workspace)
        with self._lock, self.engine.connect() as conn:
            return conn.scalar(query)

    def set_storage(self, user: str, workspace: str, project: str, gb: float, at_us: int) -> bool:
        """The workspace holds ``gb`` for ``project`` from ``at_us``: nothing changes if its
        open period says the same, else that period ends at ``at_us`` and a new one begins.
        True if a period began."""
        c = usage_storage.c
        with self._lock, self.engine.begin() as conn:
            current = conn.execute(
                sa.select(c.gb, c.project, c.start_us).where(
                    c.user == user, c.workspace == workspace, c.stop_us.is_(None)
                )
            ).first()
            if current is not None and (current.gb, current.project) == (gb, project):
                return False
            if current is not None:
                at_us = max(at_us, current.start_us)
                conn.execute(
                    sa.update(usage_storage)
                    .where(c.user == user, c.workspace == workspace, c.stop_us.is_(None))
                    .values(stop_us=at_us)
                )
            insert = self._insert(usage_storage).values(
                user=user, workspace=workspace, project=project, gb=gb, start_us=at_us
            )
            conn.execute(
                insert.on_conflict_do_nothing(index_elements=["user", "workspace", "start_us"])
            )
            return True

    def end_storage(self, user: str, workspace: str, at_us: int) -> None:
        """The workspace's ``/data`` is gone (deleted) from ``at_us``."""
        c = usage_storage.c
        stop = sa.case((c.start_us > at_us, c.start_us), else_=at_us)
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                sa.update(usage_storage)
                .where(c.user == user, c.workspace == workspace, c.stop_us.is_(None))
                .values(stop_us=stop)
            )

    def storage(
        self,
        since_us: int,
        until_us: int,
        user: str | None = None,
        project: str | None = None,
        workspace: str | None = None,
    ) -> list:
        """The storage periods overlapping ``[since_us, until_us)`` (seconds, as :func:`runs`):
        the workspaces' ``/data`` and, for each run of a cluster member with a ``/scratch``,
        its scratch for the run's time (attributed to the member's workspace and project)."""
        queries = []
        for table, gb in (
            (usage_storage, usage_storage.c.gb),
            (usage_runs, usage_runs.c.scratch_gb),
        ):
            c = table.c
            query = sa.select(
                c.user,
                c.workspace,
                c.project,
                gb.label("gb"),
                (c.start_us / 1_000_000.0).label("start"),
                (c.stop_us / 1_000_000.0).label("stop"),
            ).where(c.start_us < until_us, sa.or_(c.stop_us.is_(None), c.stop_us > since_us))
            if table is usage_runs:
                query = query.where(_SCRATCH)
            queries.append(query.where(*_who(c, user, project, workspace)))
        with self._lock, self.engine.connect() as conn:
            return conn.execute(sa.union_all(*queries)).all()

    # ---- totals (the Prometheus series) --------------------------------------------------------

    def totals(self, now_us: int) -> tuple[list, float, float]:
        """Everything the ledger holds, summed: ``(runs, data_gb_seconds,
        scratch_gb_seconds)``; ``runs`` has one row per ``kind`` with ``seconds``,
        ``cpu_seconds``, ``memory_gb_seconds`` and ``gpu_seconds``. A run still open counts
        until it was last seen running (what a ``last-seen`` end would give it), a ``/data``
        period still open until ``now_us``."""
        r, s = usage_runs.c, usage_storage.c
        run_us = sa.func.coalesce(r.stop_us, r.seen_us) - r.start_us
        data_us = sa.func.coalesce(s.stop_us, now_us) - s.start_us

        def seconds(factor=None):
            value = run_us if factor is None else factor * run_us
            return sa.func.coalesce(sa.func.sum(value), 0) / 1_000_000.0

        runs = sa.select(
            r.kind,
            seconds().label("seconds"),
            seconds(r.cpus).label("cpu_seconds"),
            seconds(r.memory_gb).label("memory_gb_seconds"),
            seconds(r.gpus).label("gpu_seconds"),
        ).group_by(r.kind)
        scratch = sa.select(seconds(r.scratch_gb)).where(_SCRATCH)
        data = sa.select(sa.func.coalesce(sa.func.sum(s.gb * data_us), 0) / 1_000_000.0)
        with self._lock, self.engine.connect() as conn:
            return conn.execute(runs).all(), conn.scalar(data), conn.scalar(scratch)

    # ---- bulk (the benchmark's synthetic year) -------------------------------------------------

    def insert_runs(self, rows: list[dict]) -> None:
        """Insert complete run rows at once (keys as the table's columns; known keys skipped)."""
        insert = self._insert(usage_runs).on_conflict_do_nothing(
            index_elements=["container_id", "start_us"]
        )
        with self._lock, self.engine.begin() as conn:
            conn.execute(insert, rows)


def _who(c, user, project, workspace) -> list:
    return [
        c[name] == value
        for name, value in (("user", user), ("project", project), ("workspace", workspace))
        if value is not None
    ]
