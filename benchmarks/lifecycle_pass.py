"""One policy pass over 1,000 workspaces: BenchHub's lifecycle service vs jupyterhub-idle-culler.

A real hub (configurable-http-proxy, SQLite) runs 1,000 stand-in servers (100 users x 10
named servers, :mod:`benchmarks.standin`); half use the idle shutdown mode, half a shutdown
counted from start. Both tools read the hub through a counting reverse proxy, so "hub API
calls" is what the hub really served. Measured in one run, on the same hub:

- jupyterhub-idle-culler: one ``cull_idle`` pass (limit far away: it reads, culls nothing);
- BenchHub lifecycle: ``LifecycleService.run_pass`` (hub pages, one Docker call, cgroup
  reads, kernel/terminal questions to the servers whose idle shutdown is near, decisions);
- BenchHub lifecycle, worst case: every workspace's idle shutdown near, so every server is
  asked about kernels and terminals.

The first two passes of each are a warm-up (the lifecycle service records a new run per
workspace, measures CPU over a second and sends the first reminders); reported figures are
the median of the next ``PASSES``. Run with ``make bench``.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub_idle_culler import cull_idle
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from benchhub.hub_client import HubClient
from hub_services.lifecycle.activity_log import ActivityLog
from hub_services.lifecycle.cpu import CpuSample, CpuWindow
from hub_services.lifecycle.cycles import CycleStore
from hub_services.lifecycle.service import LifecycleService
from tests.support.hub_harness import HubProcess, free_port

REPO = Path(__file__).resolve().parent.parent

USERS, PER_USER, WARMUP, PASSES = 100, 10, 2, 5
LIFECYCLE_TOKEN = "bench-lifecycle-token-0123456789abcdef"
CULLER_TOKEN = "bench-culler-token-0123456789abcdef"
HUB_CONFIG = f"""
c.JupyterHub.spawner_class = "benchmarks.standin.StandInSpawner"
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.services += [
    {{"name": "lifecycle-bench", "api_token": {LIFECYCLE_TOKEN!r}}},
    {{"name": "culler-bench", "api_token": {CULLER_TOKEN!r}}},
]
c.JupyterHub.load_roles += [
    {{"name": "lifecycle-bench", "services": ["lifecycle-bench"],
     "scopes": ["list:users", "read:users", "read:servers", "servers", "access:servers"]}},
    {{"name": "culler-bench", "services": ["culler-bench"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}},
]
"""


class CountingProxy(web.RequestHandler):
    """Forwards ``/hub/api/...`` to the hub and counts requests per token."""

    SUPPORTED_METHODS = ("GET", "POST", "DELETE", "PATCH")

    async def _forward(self, *_):
        token = self.request.headers.get("Authorization", "")
        self.settings["counts"][token] = self.settings["counts"].get(token, 0) + 1
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(
                self.settings["hub"] + self.request.uri,
                method=self.request.method,
                headers=self.request.headers,
                body=self.request.body or None,
                allow_nonstandard_methods=True,
                request_timeout=60,
            ),
            raise_error=False,
        )
        self.set_status(response.code)
        for name in ("Content-Type", "Link"):
            if name in response.headers:
                self.set_header(name, response.headers[name])
        self.finish(response.body)

    get = post = delete = patch = _forward


class StandInLifecycle(LifecycleService):
    """The real service; the 1,000 stand-ins are added to what Docker reports (one real
    Docker call per pass stays in the measurement), all answering on the stand-in server."""

    force_probes = False

    async def _containers(self):
        found = await super()._containers()
        for key in self._standin_keys:
            found.setdefault(
                key,
                {
                    "Id": f"standin-{key}",
                    "NetworkSettings": {"Networks": {"standin": {"IPAddress": "127.0.0.1"}}},
                },
            )
        return found

    def _sample_cpu(self, containers):
        """Stand-ins have no cgroup: give them an idle CPU counter, as an idle container has
        (the per-container file reads still happen, and miss, for each of them)."""
        super()._sample_cpu(containers)
        now = time.monotonic()
        for key in self._standin_keys:
            self._windows.setdefault(key, CpuWindow(self.idle_window)).add(now, CpuSample(0, 1))

    def _needs_probe(self, server, cycle, policy, now):
        # the worst case: as if every workspace were in idle mode with its deadline near
        return self.force_probes or super()._needs_probe(server, cycle, policy, now)

    async def _server_token(self, container_id):
        """A stand-in has no container to read its server token from (and the stand-in
        server checks none): any token will do; one inspect per real container stays."""
        if container_id.startswith("standin-"):
            return "stand-in-server-token"
        return await super()._server_token(container_id)


def _spawn_all(hub: HubProcess) -> None:
    def spawn(i: int) -> None:
        user = f"u{i // PER_USER:03d}"
        options = (
            {"auto_shutdown_hours": 8, "shutdown_mode": "idle"}
            if i % 2 == 0
            else {"auto_shutdown_hours": 24, "shutdown_mode": "after_start"}
        )
        r = hub.api("POST", f"/users/{user}/servers/w{i % PER_USER}", {"user_options": options})
        assert r.status_code in (201, 202), r.text

    for u in range(USERS):
        hub.ensure_user(f"u{u:03d}")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(spawn, range(USERS * PER_USER)))


async def _measure(hub: HubProcess, proxy_url: str, counts: dict, workdir: Path) -> dict:
    AsyncHTTPClient.configure(None, max_clients=64)
    results = {}

    async def culler_pass():
        await cull_idle(
            f"{proxy_url}/hub/api",
            CULLER_TOKEN,
            inactive_limit=10**9,
            logger=logging.getLogger("culler"),
            api_page_size=200,
        )

    db = f"sqlite:///{workdir / 'lifecycle-bench.sqlite'}"
    service = StandInLifecycle(
        hub=HubClient(f"{proxy_url}/hub/api", LIFECYCLE_TOKEN),
        activity_log=ActivityLog(db),
        cycles=CycleStore(db),
        server_port=int(hub.env_overrides["STANDIN_PORT"]),
    )
    service._standin_keys = [
        f"u{i // PER_USER:03d}/w{i % PER_USER}" for i in range(USERS * PER_USER)
    ]

    async def lifecycle_pass():
        report = await service.run_pass()
        results.setdefault("probes", []).append(report.probes)
        assert report.workspaces == USERS * PER_USER, report

    async def worst_pass():
        service.force_probes = True
        await lifecycle_pass()
        service.force_probes = False

    for name, one_pass, token in (
        ("culler", culler_pass, CULLER_TOKEN),
        ("lifecycle", lifecycle_pass, LIFECYCLE_TOKEN),
        ("lifecycle-worst", worst_pass, LIFECYCLE_TOKEN),
    ):
        times, calls = [], []
        for i in range(WARMUP + PASSES):
            before = counts.get(f"token {token}", 0)
            t0 = time.perf_counter()
            await one_pass()
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
                calls.append(counts.get(f"token {token}", 0) - before)
            else:
                await asyncio.sleep(1.1)  # lets the CPU window span a second
        results[name] = {"seconds": statistics.median(times), "hub_calls": statistics.median(calls)}
    results["probes_typical"] = results["probes"][WARMUP + PASSES - 1]
    results["probes_worst"] = results["probes"][-1]
    return results


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="benchlife-"))
    standin_port, proxy_port = free_port(), free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.standin", str(standin_port)], cwd=REPO
    )
    hub = HubProcess(
        workdir,
        prefix="benchlp",
        extra_config=HUB_CONFIG,
        env_overrides={
            "STANDIN_URL": f"http://127.0.0.1:{standin_port}",
            "STANDIN_PORT": str(standin_port),
            "PYTHONPATH": str(REPO),
            "BENCHHUB_LIFECYCLE_INTERVAL": "86400",
            "BENCHHUB_EGRESS_INTERVAL": "86400",
        },
    )
    try:
        hub.start()
        t0 = time.monotonic()
        _spawn_all(hub)
        print(f"{USERS * PER_USER} stand-in workspaces running in {time.monotonic() - t0:.0f} s")

        async def run():
            counts: dict = {}
            app = web.Application([(r"/.*", CountingProxy)], hub=hub.url, counts=counts)
            app.listen(proxy_port, "127.0.0.1")
            return await _measure(hub, f"http://127.0.0.1:{proxy_port}", counts, workdir)

        results = asyncio.run(run())
    finally:
        hub.stop()
        standin.kill()
    _report(results)


def _report(r: dict) -> None:
    culler = r["culler"]
    print(
        f"\n## Lifecycle policy pass, {USERS * PER_USER} workspaces "
        f"({datetime.now(UTC):%Y-%m-%d}, median of {PASSES} passes)\n"
    )
    print("| tool | time per pass | hub API calls per pass | servers asked | ratio (time) |")
    print("|---|---|---|---|---|")
    rows = [
        ("jupyterhub-idle-culler", culler, "0"),
        ("BenchHub lifecycle", r["lifecycle"], str(r["probes_typical"])),
        ("BenchHub lifecycle, every server asked", r["lifecycle-worst"], str(r["probes_worst"])),
    ]
    for name, row, asked in rows:
        ratio = row["seconds"] / culler["seconds"]
        print(
            f"| {name} | {row['seconds']:.3f} s | {row['hub_calls']:.0f} | {asked} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
