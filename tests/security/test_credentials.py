"""No credential worth more than one workspace ever travels to a workspace.

Whatever answers on a workspace's port is its user's program. The reproduction of issue 11,
hole 1: a user wraps their Jupyter server with a ``~/.jupyter/jupyter_server_config.py`` in
their home (checkpoints keep it across a stop and start) that writes every request it gets,
headers and all, into ``/data``; the workspace has an idle shutdown timer, so the lifecycle
service asks the server about its kernels. Every credential the server ever saw must work on
that workspace alone: not on the hub's user list, not on another user's server, not on the
same user's other workspaces. That includes the cookies of an administrator who opens the
workspace in a browser (JupyterHub scopes its login cookie to ``/hub/``). The probe's token
used to be the lifecycle service's own, with ``servers`` and ``access:servers`` on every
user: ``GET /hub/api/users`` answered 200 with it.

Hub "benchcred" counts an option "hour" as 6 s: the idle shutdown is 20 "hours" (120 s) away
and its reminder one "hour" after the workspace goes idle, so the service asks the server a
few times in the first seconds and then leaves it alone for about 100 s, while the test tries
what it captured.
"""

from __future__ import annotations

import http.server
import json
import shlex
import threading
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support.docker_cli import cleanup, exec_in
from support.hub_harness import ADMIN_PASSWORD, SERVICE_TOKEN, TOKEN, HubProcess
from support.waiting import wait

WORKSPACE_USER = "1000"
SEEN = "/data/seen-requests.jsonl"

# The hostile server configuration: a user needs nothing but their own home directory for it.
SPY_CONFIG = f"""
import json, tornado.web
_find_handler = tornado.web.Application.find_handler
def _record(self, request, **kwargs):
    with open({SEEN!r}, "a") as f:
        f.write(json.dumps({{"uri": request.uri,
                             "headers": list(request.headers.get_all())}}) + "\\n")
    return _find_handler(self, request, **kwargs)
tornado.web.Application.find_handler = _record
"""

IDLE_POLICY = {"shutdown_mode": "idle", "auto_shutdown_hours": 20, "reminder_hours": [19]}

# A server that answers the hub's "are you up?" (``GET …/api``) with redirects to a host
# service for its first few requests, then normally.
REDIRECT_CONFIG = """
import tornado.web
_find_handler, _redirected = tornado.web.Application.find_handler, []
def _redirect(self, request, **kwargs):
    if request.path.endswith("/api") and len(_redirected) < 5:
        _redirected.append(request.path)
        return self.get_handler_delegate(request, tornado.web.RedirectHandler,
                                         {{"url": "{target}", "permanent": False}})
    return _find_handler(self, request, **kwargs)
tornado.web.Application.find_handler = _redirect
"""


@pytest.fixture(scope="module")
def cred_hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("benchcred")
    hub = HubProcess(
        workdir,
        prefix="benchcred",
        env_overrides={
            "BENCHHUB_LIFECYCLE_HOUR": "6",
            "BENCHHUB_LIFECYCLE_IDLE_WINDOW": "6",
            "BENCHHUB_LIFECYCLE_IDLE_CPU_SHARE": "0.2",
        },
    )
    cleanup("benchcred", hub.storage_root)
    hub.start()
    yield hub
    hub.stop()
    cleanup("benchcred", hub.storage_root)


