"""What every BenchHub hub service process does the same way: where to listen, and running
its reconcile loop until the hub stops it (SIGTERM) or it is interrupted."""

from __future__ import annotations

import asyncio
import os
import signal
from urllib.parse import urlparse

from tornado import web

__all__ = ["serve_until_stopped", "service_prefix"]


def service_prefix(name: str) -> str:
    """The URL prefix the hub gave the service (``/services/<name>/`` by default)."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{name}/")


async def serve_until_stopped(app: web.Application, default_url: str, loop, log) -> None:
    """Listen on the service URL the hub gave (``default_url`` when run by hand), run the
    coroutine ``loop`` beside it, and return once SIGTERM or SIGINT arrives."""
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", default_url))
    app.listen(url.port, url.hostname)
    log.info("listening on %s:%s", url.hostname, url.port)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    task = asyncio.ensure_future(loop)
    await stopped.wait()
    task.cancel()
