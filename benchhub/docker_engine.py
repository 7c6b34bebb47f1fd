"""The Docker Engine as every BenchHub service uses it: docker-py behind one executor.

Every blocking docker-py call goes through :meth:`DockerEngine.call` (``await
engine.call("inspect_container", name)``), on a pool of ``threads`` worker threads, with the
client's own socket timeout and an outer one. The client is made in a worker thread, never on
the event loop. :meth:`DockerEngine.exec` runs a command in a container and returns its exit
code and output (bounded in size and time: what runs in a container can be the user's
doing); :meth:`DockerEngine.watch` follows container ``die``/``destroy`` events on
a thread of its own and calls back, so a service reacts to a stopped workspace or a killed
cluster member at once instead of at its next pass.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
from docker.errors import APIError, NotFound

__all__ = ["MAX_EXEC_OUTPUT", "DockerEngine", "ExecResult"]

log = logging.getLogger("benchhub.docker_engine")

# Output of one exec that the service reads at most (qstat's XML of thousands of jobs fits).
MAX_EXEC_OUTPUT = 16 * 1024 * 1024


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _read_bounded(stream, max_bytes: int, deadline: float) -> tuple[bytes, str]:
    """Read ``stream`` (an exec's output chunks) up to ``max_bytes`` bytes or the
    ``deadline`` (``time.monotonic()``), then close it. Returns the bytes and "" if the
    stream ended by itself, else why reading stopped."""
    received, cut = bytearray(), ""
    try:
        for chunk in stream:
            if len(received) + len(chunk) > max_bytes:
                received.extend(chunk[: max_bytes - len(received)])
                cut = f"output cut at {max_bytes} bytes"
                break
            received.extend(chunk)
            if time.monotonic() > deadline:
                cut = "still printing when its time was up"
                break
    finally:
        stream.close()
    return bytes(received), cut


class DockerEngine:
    """docker-py with ``threads`` workers; ``timeout`` seconds per API call; the engine at
    ``base_url`` (e.g. ``tcp://manager:2375``), the local one when None."""

    def __init__(self, threads: int = 8, timeout: float = 30, base_url: str | None = None):
        self.timeout = timeout
        self.base_url = base_url
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="docker")
        self._local = threading.local()
        self._watching = False

    def _client(self) -> docker.APIClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = docker.APIClient(
                base_url=self.base_url, version="auto", timeout=self.timeout
            )
        return client

    async def call(self, method: str, *args, **kwargs):
        """``docker.APIClient.<method>(*args, **kwargs)`` on a worker thread."""

        def run():
            return getattr(self._client(), method)(*args, **kwargs)

        future = asyncio.get_running_loop().run_in_executor(self._pool, run)
        return await asyncio.wait_for(future, self.timeout + 10)

    async def inspect(self, container: str) -> dict | None:
        """``docker inspect`` of a container, None when there is none."""
        try:
            return await self.call("inspect_container", container)
        except NotFound:
            return None

    async def remove(self, container: str) -> None:
        """Remove a container and its anonymous volumes, killing it if it runs. One that is
        already gone (or being removed) is success."""
        try:
            await self.call("remove_container", container, v=True, force=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # removal already in progress
                raise

    async def stop(self, container: str, grace: int) -> None:
        """SIGTERM, SIGKILL after ``grace`` s; a container already stopped or gone is fine."""
        try:
            await self.call("stop", container, timeout=grace)
        except NotFound:
            pass

    async def exec(
        self,
        container: str,
        argv: list[str] | tuple[str, ...],
        environment: dict | None = None,
        user: str = "",
        max_output: int = MAX_EXEC_OUTPUT,
    ) -> ExecResult:
        """Run ``argv`` in a running container; its exit code and stdout+stderr as text.

        What a command prints in a cluster or workspace container can be the user's doing
        (job names in qstat's XML, a hostile program): at most ``max_output`` bytes are
        read, and reading ends ``timeout`` seconds after the start. A command cut short
        either way is a failure (exit code -1) whose output ends with a line that says why;
        the process is not waited for."""

        def run() -> ExecResult:
            client = self._client()
            created = client.exec_create(
                container, list(argv), environment=environment, user=user, stdout=True, stderr=True
            )
            stream = client.exec_start(created["Id"], stream=True)
            output, cut = _read_bounded(stream, max_output, time.monotonic() + self.timeout)
            if cut:
                return ExecResult(-1, output.decode(errors="replace") + f"\n[{cut}]")
            code = client.exec_inspect(created["Id"]).get("ExitCode")
            return ExecResult(code if code is not None else -1, output.decode(errors="replace"))

        future = asyncio.get_running_loop().run_in_executor(self._pool, run)
        return await asyncio.wait_for(future, self.timeout + 10)

    def watch(
        self, on_event: Callable[[dict], None], events: tuple[str, ...] = ("die", "destroy")
    ) -> None:
        """Call ``on_event(event)`` (on the watching thread) for every container event of the
        kinds ``events`` (``die`` and ``destroy`` unless told), from now until the process
        ends. Reconnects after an error (events in between are missed: reconcile)."""
        if self._watching:
            return
        self._watching = True

        def follow() -> None:
            while True:
                try:
                    client = docker.APIClient(base_url=self.base_url, version="auto", timeout=None)
                    filters = {"type": "container", "event": list(events)}
                    for event in client.events(decode=True, filters=filters):
                        on_event(event)
                except Exception:
                    log.warning("docker event stream failed; reconnecting", exc_info=True)
                time.sleep(2)

        threading.Thread(target=follow, name="docker-events", daemon=True).start()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
