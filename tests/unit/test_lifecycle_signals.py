"""The lifecycle service's observation parts: cgroup CPU figures, kernel/terminal answers,
per-workspace memory, reminder texts and the SMTP sender (against a real aiosmtpd server)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller

from hub_services.lifecycle.cpu import CpuSample, CpuWindow, read_cpu
from hub_services.lifecycle.cycles import Cycle, CycleStore
from hub_services.lifecycle.reminders import Reminder, SMTPReminder
from hub_services.lifecycle.server_probe import latest_activity, parse_kernels

CID = "a" * 64


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1_usage_and_quota(tmp_path):
    _write(tmp_path / "cpuacct" / "docker" / CID / "cpuacct.usage", "2500000000\n")
    _write(tmp_path / "cpu" / "docker" / CID / "cpu.cfs_quota_us", "50000\n")
    _write(tmp_path / "cpu" / "docker" / CID / "cpu.cfs_period_us", "100000\n")
    assert read_cpu([CID, "b" * 64], tmp_path, host_cpus=8) == {CID: CpuSample(2.5, 0.5)}


def test_cgroup_v1_without_quota_counts_the_host(tmp_path):
    _write(tmp_path / "cpuacct" / "docker" / CID / "cpuacct.usage", "1000000000\n")
    _write(tmp_path / "cpu" / "docker" / CID / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "docker" / CID / "cpu.cfs_period_us", "100000\n")
    assert read_cpu([CID], tmp_path, host_cpus=4)[CID] == CpuSample(1.0, 4)


def test_cgroup_v2_systemd_layout(tmp_path):
    _write(tmp_path / "cgroup.controllers", "cpu memory\n")
    scope = tmp_path / "system.slice" / f"docker-{CID}.scope"
    _write(scope / "cpu.stat", "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
    _write(scope / "cpu.max", "200000 100000\n")
    assert read_cpu([CID], tmp_path, host_cpus=8)[CID] == CpuSample(3.0, 2.0)
    _write(scope / "cpu.max", "max 100000\n")
    assert read_cpu([CID], tmp_path, host_cpus=8)[CID].limit_cpus == 8


def test_cpu_window_share_over_the_window():
    window = CpuWindow(window_s=10, min_span_s=1)
    window.add(0, CpuSample(0.0, 0.5))
    assert window.share() is None  # one sample: unknown
    window.add(0.5, CpuSample(0.25, 0.5))
    assert window.share() is None  # too short a span to judge
    window.add(4, CpuSample(2.0, 0.5))
    assert window.share() == pytest.approx(1.0)  # 2 CPU-s in 4 s at a 0.5 CPU limit
    for t in range(5, 30):
        window.add(t, CpuSample(2.0, 0.5))  # then nothing
    assert window.share() == pytest.approx(0.0)


def test_cpu_window_starts_over_when_the_counter_goes_back():
    window = CpuWindow(window_s=60)
    window.add(0, CpuSample(100.0, 1))
    window.add(5, CpuSample(1.0, 1))  # a new container under the same name
    assert window.share() is None


def test_kernels_busy_or_starting_count_as_busy():
    assert parse_kernels([]) == (False, 0)
    assert parse_kernels([{"execution_state": "idle"}]) == (False, 1)
    assert parse_kernels([{"execution_state": "idle"}, {"execution_state": "busy"}]) == (True, 2)
    assert parse_kernels([{"execution_state": "starting"}])[0] is True
    assert parse_kernels({"message": "error"}) == (False, 0)


def test_latest_terminal_activity():
    assert latest_activity([]) is None
    body = [
        {"name": "1", "last_activity": "2026-11-21T10:00:00.000000Z"},
        {"name": "2", "last_activity": "2026-11-21T11:30:00+00:00"},
        {"name": "3", "last_activity": "garbage"},
    ]
    assert latest_activity(body) == datetime(2026, 11, 21, 11, 30, tzinfo=UTC)


def test_cycles_survive_a_new_store_on_the_same_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'life.sqlite'}"
    store = CycleStore(url)
    cycle = Cycle(started="2026-11-21T10:00:00Z").with_reminder("remind:x").with_done("stop:y")
    store.save("ann/lab", cycle)
    pending = {"event_id": "restart:z", "action": "restart", "reason": "r", "phase": "starting"}
    store.save("bob/lab", Cycle(started="s", pending=pending))
    again = CycleStore(url)
    assert again.all() == {"ann/lab": cycle, "bob/lab": Cycle(started="s", pending=pending)}
    again.forget("ann/lab")
    assert list(CycleStore(url).all()) == ["bob/lab"]


def test_done_clears_pending_and_ids_are_bounded():
    cycle = Cycle(started="s", pending={"event_id": "a"})
    for i in range(60):
        cycle = cycle.with_done(f"e{i}").with_reminder(f"r{i}")
    assert cycle.pending is None
    assert len(cycle.actions_done) == 50 and cycle.actions_done[-1] == "e59"
    assert len(cycle.reminders_sent) == 50


REMINDER = Reminder(
    "ann",
    "rnaseq",
    "shutdown",
    datetime(2026, 11, 21, 18, 0, tzinfo=UTC),
    "automatic shutdown: ran 8 h since start",
    "https://hub.example.org",
)


def test_reminder_text_says_what_when_why_and_how_to_keep_it():
    assert REMINDER.subject == "Workspace rnaseq will stop at 2026-11-21 18:00 UTC"
    assert "ran 8 h since start" in REMINDER.body
    assert "keep running until" in REMINDER.body and "https://hub.example.org" in REMINDER.body
    restart = Reminder("ann", "rnaseq", "restart", REMINDER.at, "security restart")
    assert "will restart" in restart.subject and "30 days" in restart.body


class _Inbox:
    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.received.append(envelope)
        return "250 OK"


async def test_smtp_reminder_reaches_a_real_smtp_server():
    inbox = _Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sender = SMTPReminder(
            host="127.0.0.1",
            port=port,
            sender="bench@example.org",
            to_template="{user}@example.org",
        )
        await sender(REMINDER)
        await asyncio.sleep(0)
    finally:
        controller.stop()
    (envelope,) = inbox.received
    assert envelope.rcpt_tos == ["ann@example.org"] and envelope.mail_from == "bench@example.org"
    assert b"Workspace rnaseq will stop" in envelope.content
