"""The lifecycle service's activity store on a real SQLite file: idempotent appends, the
append-only guarantee, filters and pages, and an ingest of the hub's journal that neither
loses nor duplicates an entry whatever crashes or tears in between."""

import json
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchhub.activity_journal import ActivityJournal
from hub_services.lifecycle import activity_log as store
from hub_services.lifecycle.activity_log import ActivityLog

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def entry(at=T0, **changes):
    base = {
        "uid": uuid.uuid4().hex,
        "at": at,
        "user": "alice",
        "workspace": "ws1",
        "actor": "alice",
        "action": "started",
        "description": "Started",
        "fields": {},
        "project": "",
    }
    return {**base, **changes}


@pytest.fixture
def log(tmp_path):
    activity = ActivityLog(f"sqlite:///{tmp_path / 'activity.sqlite'}")
    yield activity
    activity.close()


@pytest.fixture
def journal(tmp_path):
    return ActivityJournal(tmp_path / "activity.jsonl")


def uids(log, **filters):
    entries, _ = log.query(limit=1000, **filters)
    return [e["uid"] for e in entries]


# --- appends --------------------------------------------------------------------------------


def test_appending_the_same_entry_twice_stores_it_once(log):
    first = entry()
    assert log.append(first) is True
    assert log.append(first) is False
    assert log.has(first["uid"]) and not log.has("0" * 32)
    assert log.query() == ([{**first, "at": T0}], 1)


def test_append_many_skips_stored_and_repeated_uids(log):
    old, new = entry(), entry(T0 + H)
    log.append(old)
    assert log.append_many([old, new, new, entry(T0 + 2 * H)]) == 2
    assert log.query()[1] == 3


def test_a_malformed_entry_in_a_batch_inserts_nothing(log):
    with pytest.raises(ValueError, match="entry at must be an aware datetime"):
        log.append_many([entry(), entry(at=datetime(2025, 3, 1, 8, 0))])
    assert log.query() == ([], 0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"uid": ""}, "uid and action must not be empty"),
        ({"user": None}, "entry user must be text"),
        ({"at": "yesterday"}, "entry at must be an aware datetime"),
        ({"fields": "x"}, "entry fields must be a mapping"),
    ],
)
def test_a_malformed_entry_names_its_field(log, changes, message):
    with pytest.raises(ValueError, match=message):
        log.append(entry(**changes))


def test_times_come_back_aware_in_utc_whatever_zone_they_went_in(log):
    plus_two = datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    log.append(entry(at=plus_two, uid="a" * 32))
    log.append(entry(at="2025-03-01T09:00:00-01:00", uid="b" * 32))
    entries, _ = log.query()
    assert [e["at"] for e in entries] == [T0 + 2 * H, T0]
    assert all(e["at"].tzinfo is UTC for e in entries)


def test_the_store_is_append_only_even_for_raw_sql(log):
    log.append(entry(description="Started"))
    for statement in ("UPDATE activity SET description = 'forged'", "DELETE FROM activity"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"), log.engine.begin() as c:
            c.execute(sa.text(statement))
    assert [e["description"] for e in log.query()[0]] == ["Started"]
    assert not any(hasattr(log, name) for name in ("update", "delete", "remove"))


def test_postgresql_gets_equivalent_triggers_and_no_sqlite_sql():
    emitted = []
    engine = sa.create_mock_engine(
        "postgresql+psycopg://", lambda sql, *a, **k: emitted.append(str(sql.compile(engine)))
    )
    store.metadata.create_all(engine, checkfirst=False)
    ddl = "\n".join(emitted)
    assert "RAISE EXCEPTION 'activity is append-only'" in ddl
    assert "BEFORE UPDATE OR DELETE ON activity" in ddl
    assert "BEFORE TRUNCATE ON activity" in ddl
    assert "RAISE(ABORT" not in ddl


@pytest.mark.parametrize(
    "url, message",
    [("sqlite://", "must name a SQLite file"), ("mysql://u@h/db", "sqlite:/// or postgresql")],
)
def test_unsupported_urls_are_refused(url, message):
    with pytest.raises(ValueError, match=message):
        ActivityLog(url)


def test_the_database_uses_wal(log):
    with log.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_concurrent_threads_can_share_one_store(log):
    def work():
        for _ in range(50):
            log.append(entry())
            log.query(user="alice", limit=5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.query()[1] == 200


# --- query ----------------------------------------------------------------------------------


@pytest.fixture
def seeded(log):
    rows = [
        entry(T0, uid="a1", user="alice", workspace="ws1", action="created"),
        entry(T0 + H, uid="a2", user="alice", workspace="ws1", action="started"),
        entry(T0 + 2 * H, uid="a3", user="alice", workspace="ws2", action="started"),
        entry(T0 + 3 * H, uid="b1", user="bob", workspace="ws1", action="started"),
        entry(T0 + 3 * H, uid="b2", user="bob", workspace="ws1", action="stopped"),
    ]
    log.append_many(rows)
    return log


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, ["b2", "b1", "a3", "a2", "a1"]),
        ({"user": "alice"}, ["a3", "a2", "a1"]),
        ({"user": "alice", "workspace": "ws1"}, ["a2", "a1"]),
        ({"workspace": "ws1", "action": "started"}, ["b1", "a2"]),
        ({"since": T0 + H}, ["b2", "b1", "a3", "a2"]),
        ({"until": T0 + H}, ["a1"]),
        ({"since": T0 + H, "until": T0 + 3 * H}, ["a3", "a2"]),
        ({"user": "carol"}, []),
    ],
)
def test_filters_select_newest_first(seeded, filters, expected):
    entries, total = seeded.query(**filters)
    assert [e["uid"] for e in entries] == expected
    assert total == len(expected)


