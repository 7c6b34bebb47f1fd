"""A real JupyterHub (with configurable-http-proxy) for tests and benchmarks.

``HubProcess`` writes a config that loads the repository's ``jupyterhub_config.py`` and
overrides only what a test run needs (ports, state and storage in a temp dir, a test catalog,
an admin token, names prefixed so a developer's own hub on this machine is left alone), starts
``jupyterhub`` in its own session, and talks to its REST API with ``requests``.

The test catalog pins :data:`UNRUNNABLE_MODEL`, a model no host can run (4096 CPUs), so tests
of "unavailable on this host" hold on any machine, a big CI runner included.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from .docker_cli import container_logs
from .waiting import WaitTimedOut, wait

REPO = Path(__file__).resolve().parents[2]
TEST_PREFIX = "benchtest"  # names of everything the suite creates in Docker
TOKEN = "benchhub-test-token-5f0c1a2b3c4d5e6f"
PASSWORD = "test-password-123"
ADMIN_PASSWORD = "test-admin-password-456-0123456789abc"  # "admin"; >= 32 chars
# each hub service's own API token (by its name), so tests can call as "the service itself"
SERVICE_TOKEN = "benchhub-test-{}-service-token-0f1e2d3c"
# A model no host can run: its CPUs come first in the "unavailable" reason ("needs 4096 CPUs;
# this host has 2"), whatever the machine's size.
UNRUNNABLE_MODEL = "test-unrunnable"
TEST_MODELS = {
    "test-small": {"cpus": 0.5, "memory_gb": 0.5},
    "test-medium": {"cpus": 1, "memory_gb": 1},
    "standard-small": {"cpus": 2, "memory_gb": 8},
    UNRUNNABLE_MODEL: {"cpus": 4096, "memory_gb": 1},
}


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local end of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


# Ports a test hub's processes listen on come from below the ephemeral range: a port the
# kernel may also give an outgoing connection's local end can be taken between the check
# here and the service's own bind (CI, 2026-12-01: a test hub's lifecycle service found its
# port held by a connection and could not listen for 90 s).
_FIRST_PORT = 20000
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on (on any address), outside the ephemeral range when
    that leaves room, and not handed out before by this process."""
    last = _ephemeral_ports()[0] - 1
    for _ in range(200) if last - _FIRST_PORT >= 1000 else ():
        port = random.randint(_FIRST_PORT, last)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Test-speed patches of two JupyterHub internals, added to a test hub's configuration unless
# HubProcess.prompt_polls is off (benchmarks/__init__.py turns it off).
PROMPT_POLLS_CONFIG = """
# The hub notices that a managed service died, and starts it again, at its next poll of the
# service's process: every 30 s in JupyterHub (_ServiceSpawner.poll_interval, which no config
# reaches). Tests that kill a service wait for that restart; a poll every second shortens the
# wait without changing what happens.
import jupyterhub.services.service as _hub_services
from traitlets import Integer as _Integer
class _PromptlyPolledServiceSpawner(_hub_services._ServiceSpawner):
    poll_interval = _Integer(1)
_hub_services._ServiceSpawner = _PromptlyPolledServiceSpawner
# At its start the hub waits for the proxy and then each managed service, one after another, to
# answer, looking with JupyterHub's backoff and full jitter (pauses of up to 0.2, 0.4, 0.8,
# 1.6 s ...): a service up after a second is seen up to a second later. The suite starts many
# hubs; JupyterHub's waits for a server to answer (the proxy, services, and users' servers:
# utils.wait_for_http_server) look every 0.05 s. Benchmarks turn both off
# (HubProcess.prompt_polls), to measure the hub as a site runs it.
import jupyterhub.utils as _hub_utils
_backoff = _hub_utils.exponential_backoff
async def _prompt_backoff(pass_func, fail_message, *args, **kwargs):
    kwargs.update(start_wait=0.05, max_wait=0.05)
    return await _backoff(pass_func, fail_message, *args, **kwargs)
_hub_utils.exponential_backoff = _prompt_backoff
"""


