"""The lifecycle service on a real hub with real containers, with its times shortened.

Hub "benchlife" counts an option "hour" as 6 s (so auto_shutdown_hours=2 is 12 s idle),
measures CPU over 6 s and mails reminders to an aiosmtpd server run by the test. Hub
"benchcycle" restarts workspaces every 30 s (the 30-day security restart, time shortened by
configuration).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import TOKEN, HubProcess, free_port
from support.waiting import wait
from tornado.websocket import websocket_connect

HOUR_S = 6


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture(scope="module")
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def _hub(tmp_path_factory, prefix: str, env: dict):
    workdir = tmp_path_factory.mktemp(prefix)
    hub = HubProcess(workdir, prefix=prefix, env_overrides=env)
    cleanup(prefix, hub.storage_root)
    hub.start()
    return hub


@pytest.fixture(scope="module")
def life_hub(tmp_path_factory, inbox):
    controller, _ = inbox
    hub = _hub(
        tmp_path_factory,
        "benchlife",
        {
            "BENCHHUB_LIFECYCLE_HOUR": str(HOUR_S),
            "BENCHHUB_LIFECYCLE_IDLE_WINDOW": "6",
            # an idle server with a sleeping kernel stays under 0.1 CPU even on a loaded machine,
            # so the sleeper's kernel is asked about (a CPU-bound loop uses the whole 0.5 CPU)
            "BENCHHUB_LIFECYCLE_IDLE_CPU_SHARE": "0.2",
            "BENCHHUB_SMTP_HOST": "127.0.0.1",
            "BENCHHUB_SMTP_PORT": str(controller.port),
            "BENCHHUB_SMTP_TO": "{user}@example.org",
        },
    )
    yield hub
    hub.stop()
    cleanup("benchlife", hub.storage_root)


@pytest.fixture(scope="module")
def cycle_hub(tmp_path_factory):
    hub = _hub(tmp_path_factory, "benchcycle", {"BENCHHUB_LIFECYCLE_RESTART_EVERY": "30"})
    yield hub
    hub.stop()
    cleanup("benchcycle", hub.storage_root)


def _container_url(hub: HubProcess, user: str, name: str) -> str:
    """The workspace's server on its container address (not through the proxy)."""
    address = docker(
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        hub.container_name(user, name),
    ).strip()
    return f"http://{address}:8888/user/{user}/{name}"