def test_pages_partition_the_results_and_keep_the_total(seeded):
    pages = [seeded.query(offset=offset, limit=2) for offset in (0, 2, 4, 6)]
    assert [[e["uid"] for e in page] for page, _ in pages] == [
        ["b2", "b1"],
        ["a3", "a2"],
        ["a1"],
        [],
    ]
    assert {total for _, total in pages} == {5}


@pytest.mark.parametrize(
    "paging, message",
    [
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"limit": 1001}, "limit must be a whole number from 1 to 1000"),
        ({"offset": -1}, "offset must be a whole number >= 0"),
        ({"since": datetime(2025, 3, 1)}, "since must be a timezone-aware datetime"),
    ],
)
def test_bad_query_arguments_raise(log, paging, message):
    with pytest.raises(ValueError, match=message):
        log.query(**paging)


# --- ingest ---------------------------------------------------------------------------------


def test_ingest_copies_each_journal_entry_once(log, journal):
    written = [journal.record("started", "alice", "ws1", "alice", "Started") for _ in range(3)]
    assert log.ingest(journal.path) == 3
    assert log.ingest(journal.path) == 0
    assert log.journal_offset(journal.path) == journal.path.stat().st_size
    assert sorted(uids(log)) == sorted(e["uid"] for e in written)


def test_ingest_of_a_missing_journal_is_nothing(log, tmp_path):
    assert log.ingest(tmp_path / "none.jsonl") == 0
    assert log.journal_offset(tmp_path / "none.jsonl") == 0


def test_ingest_leaves_a_torn_line_and_skips_a_corrupt_one(log, journal):
    first = journal.record("created", "alice", "ws1", "alice", "Created")
    with open(journal.path, "ab") as f:
        f.write(b"garbage\n" + b'{"uid": "half')
    assert log.ingest(journal.path) == 1
    assert log.journal_offset(journal.path) == journal.path.stat().st_size - len(b'{"uid": "half')
    later = journal.record("started", "alice", "ws1", "alice", "Started")  # glued to the tear
    assert log.ingest(journal.path) == 1
    assert sorted(uids(log)) == sorted([first["uid"], later["uid"]])


def test_ingest_reads_a_replaced_shorter_journal_from_the_start(log, journal):
    old = [journal.record("started", "alice", "ws1", "alice", "x" * 100) for _ in range(3)]
    log.ingest(journal.path)
    journal.path.unlink()
    new = journal.record("stopped", "alice", "ws1", "alice", "Stopped")
    assert log.ingest(journal.path) == 1
    assert log.journal_offset(journal.path) == journal.path.stat().st_size
    assert sorted(uids(log)) == sorted(e["uid"] for e in [*old, new])


def test_ingest_in_small_chunks_commits_as_it_goes(log, journal):
    log.ingest_chunk_bytes = 500
    written = [journal.record("started", "u", "w", "u", f"entry {i}") for i in range(40)]
    assert log.ingest(journal.path) == 40
    assert sorted(uids(log)) == sorted(e["uid"] for e in written)


class CrashesBeforeCommit(ActivityLog):
    """Fails once after the entries are inserted, before the offset and commit."""

    crashes = 1

    def _store_offset(self, conn, key, offset):
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("crash between read and commit")
        super()._store_offset(conn, key, offset)


def test_a_crash_before_commit_loses_and_duplicates_nothing(tmp_path, journal):
    log = CrashesBeforeCommit(f"sqlite:///{tmp_path / 'activity.sqlite'}")
    written = [journal.record("started", "u", "w", "u", "Started") for _ in range(5)]
    with pytest.raises(RuntimeError, match="crash between read and commit"):
        log.ingest(journal.path)
    assert log.query() == ([], 0) and log.journal_offset(journal.path) == 0
    assert log.ingest(journal.path) == 5
    assert sorted(uids(log)) == sorted(e["uid"] for e in written)


