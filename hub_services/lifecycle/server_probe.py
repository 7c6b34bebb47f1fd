"""What a workspace's Jupyter server says about its kernels and terminals.

The service asks the server directly on its container address (not through the hub's proxy,
whose traffic counts as user activity) with ``no_track_activity=1`` so that asking does not
itself count as activity. ``execution_state`` "busy" on any kernel means a computation is
running, browser or not: the case jupyterhub-idle-culler#55 is about.

The server is the user's program (a ``jupyter_server_config.py`` in their home can wrap it),
so it is asked with the only credential it may see: its own API token, which the hub gave it
at spawn (``JUPYTERHUB_API_TOKEN``, role ``server``: ``access:servers`` on that one server),
and through :func:`~benchhub.workspace_http.fetch_bounded` (no redirects, bounded body,
a deadline). Its answers can lie; the worst a lie does is stop or keep up its own workspace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from tornado.httpclient import HTTPClientError

from benchhub.workspace_http import fetch_bounded

__all__ = [
    "MAX_ANSWER_BYTES",
    "ServerActivity",
    "latest_activity",
    "parse_kernels",
    "probe_server",
    "server_token",
]

# A kernel or terminal model is a few hundred bytes: 1 MiB is thousands of them.
MAX_ANSWER_BYTES = 1024 * 1024


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


def server_token(inspect: dict) -> str | None:
    """The server's own API token from its container's ``docker inspect`` (the environment
    the hub's spawner gave it), or None when it has none."""
    for item in (inspect.get("Config") or {}).get("Env") or ():
        name, _, value = item.partition("=")
        if name == "JUPYTERHUB_API_TOKEN" and value:
            return value
    return None


async def probe_server(
    base_url: str, token: str, wait_s: float = 10, max_bytes: int = MAX_ANSWER_BYTES
) -> ServerActivity:
    """Ask the server at ``base_url`` (``http://<ip>:<port>/user/<name>/<workspace>/``) with
    ``token``, which must be that server's own (see the module docstring). Raises
    ``tornado.httpclient.HTTPClientError``, ``OSError``, ``ValueError`` (not JSON) or
    :class:`~benchhub.workspace_http.ResponseTooLarge` if it does not answer properly:
    the caller then treats the workspace as not idle."""
    headers = {"Authorization": f"token {token}"}

    async def get(path: str) -> object:
        url = f"{base_url.rstrip('/')}/api/{path}?no_track_activity=1"
        body = await fetch_bounded(url, headers=headers, wait_s=wait_s, max_bytes=max_bytes)
        return json.loads(body)

    kernels = await get("kernels")
    busy, count = parse_kernels(kernels)
    try:
        terminals = latest_activity(await get("terminals"))
    except HTTPClientError as e:
        if e.code != 404:  # 404: the server has terminals disabled
            raise
        terminals = None
    return ServerActivity(busy, count, terminals, latest_activity(kernels))