async def _run_in_kernel(base_url: str, code: str) -> None:
    """Start a kernel and send it ``code`` over the websocket, then hang up (no browser
    stays connected); returns once the kernel reports busy running that code."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    headers = {"Authorization": f"token {TOKEN}"}
    response = await AsyncHTTPClient().fetch(
        f"{base_url}/api/kernels", method="POST", body="{}", headers=headers
    )
    kernel = json.loads(response.body)["id"]
    ws_url = base_url.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    session = uuid.uuid4().hex
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "session": session,
        "username": "test",
        "version": "5.3",
        "date": datetime.now(UTC).isoformat(),
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    await conn.write_message(
        json.dumps(
            {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": content,
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = json.loads(await conn.read_message())
        ours = message.get("parent_header", {}).get("msg_id") == header["msg_id"]
        if (
            ours
            and message.get("msg_type") == "status"
            and (message["content"]["execution_state"] == "busy")
        ):  # busy with our code (not with the kernel_info requests of the connection)
            break
    conn.close()


def _activity(hub, user, name, **params) -> list[dict]:
    r = hub.service_api("lifecycle", "api/activity", user=user, workspace=name, **params)
    assert r.ok, r.text
    return r.json()["entries"]


def test_idle_stops_but_a_busy_kernel_or_cpu_without_a_browser_does_not(life_hub, inbox):
    hub = life_hub
    _, mailbox = inbox
    hub.ensure_user("ida")
    idle = {"auto_shutdown_hours": 2, "shutdown_mode": "idle", "reminder_hours": [1]}
    quiet_start = time.monotonic()
    hub.start_workspaces([("ida", name, idle) for name in ("quiet", "kernel", "sleeper", "cpu")])
    busy_loop = "import time\nt = time.time()\nwhile time.time() - t < {}: pass"
    asyncio.run(_run_in_kernel(_container_url(hub, "ida", "kernel"), busy_loop.format(60)))
    # a kernel that waits (e.g. on a remote job) is busy without using CPU
    sleeper = _container_url(hub, "ida", "sleeper")
    asyncio.run(_run_in_kernel(sleeper, "import time; time.sleep(50)"))
    # a CPU-bound process outside any kernel (e.g. started from a terminal that was closed)
    docker(
        "exec",
        "-d",
        "-u",
        "1000",
        hub.container_name("ida", "cpu"),
        "python3",
        "-c",
        busy_loop.format(40),
    )
    started = time.monotonic()

    hub.wait_for_stopped("ida", "quiet", timeout=60)
    quiet_stop = time.monotonic() - quiet_start
    entries = wait(lambda: _activity(hub, "ida", "quiet", action="stopped"), 10, "logged")
    assert entries[0]["actor"] == "service:lifecycle", entries
    assert "idle for" in entries[0]["description"]
    assert quiet_stop >= 2 * HOUR_S - 4, f"stopped too early: {quiet_stop:.0f} s"

    # the reminder one "hour" (6 s) before the idle shutdown went to the owner by mail
    mails = [m for to, m in mailbox.messages if to == ["ida@example.org"]]
    assert any("quiet" in m["Subject"] and "will stop" in m["Subject"] for m in mails), mails
    assert _activity(hub, "ida", "quiet", action="reminded")

    # the CPU-bound process keeps its workspace up while it runs, and only then it stops;
    # the waiting kernel keeps its workspace up although the container uses no CPU
    busy_seen = set()
    while time.monotonic() - started < 36:
        workspaces = hub.workspaces("ida")
        assert workspaces["cpu"]["status"] == "running", "stopped while using CPU"
        assert workspaces["sleeper"]["status"] == "running", "stopped while a kernel waits"
        schedule = hub.service_api("lifecycle", "api/workspaces", user="ida").json()
        busy_seen |= {
            w["activity"]["kernels_busy"]
            for w in schedule["workspaces"]
            if w["workspace"] == "sleeper"
        }
        time.sleep(3)
    # the server reported the waiting kernel busy (a single answer may say idle: the kernel
    # also answers other requests meanwhile; the idle period restarts at every busy answer,
    # so only answers of "idle" for the whole period can stop it, as the loop above shows)
    assert True in busy_seen, busy_seen
    # ... and each stops one idle period (12 s) after its work ended, not when it ends
    hub.wait_for_stopped("ida", "cpu", timeout=60)
    assert time.monotonic() - started >= 40 + 2 * HOUR_S - 5
    hub.wait_for_stopped("ida", "sleeper", timeout=60)
    assert time.monotonic() - started >= 50 + 2 * HOUR_S - 8

    # the kernel computes for 60 s (5 idle periods) with nobody connected: never idle meanwhile
    while time.monotonic() - started < 55:
        assert hub.workspaces("ida")["kernel"]["status"] == "running", "stopped while busy"
        time.sleep(5)
    hub.wait_for_stopped("ida", "kernel", timeout=90)  # and once it is done, it is idle
    assert time.monotonic() - started >= 60 + 2 * HOUR_S - 8, "stopped while computing"


def test_keep_until_postpones_the_shutdown_and_only_the_policy_is_editable(life_hub):
    hub = life_hub
    hub.ensure_user("kai")
    hub.start_workspace("kai", "long", {"auto_shutdown_hours": 1, "reminder_hours": []})
    keep = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    r = hub.api(
        "PATCH", "/users/kai/servers/long", {"user_options": {"keep_until": keep.isoformat()}}
    )
    assert r.ok, r.text
    refused = hub.api(
        "PATCH", "/users/kai/servers/long", {"user_options": {"resource_model": "test-medium"}}
    )
    assert refused.status_code == 409 and "resource_model" in refused.json()["message"]

    def scheduled():
        rows = hub.service_api("lifecycle", "api/workspaces", user="kai").json()["workspaces"]
        return rows and rows[0]["next_event_at"] == keep.isoformat() and rows[0]

    row = wait(scheduled, 20, "the schedule shows the keep-until time")
    assert row["next_event"] == "shutdown" and 0 < row["remaining_seconds"] <= 20
    assert hub.workspaces("kai")["long"]["status"] == "running"  # 6 s shutdown postponed
    hub.wait_for_stopped("kai", "long", timeout=60)
    assert datetime.now(UTC) >= keep
    edited = _activity(hub, "kai", "long", action="edited")
    assert edited and "keep_until" in edited[0]["description"], edited
    assert edited[0]["actor"] == "service:tester"


def test_another_user_cannot_read_someone_elses_schedule_or_log(life_hub):
    hub = life_hub
    hub.ensure_user("eve")
    r = hub.api("POST", "/users/eve/tokens", {"expires_in": 600})
    assert r.ok, r.text
    token = r.json()["token"]
    for path in ("api/workspaces", "api/activity"):
        assert hub.service_api("lifecycle", path, token=token, user="ida").status_code == 403
    own = hub.service_api("lifecycle", "api/activity", token=token)
    assert own.ok and all(e["user"] == "eve" for e in own.json()["entries"])


def _started(hub, user, name) -> str | None:
    r = hub.api("GET", f"/users/{user}")
    server = r.json()["servers"].get(name)
    return server and server.get("ready") and server["started"]


def _journal_uids(hub, user, name) -> set[str]:
    lines = (hub.workdir / "state" / "activity.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    return {e["uid"] for e in entries if (e["user"], e["workspace"]) == (user, name)}


def test_security_restart_happens_once_keeps_data_and_survives_kill_9(cycle_hub):
    """Restart every 30 s. The service is SIGKILLed in the middle of the restart (the
    workspace is stopping or stopped, not yet started again); the hub starts the service
    again and it finishes that same restart. Exactly one restart happens, /data is kept, and
    every hub journal entry is in the activity log exactly once."""
    hub = cycle_hub
    hub.ensure_user("rita")
    hub.start_workspace("rita", "lab")
    exec_in(hub.container_name("rita", "lab"), "echo kept > /data/result.txt")
    first = _started(hub, "rita", "lab")

    def mid_restart():
        server = hub.api("GET", "/users/rita").json()["servers"].get("lab")
        return server is None or server.get("pending") == "stop"

    wait(mid_restart, 70, "the security restart begins", step=0.2)
    pid = hub.service_pid("lifecycle")
    assert pid, "the lifecycle service is not running"
    os.kill(pid, signal.SIGKILL)
    second = wait(
        lambda: (_started(hub, "rita", "lab") or first) != first and _started(hub, "rita", "lab"),
        90,
        "the restart finishes",
    )
    # a repeated restart would follow right away (within a pass or two, 2 s each); the next
    # due one is 30 s after `second`
    for _ in range(15):
        assert _started(hub, "rita", "lab") in (second, None), "restarted a second time"
        time.sleep(1)
    assert _started(hub, "rita", "lab") == second
    restarted = hub.service_pid("lifecycle")
    assert restarted not in (None, pid), "the hub did not start the service again"
    hub.wait_for("rita", "lab", "running")
    assert exec_in(hub.container_name("rita", "lab"), "cat /data/result.txt").stdout == "kept\n"

    def logged():
        entries = _activity(hub, "rita", "lab", limit=1000)
        return _journal_uids(hub, "rita", "lab") <= {e["uid"] for e in entries} and entries

    entries = wait(logged, 30, "every journal entry in the activity log")
    uids = [e["uid"] for e in entries]
    assert len(uids) == len(set(uids))
    stops = [e for e in entries if e["action"] == "stopped"]
    assert len(stops) == 1 and stops[0]["actor"] == "service:lifecycle", stops
    assert "security restart" in stops[0]["description"]
    starts = [e for e in entries if e["action"] == "started"]
    assert [e["actor"] for e in starts] == ["service:lifecycle", "service:tester"], starts
