"""Every BenchHub HTTP endpoint × every kind of caller → the status the access rule gives, and a
refused request changes nothing.

The endpoints are discovered, not listed here: BenchHub's hub handlers
(``bench_spawner.hub_api.API_HANDLERS`` and ``PAGE_HANDLERS``) and the routes of every hub
service's Tornado app (``make_app`` in ``hub_services/<service>/web.py`` or ``service.py``,
built with stand-ins and read back from its router). A discovered route × method without a row in
``TABLE`` fails :func:`test_every_discovered_endpoint_has_a_row_in_the_table`, so a new
endpoint cannot go in without someone deciding who may call it.

Not Tornado routes, so not in the table: the egress proxy's ports (squid). Its gateway ports on
a swarm (docs/swarm.md, "Restricted access": the workspaces port published on the manager, the
hub relay on each overlay) have their own caller × path tests: who reaches which prefix and
from where in tests/swarm/test_swarm_restricted_workspaces.py, the rules in real squid in
tests/integration/test_egress_gateway.py.

The access rule, per family (docs/security.md):

- hub API on a workspace (``/hub/api/users/<u>/servers/<w>``, ``/hub/api/bench/workspaces/<u>``):
  JupyterHub's scopes, checked first. No credentials: 403. Another user: 404 (JupyterHub does not
  say whether the workspace exists). The owner, an admin and the lifecycle service (its role holds
  ``servers`` on every user): allowed.
- hub pages (spawn form, OAuth authorize, logout): a browser login (cookie) only; a token is
  not a login there, so a service is sent to the login page like an anonymous caller. Another
  user's spawn page: 404.
- services' APIs and pages: a hub token or the service's own login cookie with
  ``access:services`` on that service (every user and admin has it; a service's own token does
  not). A user sees and changes only their own workspaces' data (403 otherwise), an admin
  anyone's (the one access rule, ``benchhub.access``). Without credentials an API call is a
  403 (JSON); a page, and the script the hub's home page loads (lifecycle
  ``api/workspaces.js``), sends the browser to the hub's login.

Callers: no credentials at all; ``mallory`` (another user); ``wendy`` (owns the stopped
workspace ``lab``, which has one checkpoint, and the running ``live``); ``admin``; the service
itself (for the hub's own handlers, the lifecycle service: the one that stops, edits and starts
workspaces through them).
Users call with their API token and their browser login, like a person with a script.

On every refusal (any 4xx, or a redirect to the login) the test compares what the request could
have changed, before and after: the hub's users, workspaces and their options, the activity
journal's entries about these users, their containers, their checkpoints, clusters and egress
records.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import pkgutil
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import docker as docker_py
import pytest
import requests
from support.docker_cli import docker
from support.hub_harness import ADMIN_PASSWORD, PASSWORD, SERVICE_TOKEN
from tornado import web

import hub_services
from bench_spawner.hub_api import API_HANDLERS, PAGE_HANDLERS
from bench_spawner.sharing import SHARING_API_HANDLERS, SHARING_PAGE_HANDLERS

OWNER, OTHER, WS, LIVE = "wendy", "mallory", "lab", "live"  # lab: stopped, live: running
CALLERS = ("anonymous", "other", "owner", "admin", "service")
LOGIN = "login"  # a redirect to the hub's login page (or, from a service, to the hub's OAuth)
SPAWN_FORM = {"resource_model": "no-such-model"}  # refused by validation: nothing starts
BAD_OPTIONS = {"user_options": SPAWN_FORM}
AUTHORIZE = (
    "/api/oauth2/authorize?client_id=service-lifecycle&response_type=code"
    "&redirect_uri=/services/lifecycle/oauth_callback"
)
CK = "/api/workspaces/{owner}/{ws}/checkpoints"
SERVERS = "/api/users/{owner}/servers"


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    path: str  # under the app's mount; {owner} {ws} {live} {checkpoint} {caller} are filled in
    expect: tuple  # status (or LOGIN) per caller, in the order of CALLERS
    json: dict | None = None
    form: dict | None = None  # a browser form POST (with the session's XSRF token)
    app: str = ""  # "hub" or the service's name: the TABLE key

    @property
    def mount(self) -> str:
        return "/hub" if self.app == "hub" else f"/services/{self.app}"


def R(method: str, path: str, *expect, json=None, form=None) -> Row:  # noqa: N802 (a table row)
    return Row(method, path, expect, json, form)


# fmt: off
TABLE = {
    #   method     path (under /hub or /services/<app>)          anon   other  owner  admin  service
    "hub": [
        # BenchHub's workspace API (JupyterHub's server API, refined)
        R("GET",    SERVERS + "/{ws}",                         403,   404,   200,   200,   200),
        R("PUT",    SERVERS + "/{caller}-put",                 403,   404,   201,   201,   201,
          json={"user_options": {}}),
        R("POST",   SERVERS + "/{caller}-post",                403,   404,   400,   400,   400,
          json=BAD_OPTIONS),
        R("PATCH",  SERVERS + "/{ws}",                         403,   404,   200,   200,   200,
          json={"user_options": {"auto_shutdown_hours": 7}}),
        R("PATCH",  SERVERS + "/{live}",                       403,   404,   200,   200,   200,
          json={"user_options": {"auto_shutdown_hours": 7}}),  # while it runs: the policy only
        R("DELETE", SERVERS + "/{ws}",                         403,   404,   204,   204,   204,
          json={"reason": "the endpoint table"}),
        # CORS preflight: JupyterHub answers it for anyone and does nothing else
        R("OPTIONS", SERVERS + "/{ws}",                        200,   200,   200,   200,   200),
        R("GET",    "/api/bench/workspaces/{owner}",           403,   404,   200,   200,   200),
        R("OPTIONS", "/api/bench/workspaces/{owner}",          200,   200,   200,   200,   200),
        R("GET",    "/api/bench/resource-models",              403,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/resource-models",             200,   200,   200,   200,   200),
        R("GET",    "/api/bench/templates",                    403,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/templates",                   200,   200,   200,   200,   200),
        # limits (docs/operations.md, "Quotas"): read with read:users on the user (oneself,
        # admins, services holding it), set by admins only (admin:users / admin:groups)
        R("GET",    "/api/bench/quotas/users/{owner}",         403,   404,   200,   200,   200),
        R("PUT",    "/api/bench/quotas/users/{owner}",         403,   403,   403,   200,   403,
          json={}),
        R("GET",    "/api/bench/quotas/groups/no-such",        403,   403,   403,   404,   403),
        R("PUT",    "/api/bench/quotas/groups/no-such",        403,   403,   403,   404,   403,
          json={}),
        R("OPTIONS", "/api/bench/quotas/users/{owner}",        200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/quotas/groups/no-such",       200,   200,   200,   200,   200),
        # projects (docs/projects.md): the project rule (benchhub.projects.decide); "lab" and
        # "live" are personal workspaces, so only their owner and site admins may act on them
        R("GET",    "/api/bench/projects",                     403,   200,   200,   200,   200),
        R("POST",   "/api/bench/projects",                     403,   403,   403,   201,   403,
          json={"name": "{caller}-project", "owner": OWNER}),  # site admins only
        R("GET",    "/api/bench/projects/no-such",             403,   404,   404,   404,   404),
        R("PATCH",  "/api/bench/projects/no-such",             403,   403,   403,   404,   403,
          json={"storage_gb": 1}),
        R("PUT",    "/api/bench/projects/no-such/members/{owner}", 403, 404, 404,   404,   404,
          json={"role": "viewer"}),
        R("DELETE", "/api/bench/projects/no-such/members/{owner}", 403, 404, 404,   404,   404),
        R("GET",    "/api/bench/projects/no-such/workspaces",  403,   404,   404,   404,   404),
        R("PATCH",  "/api/bench/workspaces/{owner}/{ws}",      403,   403,   200,   200,   403,
          json={"user_options": {"auto_shutdown_hours": 7}}),
        R("DELETE", "/api/bench/workspaces/{owner}/{live}",    403,   403,   400,   400,   403),
        R("POST",   "/api/bench/workspaces/{owner}/{ws}/stop", 403,   403,   204,   204,   403),
        R("POST",   "/api/bench/workspaces/{owner}/{live}/start", 403, 403,  400,   400,   403),
        R("OPTIONS", "/api/bench/projects",                    200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/projects/no-such",            200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/projects/no-such/members/{owner}", 200, 200, 200,  200,   200),
        R("OPTIONS", "/api/bench/projects/no-such/workspaces", 200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/workspaces/{owner}/{ws}",     200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/workspaces/{owner}/{ws}/stop", 200,  200,   200,   200,   200),
        # sharing (docs/sharing.md): JupyterHub's scopes (shares!user on one's own), then
        # BenchHub's rule on whoever would use the share; "live" is a personal workspace, which
        # nobody but its owner may enter, so every share of it is refused
        R("GET",    "/api/user",                               403,   200,   200,   200,   200),
        R("GET",    "/api/shares/{owner}/{live}",              403,   404,   200,   200,   403),
        R("POST",   "/api/shares/{owner}/{live}",              403,   404,   403,   403,   403,
          json={"user": OTHER}),
        R("PATCH",  "/api/shares/{owner}/{live}",              403,   404,   200,   200,   403,
          json={"user": OTHER}),
        R("DELETE", "/api/shares/{owner}/{live}",              403,   404,   204,   204,   403),
        R("GET",    "/api/users/{caller}/shared/{owner}/{live}", 403, 404,   404,   404,   403),
        R("DELETE", "/api/users/{caller}/shared/{owner}/{live}", 403, 404,   404,   404,   403),
        R("GET",    "/api/share-codes/{owner}/{live}",         403,   404,   200,   200,   403),
        # a code may be made (JupyterHub's scopes); who may accept it is checked at acceptance
        R("POST",   "/api/share-codes/{owner}/{live}",         403,   404,   200,   200,   403),
        R("DELETE", "/api/share-codes/{owner}/{live}",         403,   404,   204,   204,   403),
        R("POST",   "/api/bench/workspaces/{owner}/{live}/join", 403, 403,   400,   200,   403),
        R("OPTIONS", "/api/user",                              200,   200,   200,   200,   200),
        R("OPTIONS", "/api/shares/{owner}/{live}",             200,   200,   200,   200,   200),
        R("OPTIONS", "/api/users/{caller}/shared/{owner}/{live}", 200, 200,  200,   200,   200),
        R("OPTIONS", "/api/share-codes/{owner}/{live}",        200,   200,   200,   200,   200),
        R("OPTIONS", "/api/bench/workspaces/{owner}/{live}/join", 200, 200,  200,   200,   200),
        R("GET",    "/accept-share",                           LOGIN, 400,   400,   400,   LOGIN),
        R("POST",   "/accept-share",                           403,   400,   400,   400,   403,
          form={}),
        # pages: a browser login (a token is no login there)
        R("GET",    AUTHORIZE,                                 LOGIN, 302,   302,   302,   LOGIN),
        R("POST",   "/api/oauth2/authorize",                   403,   400,   400,   400,   403,
          form={}),
        R("GET",    "/spawn/{owner}/{ws}",                     LOGIN, 404,   200,   200,   LOGIN),
        R("POST",   "/spawn/{owner}/{ws}",                     403,   404,   400,   400,   403,
          form=SPAWN_FORM),
        R("GET",    "/spawn/{owner}",                          LOGIN, 404,   200,   200,   LOGIN),
        R("POST",   "/spawn/{owner}",                          403,   404,   400,   400,   403,
          form=SPAWN_FORM),
        R("GET",    "/projects",                               LOGIN, 200,   200,   200,   LOGIN),
        R("GET",    "/logout",                                 LOGIN, LOGIN, LOGIN, LOGIN, LOGIN),
    ],
    "lifecycle": [
        R("GET",    "/oauth_callback",                         400,   400,   400,   400,   400),
        R("GET",    "/metrics",                                403,   403,   403,   200,   403),
        R("GET",    "/api/workspaces?user={owner}",            403,   403,   200,   200,   403),
        # loaded by the hub's home page as a <script>: the login redirect gives it the cookie
        R("GET",    "/api/workspaces.js?user={owner}",         LOGIN, 403,   200,   200,   403),
        R("GET",    "/api/health",                             403,   200,   200,   200,   403),
        R("GET",    "/api/activity?user={owner}",              403,   403,   200,   200,   403),
        R("GET",    "/activity?user={owner}",                  LOGIN, 403,   200,   200,   403),
        # the usage ledger (docs/operations.md, "Usage accounting")
        R("GET",    "/api/usage?user={owner}",                 403,   403,   200,   200,   403),
        R("GET",    "/api/usage.csv?user={owner}",             403,   403,   200,   200,   403),
        R("GET",    "/usage?user={owner}",                     LOGIN, 403,   200,   200,   403),
        R("GET",    "/",                                       LOGIN, 200,   200,   200,   403),
    ],
    "checkpoints": [
        R("GET",    "/oauth_callback",                         400,   400,   400,   400,   400),
        R("GET",    "/metrics",                                403,   403,   403,   200,   403),
        R("GET",    "/api/workspaces?user={owner}",            403,   403,   200,   200,   403),
        R("GET",    CK,                                        403,   403,   200,   200,   403),
        R("POST",   CK,                                        403,   403,   409,   409,   403,
          json={}),  # take one now: the workspace is stopped
        R("PATCH",  CK + "/{checkpoint}",                      403,   403,   200,   200,   403,
          json={"name": "named by {caller}"}),
        R("POST",   CK + "/{checkpoint}/verify",               403,   403,   200,   200,   403),
        R("POST",   CK + "/{checkpoint}/start-as-new",         403,   403,   400,   400,   403,
          json={"name": "{caller}-copy", "user_options": {"image": "missing"}}),  # image: fixed
        R("POST",   CK + "/{checkpoint}/restore-at-next-start", 403,  403,   200,   200,   403),
        R("POST",   "/api/gc",                                 403,   403,   403,   200,   403),
        R("GET",    "/api/health",                             403,   200,   200,   200,   403),
        R("GET",    "/?user={owner}",                          LOGIN, 403,   200,   200,   403),
    ],
    "clusters": [
        R("GET",    "/oauth_callback",                         400,   400,   400,   400,   400),
        R("GET",    "/metrics",                                403,   403,   403,   200,   403),
        R("GET",    "/api/clusters",                           403,   200,   200,   200,   403),
        R("GET",    "/api/clusters/{owner}/{ws}",              403,   403,   404,   404,   403),
        R("POST",   "/api/clusters/{owner}/{ws}",              403,   403,   409,   409,   403,
          json={"type": "static", "members": 1, "resource_model": "standard-small"}),  # stopped
        R("DELETE", "/api/clusters/{owner}/{ws}",              403,   403,   204,   204,   403),
        R("GET",    "/api/health",                             403,   200,   200,   200,   403),
        R("GET",    "/",                                       LOGIN, 200,   200,   200,   403),
        R("GET",    "/?user={owner}",                          LOGIN, 403,   200,   200,   403),
    ],
    "mounts": [  # fast mounts (docs/mounts.md): the workspace's own token, its owner, admins
        R("GET",    "/api/mounts/{owner}/{ws}",                403,   403,   409,   409,   403),
        R("POST",   "/api/mounts/{owner}/{ws}",                403,   403,   409,   409,   403,
          json={"mount_path": "/data/mounts/x", "source": "/data/project/x"}),  # lab: stopped
        R("DELETE", "/api/mounts/{owner}/{ws}?mount_path=/data/mounts/x", 403, 403, 409, 409, 403),
        R("GET",    "/metrics",                                403,   403,   403,   200,   403),
    ],
    "egress": [
        R("GET",    "/oauth_callback",                         400,   400,   400,   400,   400),
        R("GET",    "/metrics",                                403,   403,   403,   200,   403),
        R("GET",    "/api/health",                             403,   200,   200,   200,   403),
        R("GET",    "/api/refusals/{owner}/{ws}",              403,   403,   200,   200,   403),
        R("GET",    "/",                                       LOGIN, 200,   200,   200,   403),
        R("GET",    "/?user={owner}",                          LOGIN, 403,   200,   200,   403),
    ],
}
# fmt: on
ROWS = [dataclasses.replace(row, app=app) for app, rows in TABLE.items() for row in rows]
# logout last: it ends the callers' browser logins
ROWS.sort(key=lambda row: row.app == "hub" and row.path == "/logout")


# ---- discovery ----------------------------------------------------------------------------------


class _StandIn(SimpleNamespace):
    """Passed to a service's ``make_app`` for the service object: the app only keeps it (or one of
    its attributes) in its settings, and no request is served from the app built here."""

    def __getattr__(self, name):
        return _StandIn()


def _methods(handler: type) -> list[str]:
    """The HTTP methods ``handler`` answers (those it, or a base other than Tornado's, defines)."""
    return [
        m
        for m in handler.SUPPORTED_METHODS
        if getattr(handler, m.lower()) is not getattr(web.RequestHandler, m.lower())
    ]


def service_apps() -> dict[str, web.Application]:
    """Every hub service package's Tornado app (``make_app`` in its ``web`` or ``service``
    module), built under ``/services/<package>/`` as the hub mounts it."""
    apps = {}
    for package in pkgutil.iter_modules(hub_services.__path__):
        if not package.ispkg:
            continue
        for module_name in ("web", "service"):
            try:
                module = importlib.import_module(f"hub_services.{package.name}.{module_name}")
            except ModuleNotFoundError:
                continue
            make_app = getattr(module, "make_app", None)
            if make_app is None:
                continue
            arguments = {}
            for name, parameter in inspect.signature(make_app).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    continue
                if name == "prefix":
                    arguments[name] = f"/services/{package.name}/"
                elif name == "cookie_secret":
                    arguments[name] = b"0" * 32
                else:
                    arguments[name] = _StandIn()
            apps[package.name] = make_app(**arguments)
            break
    return apps


def discovered_endpoints() -> set[tuple[str, str, str]]:
    """``(app, method, URL regex)`` of every BenchHub endpoint."""
    endpoints = set()
    hub_handlers = API_HANDLERS + PAGE_HANDLERS + SHARING_API_HANDLERS + SHARING_PAGE_HANDLERS
    for pattern, handler, *_ in hub_handlers:
        endpoints |= {("hub", m, "/hub" + pattern) for m in _methods(handler)}
    for name, app in service_apps().items():
        for rule in app.wildcard_router.rules:
            pattern = rule.matcher.regex.pattern.removesuffix("$")
            endpoints |= {(name, m, pattern) for m in _methods(rule.target)}
    return endpoints


SAMPLE = {"owner": OWNER, "ws": WS, "live": LIVE, "checkpoint": "0123abcd", "caller": "owner"}


def _endpoint_of(row: Row, endpoints, values=SAMPLE) -> list[tuple[str, str, str]]:
    path = (row.mount + row.path).format(**values).split("?")[0]
    return [
        e for e in endpoints if e[0] == row.app and e[1] == row.method and re.fullmatch(e[2], path)
    ]


def test_every_discovered_endpoint_has_a_row_in_the_table():
    endpoints = discovered_endpoints()
    assert {app for app, _, _ in endpoints} >= {
        "hub",
        "lifecycle",
        "checkpoints",
        "clusters",
        "egress",
    }
    covered = {e for row in ROWS for e in _endpoint_of(row, endpoints)}
    missing = "\n".join(
        f"  {app} {method} {pattern}" for app, method, pattern in sorted(endpoints - covered)
    )
    assert not missing, f"endpoints without a row in TABLE (decide who may call them):\n{missing}"


def test_every_row_is_one_discovered_endpoint():
    endpoints = discovered_endpoints()
    for row in ROWS:
        assert len(row.expect) == len(CALLERS), row
        assert len(_endpoint_of(row, endpoints)) == 1, f"{row.method} {row.path} matches no route"


def test_every_running_service_is_discovered(hub):
    """A service the hub runs whose routes the discovery cannot find fails here."""
    r = hub.api("GET", "/services")
    assert r.status_code == 200, r.text
    running = {name for name, s in r.json().items() if s.get("command")}
    assert running <= set(service_apps()), running - set(service_apps())


# ---- the callers and their world (set up once per module) ---------------------------------------


@dataclasses.dataclass
class World:
    sessions: dict[str, requests.Session]  # anonymous, other, owner, admin
    service_sessions: dict[str, requests.Session]  # "hub" (the lifecycle service) and each service
    checkpoint: str
    journal: Path

    def session(self, caller: str, app: str) -> requests.Session:
        return self.service_sessions[app] if caller == "service" else self.sessions[caller]


def _token_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    return session


def _user_session(hub, name: str, password: str) -> requests.Session:
    """A person: logged in through the hub's form (the browser cookie) and holding an API token."""
    session, r = hub.log_in(name, password)
    assert r.status_code == 302, (name, r.status_code, r.text[:300])
    token = hub.api("POST", f"/users/{name}/tokens", {"expires_in": 3600}).json()["token"]
    session.headers["Authorization"] = f"token {token}"
    return session


@pytest.fixture(scope="module")
def live(hub):
    """The owner's running workspace (the tests below end it)."""
    hub.ensure_user(OWNER)
    hub.start_workspace(OWNER, LIVE, {"auto_shutdown_hours": 3})
    yield LIVE
    hub.api("DELETE", f"/users/{OWNER}/servers/{LIVE}")


@pytest.fixture(scope="module")
def world(hub, live):
    hub.ensure_user(OWNER)
    hub.ensure_user(OTHER)
    hub.start_workspace(OWNER, WS, {})
    hub.stop_workspace(OWNER, WS)  # the stop takes a checkpoint
    r = hub.service_api("checkpoints", f"api/workspaces/{OWNER}/{WS}/checkpoints")
    assert r.status_code == 200 and r.json()["checkpoints"], r.text
    sessions = {
        "anonymous": requests.Session(),
        "other": _user_session(hub, OTHER, PASSWORD),
        "owner": _user_session(hub, OWNER, PASSWORD),
        "admin": _user_session(hub, "admin", ADMIN_PASSWORD),
    }
    services = {"hub": _token_session(SERVICE_TOKEN.format("lifecycle"))}
    services |= {name: _token_session(SERVICE_TOKEN.format(name)) for name in service_apps()}
    yield World(
        sessions,
        services,
        r.json()["checkpoints"][0]["id"],
        hub.workdir / "state" / "activity.jsonl",
    )
    for session in [*sessions.values(), *services.values()]:
        session.close()


# ---- one pass over the table --------------------------------------------------------------------


def _send(hub, world: World, row: Row, caller: str) -> requests.Response:
    values = {**SAMPLE, "checkpoint": world.checkpoint, "caller": caller}
    session = world.session(caller, row.app)
    kwargs = {}
    if row.json is not None:
        kwargs["json"] = json.loads(json.dumps(row.json).replace("{caller}", caller))
    if row.form is not None:
        kwargs["data"] = {**row.form, "_xsrf": session.cookies.get("_xsrf", path="/hub/") or ""}
    return session.request(
        row.method,
        hub.url + (row.mount + row.path).format(**values),
        allow_redirects=False,
        timeout=120,
        **kwargs,
    )


def _outcome(r: requests.Response):
    location = r.headers.get("Location", "")
    if r.status_code in (301, 302, 303, 307) and (
        "/hub/login" in location or "/hub/api/oauth2/authorize" in location
    ):
        return LOGIN
    return r.status_code


@functools.cache
def _engine() -> docker_py.APIClient:
    return docker_py.APIClient()


def snapshot(hub, world: World) -> dict:
    """What a request could change, for the table's users (other tests' workspaces may be busy).

    Taken after every refusal, so its reads (the hub, the engine, two services; nothing
    changes meanwhile) go out side by side."""
    ours = {OWNER, OTHER, "admin"}
    with ThreadPoolExecutor(len(ours) + 3) as pool:
        # each of them on its own: the list of every user grows with the suite's other modules
        users = [
            pool.submit(hub.api, "GET", f"/users/{name}?include_stopped_servers=1")
            for name in sorted(ours)
        ]
        containers = pool.submit(_containers, hub)
        checkpoints = pool.submit(
            hub.service_api, "checkpoints", f"api/workspaces/{OWNER}/{WS}/checkpoints"
        )
        clusters = pool.submit(hub.service_api, "clusters", "api/clusters")
        quoted = [json.dumps(name) for name in ours]  # a line about one of them holds its name
        journal = [
            line
            for line in world.journal.read_text().splitlines()
            if line.startswith("{")
            and any(name in line for name in quoted)
            and json.loads(line).get("user") in ours
        ]
        egress = sorted(str(p.relative_to(hub.egress_dir)) for p in hub.egress_dir.rglob("*"))
    servers = {
        u["name"]: {
            name: {key: s.get(key) for key in ("user_options", "ready", "pending", "started")}
            for name, s in u["servers"].items()
        }
        for u in (r.json() for r in (f.result() for f in users) if r.status_code != 404)
    }
    return {
        "servers": servers,
        "journal": journal,
        "containers": containers.result(),
        "checkpoints": checkpoints.result().json(),
        "clusters": clusters.result().json(),
        "egress": egress,
    }


def _containers(hub) -> list[str]:
    """The table's users' containers and their states, as `docker ps -a` lists them (without
    a CLI process per refusal)."""
    names = [f"^{hub.prefix}-{OWNER}", f"^{hub.prefix}-{OTHER}"]
    found = _engine().containers(all=True, filters={"name": names})
    return sorted(f"{c['Names'][0].lstrip('/')} {c['State']}" for c in found)


def _difference(before: dict, after: dict) -> str:
    """What changed, per key: for a list, only what left it and what came into it."""

    def changed(old, new) -> str:
        if isinstance(old, list) and isinstance(new, list):
            gone = [item for item in old if item not in new]
            came = [item for item in new if item not in old]
            return f"removed {json.dumps(gone)[:600]}, added {json.dumps(came)[:600]}"
        return f"{json.dumps(old)[:400]} -> {json.dumps(new)[:400]}"

    return "; ".join(
        f"{key}: {changed(before[key], after[key])}" for key in before if before[key] != after[key]
    )


def test_every_endpoint_answers_each_caller_as_the_table_says_and_refusals_change_nothing(
    hub, world
):
    failures = []
    before = None
    for row in ROWS:
        for caller, expected in zip(CALLERS, row.expect, strict=True):
            if before is None:
                before = snapshot(hub, world)
            r = _send(hub, world, row, caller)
            got = _outcome(r)
            where = f"{row.method} {row.path} as {caller}"
            if got != expected:
                failures.append(f"{where}: {got}, expected {expected}: {r.text[:200]!r}")
            if got == LOGIN or 400 <= r.status_code < 500:
                after = snapshot(hub, world)
                if after != before:
                    changed = _difference(before, after)
                    failures.append(f"{where} was refused ({got}) but changed {changed}")
                before = after
            else:
                before = None  # an allowed request may change things: take a new baseline
    assert not failures, "\n".join(failures)


# ---- hole 2: the examples, each next to the legitimate use ------------------------------


def test_without_credentials_or_as_another_user_a_running_workspace_is_neither_read_nor_edited(
    hub, live
):
    url = f"{hub.url}/hub/api/users/{OWNER}/servers/{live}"
    before = hub.workspaces(OWNER)[live]["user_options"]["auto_shutdown_hours"]
    attack = {"user_options": {"auto_shutdown_hours": 1}}  # the lifecycle service would stop it
    for session, refused in ((requests.Session(), 403), (_user_session(hub, OTHER, PASSWORD), 404)):
        r = session.patch(url, json=attack, timeout=60)
        assert r.status_code == refused, r.text
        assert "auto_shutdown_hours" not in r.text  # and the options are not revealed
    assert hub.workspaces(OWNER)[live]["user_options"]["auto_shutdown_hours"] == before

    owner = _user_session(hub, OWNER, PASSWORD)
    r = owner.patch(url, json={"user_options": {"auto_shutdown_hours": 5}}, timeout=60)
    assert r.status_code == 200, r.text
    assert hub.workspaces(OWNER)[live]["user_options"]["auto_shutdown_hours"] == 5
    assert hub.wait_for_activity(OWNER, live, "edited")["actor"] == OWNER


def test_refused_stop_and_start_requests_do_not_put_the_senders_name_on_the_owners_log(hub, live):
    other = _user_session(hub, OTHER, PASSWORD)
    r = other.delete(
        f"{hub.url}/hub/api/users/{OWNER}/servers/{live}",
        json={"reason": "mallory was here"},
        timeout=60,
    )
    assert r.status_code == 404, r.text
    r = other.post(
        f"{hub.url}/hub/spawn/{OWNER}/{live}",
        allow_redirects=False,
        timeout=60,
        data={"_xsrf": other.cookies.get("_xsrf", path="/hub/")},
    )
    assert r.status_code == 404, r.text
    assert hub.workspaces(OWNER)[live]["status"] == "running"

    # the next entry written without a request of its own: the container dies by itself
    docker("kill", hub.container_name(OWNER, live))
    entry = hub.wait_for_activity(OWNER, live, "errored", timeout=60)
    assert entry["actor"] == "hub", entry
    assert "mallory" not in json.dumps(entry)


def test_another_user_cannot_create_a_workspace_in_someone_elses_account(hub):
    hub.ensure_user(OWNER)
    other = _token_session(hub.api("POST", f"/users/{OTHER}/tokens").json()["token"])
    url = f"{hub.url}/hub/api/users/{OWNER}/servers/planted"
    for method in ("POST", "PUT"):
        r = other.request(method, url, json={"user_options": {}}, timeout=60)
        assert r.status_code == 404, (method, r.text)
        assert "planted" not in hub.workspaces(OWNER)  # nor counted against her limit

    owner = _token_session(hub.api("POST", f"/users/{OWNER}/tokens").json()["token"])
    assert owner.put(url, json={"user_options": {}}, timeout=60).status_code == 201
    assert "planted" in hub.workspaces(OWNER)
