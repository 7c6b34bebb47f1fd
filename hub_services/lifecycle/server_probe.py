"""What a workspace's Jupyter server says about its kernels and terminals.

The service asks the server directly on its container address (not through the hub's proxy,
whose traffic counts as user activity) with ``no_track_activity=1`` so that asking does not
itself count as activity. ``execution_state`` "busy" on any kernel means a computation is
running, browser or not: the case jupyterhub-idle-culler#55 is about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

__all__ = ["ServerActivity", "latest_activity", "parse_kernels", "probe_server"]


@dataclass(frozen=True)
class ServerActivity:
    """Kernels busy now, their last activity, and the last terminal activity (None: none)."""

    kernels_busy: bool
    kernels: int
    last_terminal_input: datetime | None
    last_kernel_activity: datetime | None = None


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def parse_kernels(body: object) -> tuple[bool, int]:
    """``(any kernel busy, number of kernels)`` from ``GET api/kernels``. A kernel that is
    starting counts as busy (it is about to run the user's code)."""
    kernels = body if isinstance(body, list) else []
    busy = any(
        isinstance(k, dict) and k.get("execution_state") in ("busy", "starting") for k in kernels
    )
    return busy, len(kernels)


def latest_activity(body: object) -> datetime | None:
    """The latest ``last_activity`` over a list of kernels or terminals (``GET api/kernels``,
    ``api/terminals``; a terminal's moves with input, a kernel's with its messages), or None."""
    items = body if isinstance(body, list) else []
    times = [_time(item.get("last_activity")) for item in items if isinstance(item, dict)]
    times = [t for t in times if t is not None]
    return max(times) if times else None


async def probe_server(base_url: str, token: str, wait_s: float = 10) -> ServerActivity:
    """Ask the server at ``base_url`` (``http://<ip>:<port>/user/<name>/<workspace>/``).
    Raises ``tornado.httpclient.HTTPClientError`` or ``OSError`` if it does not answer: the
    caller then treats the workspace as not idle."""
    client = AsyncHTTPClient()
    headers = {"Authorization": f"token {token}"}

    async def get(path: str) -> object:
        response = await client.fetch(
            f"{base_url.rstrip('/')}/api/{path}?no_track_activity=1",
            headers=headers,
            request_timeout=wait_s,
        )
        return json.loads(response.body)

    kernels = await get("kernels")
    busy, count = parse_kernels(kernels)
    try:
        terminals = latest_activity(await get("terminals"))
    except HTTPClientError as e:
        if e.code != 404:  # 404: the server has terminals disabled
            raise
        terminals = None
    return ServerActivity(busy, count, terminals, latest_activity(kernels))