def _seen(hub: HubProcess) -> list[dict]:
    """What the spying server recorded so far (one dict per request)."""
    out = exec_in(
        hub.container_name("mallory", "spy"), f"cat {SEEN} 2>/dev/null || true", user=WORKSPACE_USER
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _credentials(requests_seen: list[dict]) -> dict[str, dict]:
    """Every credential in the recorded requests, as the headers that present it again:
    Authorization headers, ``token`` query parameters and cookies."""
    found = {}
    for seen in requests_seen:
        for name, value in seen["headers"]:
            if name.lower() == "authorization":
                found[f"authorization: {value}"] = {"Authorization": value}
            elif name.lower() == "cookie":
                for morsel in SimpleCookie(value).values():
                    found[f"cookie {morsel.key}"] = {"Cookie": f"{morsel.key}={morsel.value}"}
        for token in parse_qs(urlsplit(seen["uri"]).query).get("token", []):
            found[f"query token {token[:6]}…"] = {"Authorization": f"token {token}"}
    return found


def _as(hub: HubProcess, method: str, path: str, headers: dict) -> requests.Response:
    return requests.request(
        method, f"{hub.url}{path}", headers=headers, timeout=60, allow_redirects=False
    )


def _refused(r: requests.Response) -> bool:
    """A refusal: 401/403/404, or a redirect to the hub's login (a single-user server's
    answer to cookies that do not log in)."""
    to_login = r.status_code == 302 and any(
        part in r.headers.get("Location", "") for part in ("/hub/login", "/hub/api/oauth2")
    )
    return r.status_code in (401, 403, 404) or to_login


def _running(hub: HubProcess, user: str, name: str) -> bool:
    return hub.workspaces(user).get(name, {}).get("status") == "running"


def _plant_server_config(hub: HubProcess, user: str, name: str, text: str) -> None:
    """Write ``~/.jupyter/jupyter_server_config.py`` as the workspace's user, then stop and
    start the workspace: the checkpoint on stop keeps the home directory."""
    container = hub.container_name(user, name)
    planted = exec_in(
        container,
        f"mkdir -p ~/.jupyter && printf '%s' {shlex.quote(text)} "
        "> ~/.jupyter/jupyter_server_config.py",
        user=WORKSPACE_USER,
    )
    assert planted.returncode == 0, planted.stderr
    hub.stop_workspace(user, name)
    hub.start_workspace(user, name)
    kept = exec_in(container, "cat ~/.jupyter/jupyter_server_config.py", user=WORKSPACE_USER)
    assert kept.stdout == text, "the checkpoint did not bring the server configuration back"


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits.append((self.path, dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_what_a_hostile_server_captures_from_the_lifecycle_probe_opens_only_its_own_workspace(
    cred_hub,
):
    hub = cred_hub
    for user in ("mallory", "bob"):
        hub.ensure_user(user)
    hub.start_workspaces(
        [("bob", "ws", None), ("mallory", "other", None), ("mallory", "spy", IDLE_POLICY)]
    )
    _plant_server_config(hub, "mallory", "spy", SPY_CONFIG)

    def probed():
        seen = _seen(hub)
        asked = [
            s
            for s in seen
            if "/api/kernels" in s["uri"]
            and any(n.lower() == "authorization" for n, _ in s["headers"])
        ]
        return asked and seen

    wait(probed, 90, "the lifecycle service asked the spying server about kernels")
    # an administrator who opens the user's workspace in a browser sends it their cookies
    admin, login = hub.log_in("admin", ADMIN_PASSWORD)
    assert login.status_code == 302, login.text
    admin.get(f"{hub.url}/user/mallory/spy/api/kernels", allow_redirects=False, timeout=60)

    def with_cookies():
        seen = _seen(hub)
        cookies = any(n.lower() == "cookie" for s in seen for n, _ in s["headers"])
        return cookies and seen

    seen = wait(with_cookies, 30, "the spying server saw the administrator's cookies")
    credentials = _credentials(seen)
    assert any(w.startswith("cookie") for w in credentials), credentials
    assert SERVICE_TOKEN.format("lifecycle") not in json.dumps(seen)
    assert TOKEN not in json.dumps(seen)
    for what, headers in credentials.items():
        for method, path in (
            ("GET", "/hub/api/users"),
            ("GET", "/hub/api/users/bob"),
            ("GET", "/user/bob/ws/api/kernels"),
            ("DELETE", "/hub/api/users/bob/servers/ws"),
            ("DELETE", "/hub/api/users/mallory/servers/other"),
            ("POST", "/hub/api/users/mallory/servers/third"),
        ):
            r = _as(hub, method, path, headers)
            assert _refused(r), (what, method, path, r.status_code, r.text[:200])
    assert _running(hub, "bob", "ws") and _running(hub, "mallory", "other")
    assert "third" not in hub.workspaces("mallory")

    # What the probe presented is the server's own token: it opens that one server (so the
    # probe still gets its answer, and the workspace's idle rule keeps working).
    probe = next(h for w, h in credentials.items() if w.startswith("authorization"))
    own = _as(hub, "GET", "/user/mallory/spy/api/kernels", probe)
    assert own.status_code == 200 and isinstance(own.json(), list), own.text


def test_a_starting_server_that_redirects_the_hub_to_a_host_service_is_not_followed(cred_hub):
    """While a workspace starts, the hub asks its server ``GET /user/<u>/<w>/api`` until it
    answers. A redirect there (to a service on the hub's host that trusts loopback) is not
    followed: it counts as "not answering yet", and the start goes on once the server
    answers properly."""
    hub = cred_hub
    host_service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    host_service.hits = []
    threading.Thread(target=host_service.serve_forever, daemon=True).start()
    try:
        hub.ensure_user("rex")
        hub.start_workspace("rex", "redir")
        target = f"http://127.0.0.1:{host_service.server_port}/internal/admin"
        _plant_server_config(hub, "rex", "redir", REDIRECT_CONFIG.format(target=target))
        assert _running(hub, "rex", "redir")  # the start finished after the redirects
        assert host_service.hits == []
    finally:
        host_service.shutdown()
        host_service.server_close()