def test_a_failing_commit_loses_and_duplicates_nothing(log, journal):
    written = [journal.record("started", "u", "w", "u", "Started") for _ in range(5)]
    failures = [RuntimeError("disk I/O error at commit")]

    def fail_once(_conn):
        if failures:
            raise failures.pop()

    sa.event.listen(log.engine, "commit", fail_once)
    with pytest.raises(RuntimeError, match="at commit"):
        log.ingest(journal.path)
    assert log.query()[1] == 0 and log.journal_offset(journal.path) == 0
    assert log.ingest(journal.path) == 5 and log.ingest(journal.path) == 0
    assert sorted(uids(log)) == sorted(e["uid"] for e in written)


KILLED_MID_INGEST = """
import os, sys
from hub_services.lifecycle.activity_log import ActivityLog

class KilledBeforeCommit(ActivityLog):
    def _store_offset(self, conn, key, offset):
        super()._store_offset(conn, key, offset)
        os._exit(9)  # like kill -9: no rollback, no cleanup

KilledBeforeCommit(sys.argv[1]).ingest(sys.argv[2])
"""


def test_a_process_killed_mid_ingest_loses_and_duplicates_nothing(tmp_path, journal):
    url = f"sqlite:///{tmp_path / 'activity.sqlite'}"
    written = [journal.record("started", "u", "w", "u", "Started") for _ in range(5)]
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_INGEST, url, str(journal.path)])
    assert killed.returncode == 9
    log = ActivityLog(url)
    assert log.query()[1] == 0 and log.journal_offset(journal.path) == 0
    assert log.ingest(journal.path) == 5
    assert sorted(uids(log)) == sorted(e["uid"] for e in written)


# --- ingest, any interleaving ---------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.integers(1, 3)),
        st.tuples(st.just("tear"), st.floats(0.05, 0.95)),
        st.tuples(st.just("ingest"), st.booleans()),
    ),
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_ingest_stores_exactly_the_complete_recorded_entries(tmp_path_factory, operations):
    """Records, writes torn half-way (a line cut short at the end of the file) and ingests,
    some crashing before commit, in any order: after each ingest the store holds exactly the
    entries whose lines were completely written."""
    tmp = tmp_path_factory.mktemp("ingest")
    journal = ActivityJournal(tmp / "activity.jsonl")
    log = CrashesBeforeCommit(f"sqlite:///{tmp / 'activity.sqlite'}")
    log.ingest_chunk_bytes, log.crashes = 700, 0
    complete = set()
    for operation, arg in operations:
        if operation == "record":
            complete |= {journal.record("started", "u", "w", "u", "S")["uid"] for _ in range(arg)}
        elif operation == "tear":
            _torn_record(journal, arg)
        else:
            log.crashes = int(arg)
            try:
                log.ingest(journal.path)
            except RuntimeError:
                pass
            log.crashes = 0
            log.ingest(journal.path)
            assert set(uids(log)) == complete and log.query()[1] == len(complete)
    log.ingest(journal.path)
    assert set(uids(log)) == complete and log.query()[1] == len(complete)
    log.close()


def _torn_record(journal, fraction):
    """Record an entry, then cut its line short: a write that never completed."""
    size = journal.path.stat().st_size if journal.path.exists() else 0
    line = json.dumps(journal.record("started", "u", "w", "u", "torn")).encode()
    with open(journal.path, "r+b") as f:
        f.truncate(size + max(1, int(len(line) * fraction)))


def test_a_store_from_before_projects_gains_the_project_column_and_stays_append_only(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as conn:  # the table as the release before projects created it
        conn.execute(
            sa.text(
                "CREATE TABLE activity (id INTEGER PRIMARY KEY AUTOINCREMENT, uid VARCHAR NOT NULL "
                "UNIQUE, at DATETIME NOT NULL, user VARCHAR NOT NULL, workspace VARCHAR NOT NULL, "
                "actor VARCHAR NOT NULL, action VARCHAR NOT NULL, description TEXT NOT NULL, "
                "fields JSON NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER activity_no_update BEFORE UPDATE ON activity "
                "BEGIN SELECT RAISE(ABORT, 'activity is append-only'); END"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO activity (uid, at, user, workspace, actor, action, description, "
                "fields) VALUES ('old1', '2025-03-01 08:00:00.000000', 'alice', 'ws1', 'alice', "
                "'started', 'Started', '{}')"
            )
        )
    old.dispose()
    log = ActivityLog(f"sqlite:///{path}")
    try:
        log.append(entry(T0 + timedelta(hours=1), uid="new1", project="genomics"))
        assert [e["project"] for e in log.query()[0]] == ["genomics", ""]
        assert [e["uid"] for e in log.query(project="")[0]] == ["old1"]
        with pytest.raises(sa.exc.DatabaseError), log.engine.begin() as conn:
            conn.execute(sa.text("UPDATE activity SET project = 'x'"))
    finally:
        log.close()
    assert ActivityLog(f"sqlite:///{path}").query(project="genomics")[1] == 1  # reopened: no-op
