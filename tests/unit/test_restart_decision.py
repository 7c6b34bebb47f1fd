"""Whether the lifecycle service starts an interrupted workspace again: the decision by a table,
and the pass that carries it out at most once (real activity log, a hub that records starts)."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from hub_services.lifecycle import policy as policy_module
from hub_services.lifecycle.activity_log import ActivityLog
from hub_services.lifecycle.restart_decision import decide_restart, is_interruption
from hub_services.lifecycle.restarts import InterruptedRestarts

NOW = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def interruption(uid="i1", restart=True, cause="host", at=NOW - timedelta(minutes=2), **extra):
    return {
        "uid": uid,
        "at": at,
        "user": "alice",
        "workspace": "lab",
        "actor": "hub",
        "action": "errored",
        "description": f"{cause} restarted: ...",
        "fields": {"interrupted_by": cause, "restart": restart},
        **extra,
    }


NOTHING: list[dict] = []
STOPPED = [{"uid": "s1", "actor": "alice", "action": "stopped"}]
RESTARTED = [{"uid": "restart:i1", "actor": "service:lifecycle", "action": "restarting"}]
CHECKPOINT_FAILED = [{"uid": "c1", "actor": "hub", "action": "errored"}]  # the same end

# (what happened, the interruption entry, the entries after it, active, within, due)
CASES = [
    ("it was running when the host restarted", interruption(), NOTHING, False, HOUR, True),
    (
        "it was running when the engine restarted",
        interruption(cause="engine"),
        [],
        False,
        HOUR,
        True,
    ),
    (
        "the dead container's checkpoint failed",
        interruption(),
        CHECKPOINT_FAILED,
        False,
        HOUR,
        True,
    ),
    ("the user stopped it after", interruption(), STOPPED, False, HOUR, False),
    ("already started again (our own entry)", interruption(), RESTARTED, False, HOUR, False),
    ("it runs or starts already", interruption(), NOTHING, True, HOUR, False),
    ("a person's stop found it dead", interruption(restart=False), NOTHING, False, HOUR, False),
    ("too long ago", interruption(at=NOW - 2 * HOUR), NOTHING, False, HOUR, False),
    ("switched off", interruption(), NOTHING, False, timedelta(0), False),
    ("an ordinary exit", {**interruption(), "fields": {}}, NOTHING, False, HOUR, False),
    ("out of memory", {**interruption(), "fields": {"restart": True}}, [], False, HOUR, False),
    ("written by someone but the hub", interruption(actor="alice"), [], False, HOUR, False),
]


@pytest.mark.parametrize(
    ("what", "entry", "later", "active", "within", "due"), CASES, ids=[c[0] for c in CASES]
)
def test_an_interrupted_workspace_is_started_again_as_the_table_says(
    what, entry, later, active, within, due
):
    decision = decide_restart(entry, later, active, NOW, within)
    assert decision.due is due, (what, decision.why)
    assert decision.why


def test_only_the_hubs_interruption_entries_count():
    assert is_interruption(interruption())
    assert not is_interruption({**interruption(), "action": "stopped"})


class RecordingHub:
    """The hub's API as the pass uses it: records starts; refuses when told to."""

    def __init__(self, refuse: bool = False):
        self.started: list[tuple[str, str]] = []
        self.refuse = refuse

    async def start_server(self, user: str, name: str) -> None:
        self.started.append((user, name))
        if self.refuse:
            request = HTTPRequest("http://hub/hub/api/users/alice/servers/lab")
            body = b'{"message": "max_running_workspaces: alice may run at most 1"}'
            raise HTTPClientError(403, response=HTTPResponse(request, 403, buffer=_buffer(body)))


def _buffer(body: bytes) -> io.BytesIO:
    return io.BytesIO(body)


@pytest.fixture
def log(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_module, "utcnow", lambda: NOW)
    return ActivityLog(f"sqlite:///{tmp_path / 'activity.sqlite'}")


async def run_pass(restarts: InterruptedRestarts, active=frozenset()) -> int:
    due = await restarts.due(set(active))
    for _, restart in due:
        await restart
    return len(due)


async def test_the_pass_starts_an_interrupted_workspace_once_and_says_why(log):
    log.append(interruption())
    hub = RecordingHub()
    restarts = InterruptedRestarts(log, hub, "service:lifecycle", 3600, logging.getLogger())
    assert await run_pass(restarts) == 1
    assert await run_pass(restarts) == 0  # its own entry is the newest now: never twice
    assert hub.started == [("alice", "lab")]
    newest = log.query(user="alice", workspace="lab", limit=1)[0][0]
    assert newest["action"] == "restarting" and newest["actor"] == "service:lifecycle"
    assert newest["description"] == "starting it again: it was running when the host restarted"


async def test_a_workspace_that_runs_or_was_stopped_since_is_left_alone(log):
    log.append(interruption())
    hub = RecordingHub()
    restarts = InterruptedRestarts(log, hub, "service:lifecycle", 3600, logging.getLogger())
    assert await run_pass(restarts, active={"alice/lab"}) == 0
    log.append({**interruption(uid="s1"), "action": "stopped", "fields": {}, "actor": "alice"})
    assert await run_pass(restarts) == 0
    assert hub.started == []


async def test_a_refused_start_is_logged_with_the_hubs_reason_and_not_retried(log):
    log.append(interruption())
    hub = RecordingHub(refuse=True)
    restarts = InterruptedRestarts(log, hub, "service:lifecycle", 3600, logging.getLogger())
    assert await run_pass(restarts) == 1
    assert await run_pass(restarts) == 0
    newest = log.query(user="alice", workspace="lab", limit=1)[0][0]
    assert newest["description"].startswith("not started again: ")
    assert "max_running_workspaces" in newest["description"]
    assert hub.started == [("alice", "lab")]
