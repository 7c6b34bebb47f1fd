"""The hub's activity journal: what a record writes, and what a reader makes of the file
after torn writes, corrupt lines and concurrent writers. Real files in ``tmp_path``."""

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from benchhub import activity_journal
from benchhub.activity_journal import ACTIONS, ActivityJournal, read_from

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path):
    return ActivityJournal(tmp_path / "journal" / "activity.jsonl")


def record(journal, action="started", **changes):
    args = {"user": "alice", "workspace": "ws1", "actor": "alice", "description": "Started"}
    return journal.record(action, **{**args, **changes})


# --- record ---------------------------------------------------------------------------------


def test_a_record_is_one_json_line_holding_the_whole_entry(journal):
    at = datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    entry = journal.record(
        "edited", "alice", "ws1", "admin", "Memory 8 → 16 GB", {"memory_gb": 16}, at=at
    )
    lines = journal.path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert json.loads(lines[0]) == entry
    assert entry == {
        "uid": entry["uid"],
        "at": "2025-03-01T08:00:00+00:00",
        "user": "alice",
        "workspace": "ws1",
        "actor": "admin",
        "action": "edited",
        "description": "Memory 8 → 16 GB",
        "fields": {"memory_gb": 16},
        "project": "",
    }
    assert len(entry["uid"]) == 32 and int(entry["uid"], 16) >= 0


def test_record_stamps_the_current_utc_time_and_unique_uids(journal, monkeypatch):
    monkeypatch.setattr(activity_journal, "utcnow", lambda: T0)
    first, second = record(journal), record(journal)
    assert first["at"] == second["at"] == T0.isoformat()
    assert first["uid"] != second["uid"]
    assert first["fields"] == {}


def test_the_journal_is_private_to_the_hub(journal):
    record(journal)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700


def test_each_record_is_a_single_write_of_the_whole_line_then_an_fsync(journal, monkeypatch):
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(
        os, "write", lambda fd, data: calls.append(("write", data)) or real_write(fd, data)
    )
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", None)) or real_fsync(fd))
    record(journal)  # creates the file: its directory is fsynced too
    record(journal, "stopped")
    writes = [data for call, data in calls if call == "write"]
    assert [call for call, _ in calls] == ["write", "fsync", "fsync", "write", "fsync"]
    assert b"".join(writes) == journal.path.read_bytes()
    assert all(data.endswith(b"\n") and data.count(b"\n") == 1 for data in writes)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"action": "rebooted"}, "action must be one of created, started"),
        ({"at": datetime(2025, 3, 1, 8, 0)}, "at must be a timezone-aware datetime"),
        ({"fields": {"when": T0}}, "fields must be a JSON-serialisable mapping"),
        ({"fields": ["a"]}, "fields must be a JSON-serialisable mapping"),
        ({"user": None}, "user must be text"),
        ({"description": 3}, "description must be text"),
    ],
)
def test_a_programming_error_raises_and_writes_nothing(journal, changes, message):
    with pytest.raises(ValueError, match=message):
        record(journal, **changes)
    assert not journal.path.exists()


def test_every_action_of_the_activity_tab_can_be_recorded(journal):
    for action in ACTIONS:
        record(journal, action)
    entries, _ = read_from(journal.path, 0)
    assert [e["action"] for e in entries] == list(ACTIONS)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_logged_and_never_fails_the_caller(caplog):
    full = ActivityJournal("/dev/full")  # every write fails with ENOSPC
    with caplog.at_level(logging.ERROR, logger="benchhub.activity_journal"):
        entry = full.record("started", "alice", "ws1", "alice", "Started")
    assert entry["action"] == "started"
    [logged] = caplog.records
    assert "could not record" in logged.getMessage() and logged.exc_info is not None