class HubProcess:
    """One hub; ``start()``/``kill()``/``stop()`` may be called repeatedly (state persists).

    ``prompt_polls``: whether the hub gets :data:`PROMPT_POLLS_CONFIG` (tests: yes)."""

    prompt_polls = True

    def __init__(
        self,
        workdir: Path,
        prefix: str = TEST_PREFIX,
        extra_config: str = "",
        env_overrides: dict[str, str] | None = None,
    ):
        self.workdir = workdir
        self.env_overrides = env_overrides or {}
        self.prefix = prefix
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.egress_port, self.lifecycle_port = free_port(), free_port()
        self.checkpoints_port, self.clusters_port = free_port(), free_port()
        self.mounts_port = free_port()
        self.egress_dir = workdir / "egress"
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage_root = workdir / "workspaces"
        self.log_path = workdir / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.process_groups: list[int] = []  # every hub started, with whatever it left behind
        self.config_path = workdir / "test_config.py"
        self.config_path.write_text(self._config(extra_config))

    def _config(self, extra: str) -> str:
        return f"""
c = get_config()  # noqa
load_subconfig({str(REPO / "jupyterhub_config.py")!r})
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.BenchSpawner.resource_models = {json.dumps(TEST_MODELS)}
c.BenchSpawner.default_resource_model = "test-small"
c.BenchSpawner.default_storage_gb = 1
c.BenchSpawner.image_templates = {{
    "jupyterlab": {{"image": "benchhub/jupyterlab:latest", "display_name": "JupyterLab"}},
    "missing": {{"image": "benchhub/not-built:0", "display_name": "Never built"}},
}}
c.Spawner.poll_interval = 2
{PROMPT_POLLS_CONFIG if self.prompt_polls else ""}for service in c.JupyterHub.services:
    service.setdefault("api_token", {SERVICE_TOKEN!r}.format(service["name"]))
c.JupyterHub.services.append({{"name": "tester", "api_token": {TOKEN!r}}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["tester"]}})
{extra}
"""

    @property
    def env(self) -> dict:
        return {
            **os.environ,
            "BENCHHUB_URL": self.url,
            "BENCHHUB_HUB_PORT": str(self.hub_port),
            "BENCHHUB_STATE_DIR": str(self.workdir / "state"),
            "BENCHHUB_STORAGE_ROOT": str(self.storage_root),
            "BENCHHUB_PASSWORD": PASSWORD,
            "BENCHHUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "BENCHHUB_PREFIX": self.prefix,
            # one subnet per prefix, so the suite's hubs never overlap each other or a real one
            "BENCHHUB_RESTRICTED_SUBNET": f"10.{200 + sum(map(ord, self.prefix)) % 50}.0.0/24",
            "BENCHHUB_EGRESS_DIR": str(self.egress_dir),
            "BENCHHUB_EGRESS_PORT": str(self.egress_port),
            "BENCHHUB_EGRESS_INTERVAL": "2",
            # test servers live on private Docker addresses; production forbids those ranges
            "BENCHHUB_EGRESS_FORBIDDEN": "[]",
            "BENCHHUB_LIFECYCLE_PORT": str(self.lifecycle_port),
            "BENCHHUB_LIFECYCLE_INTERVAL": "2",
            "BENCHHUB_CHECKPOINTS_PORT": str(self.checkpoints_port),
            "BENCHHUB_CLUSTERS_PORT": str(self.clusters_port),
            "BENCHHUB_MOUNTS_PORT": str(self.mounts_port),
            **self.env_overrides,
        }

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.process_groups.append(self.proc.pid)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return requests.get(f"{self.url}/hub/api/", timeout=1).ok
            except requests.RequestException:
                return False

        try:
            wait(answers, timeout, "the hub answers on its API", step=0.2)
        except WaitTimedOut:
            raise RuntimeError(f"hub did not answer in {timeout} s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL the hub only (the proxy survives as an orphan, as in a real crash)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for group in self.process_groups:  # e.g. a killed hub's orphans
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pid_file = self.workdir / "state" / "jupyterhub-proxy.pid"
        if pid_file.exists():  # an orphaned proxy from a kill()
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def service_pid(self, service: str) -> int | None:
        """The pid of this hub's ``service`` process (e.g. "egress"), or None while none runs:
        the hub's child started as ``python -m hub_services.<service>``."""
        module = f"hub_services.{service}".encode()
        for pid in child_pids(self.proc.pid) if self.proc else []:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # ended meanwhile
            if module in argv:
                return pid
        return None

    def failure_sections(self) -> dict[str, str]:
        """What explains a failed test: the hub's log tail and the last lines of every
        container this hub's prefix names (workspaces, the proxy, cluster members)."""
        return {f"hub log (tail), {self.log_path}": self.log_tail(), **container_logs(self.prefix)}

    # ---- REST API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, json_body=None, token: str = TOKEN) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/hub/api{path}",
            json=json_body,
            headers={"Authorization": f"token {token}"},
            timeout=150,
        )

    def user_token(self, user: str) -> str:
        """A new API token of ``user`` with the user's own scopes, valid for an hour."""
        r = self.api("POST", f"/users/{user}/tokens", {"note": "test", "expires_in": 3600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def log_in(self, user: str, password: str) -> tuple[requests.Session, requests.Response]:
        """Log in through the hub's login form as a browser does (the XSRF cookie from
        ``GET /hub/login``, then the form): the session and the form's answer (302 when let in)."""
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=30).raise_for_status()
        r = session.post(
            f"{self.url}/hub/login",
            allow_redirects=False,
            timeout=60,
            data={"username": user, "password": password, "_xsrf": session.cookies["_xsrf"]},
        )
        return session, r

    def ensure_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def workspaces(self, user: str) -> dict:
        r = self.api("GET", f"/bench/workspaces/{user}")
        assert r.ok, r.text
        return {w["name"]: w for w in r.json()["workspaces"]}

    def wait_for(self, user: str, name: str, status: str, timeout: float = 120) -> dict:
        """The workspace once its status is ``status`` (WaitTimedOut with the last one seen)."""
        return wait(
            lambda: self.workspaces(user).get(name),
            timeout,
            f"{user}/{name} is {status}",
            step=0.1,
            until=lambda ws: ws and ws["status"] == status,
        )

    def start_workspace(self, user: str, name: str, options: dict | None = None) -> dict:
        body = {"user_options": options} if options is not None else None
        r = self.api("POST", f"/users/{user}/servers/{name}", body)
        assert r.status_code in (201, 202), r.text
        return self.wait_for(user, name, "running")

    def start_workspaces(self, starts: list[tuple[str, str, dict | None]]) -> list[dict]:
        """Start several workspaces, each ``(user, name, options)``, side by side: as
        ``start_workspace`` for each (whose request waits for the start), in less time."""
        with ThreadPoolExecutor(len(starts)) as pool:
            return list(pool.map(lambda start: self.start_workspace(*start), starts))

    def stop_workspace(self, user: str, name: str) -> None:
        r = self.api("DELETE", f"/users/{user}/servers/{name}")
        assert r.status_code in (202, 204), r.text
        self.wait_for_stopped(user, name)

    def wait_for_stopped(self, user: str, name: str, timeout: float = 60) -> dict:
        """The workspace once it is stopped or errored."""
        return wait(
            lambda: self.workspaces(user)[name],
            timeout,
            f"{user}/{name} stops",
            step=0.1,
            until=lambda ws: ws["status"] in ("stopped", "errored"),
        )

    def service_api(self, service: str, path: str, token: str = TOKEN, **params):
        """GET a hub service's API (through the proxy), e.g. ("lifecycle", "api/workspaces")."""
        return requests.get(
            f"{self.url}/services/{service}/{path}",
            params=params,
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )

    def wait_for_activity(self, user: str, workspace: str, action: str, timeout: float = 30):
        """The newest activity-log entry of ``action`` for a workspace (the lifecycle service
        copies the hub's journal on each pass), or WaitTimedOut after ``timeout``."""

        def entries() -> list[dict]:
            r = self.service_api(
                "lifecycle", "api/activity", user=user, workspace=workspace, action=action
            )
            return r.json()["entries"] if r.ok else []

        return wait(entries, timeout, f"a {action!r} entry for {user}/{workspace}")[0]

    def container_name(self, user: str, name: str) -> str:
        return f"{self.prefix}-{user}--{name}"


def child_pids(parent: int) -> list[int]:
    """The pids of ``parent``'s child processes (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            found.append(int(entry.name))
    return found