def test_an_unwritable_journal_is_logged_and_never_fails_the_caller(tmp_path, caplog):
    (tmp_path / "not-a-dir").write_text("")
    broken = ActivityJournal(tmp_path / "not-a-dir" / "activity.jsonl")
    with caplog.at_level(logging.ERROR, logger="benchhub.activity_journal"):
        entry = broken.record("created", "alice", "ws1", "alice", "Created")
    assert entry["action"] == "created"
    assert caplog.records[0].exc_info is not None


def test_concurrent_writers_never_interleave_lines(journal):
    def write_many(worker):
        for i in range(200):
            record(journal, description=f"worker {worker} entry {i} " + "x" * 300)

    threads = [threading.Thread(target=write_many, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries, offset = read_from(journal.path, 0)
    assert len(entries) == 1600 and len({e["uid"] for e in entries}) == 1600
    assert offset == journal.path.stat().st_size


# --- read_from ------------------------------------------------------------------------------


def test_reading_resumes_at_the_returned_offset(journal):
    first = [record(journal), record(journal, "stopped")]
    entries, offset = read_from(journal.path, 0)
    assert entries == first
    assert read_from(journal.path, offset) == ([], offset)
    later = record(journal, "deleted")
    assert read_from(journal.path, offset) == ([later], journal.path.stat().st_size)


def test_a_missing_journal_reads_as_empty(tmp_path):
    assert read_from(tmp_path / "nothing.jsonl", 0) == ([], 0)
    assert read_from(tmp_path / "nothing.jsonl", 17) == ([], 17)


def test_a_torn_last_line_waits_for_its_end(journal):
    done = record(journal)
    line = json.dumps({**done, "uid": "f" * 32}).encode() + b"\n"
    with open(journal.path, "ab") as f:
        f.write(line[:40])  # a writer mid-write
    entries, offset = read_from(journal.path, 0)
    assert entries == [done]
    assert offset == journal.path.stat().st_size - 40
    with open(journal.path, "ab") as f:
        f.write(line[40:])
    entries, end = read_from(journal.path, offset)
    assert [e["uid"] for e in entries] == ["f" * 32]
    assert end == journal.path.stat().st_size


@pytest.mark.parametrize(
    "corrupt",
    [
        b"not json at all",
        b"[1, 2]",
        b'{"uid": "a1"}',
        b'{"uid": "a1", "at": "2025-03-01T08:00:00", "user": "u", "workspace": "w", '
        b'"actor": "u", "action": "started", "description": "", "fields": {}}',
        b"\xff\xfe",
    ],
)
def test_a_corrupt_complete_line_is_logged_and_skipped(journal, caplog, corrupt):
    before = record(journal)
    with open(journal.path, "ab") as f:
        f.write(corrupt + b"\n")
    after = record(journal, "stopped")
    with caplog.at_level(logging.ERROR, logger="benchhub.activity_journal"):
        entries, offset = read_from(journal.path, 0)
    assert entries == [before, after]
    assert offset == journal.path.stat().st_size
    assert "corrupt line" in caplog.records[0].getMessage()


def test_an_entry_written_after_a_failed_half_write_is_recovered(journal):
    torn = json.dumps({**record(journal), "uid": "e" * 32}).encode()
    journal.path.write_bytes(torn[:50])  # the disk filled half-way through that write
    glued = record(journal, "stopped")  # later written straight after the fragment
    entries, offset = read_from(journal.path, 0)
    assert entries == [glued]
    assert offset == journal.path.stat().st_size


def test_a_line_longer_than_the_read_size_is_still_read(journal):
    long_entry = record(journal, description="y" * 5000)
    short = record(journal)
    entries, offset = read_from(journal.path, 0, max_bytes=100)
    assert entries == [long_entry]
    assert read_from(journal.path, offset, max_bytes=100)[0] == [short]


def test_small_reads_add_up_to_the_whole_journal(journal):
    written = [record(journal, description=f"entry {i}") for i in range(50)]
    got, offset = [], 0
    while True:
        entries, new = read_from(journal.path, offset, max_bytes=300)
        if new == offset:
            break
        got, offset = got + entries, new
    assert got == written
