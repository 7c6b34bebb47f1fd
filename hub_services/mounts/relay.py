"""The hub's door to the mounts service, for workspaces.

Workspaces reach one port of the host: the hub's API (the host firewall rejects every other
host port, and restricted workspaces have no other route at all). So the hub relays
``/hub/api/bench/mounts/<user>/<workspace>`` to the mounts service's
``api/mounts/<user>/<workspace>`` on the loopback: method, query, body (at most
:data:`MAX_BODY` bytes) and the caller's ``Authorization`` header, nothing else; no cookie
goes along and the relay adds no credential of its own, so a request through it can do
exactly what the same token could do at the service. The service authenticates and decides.
Installed in the hub process by ``jupyterhub_config.py`` (``JupyterHub.extra_handlers``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

__all__ = ["MAX_BODY", "MountsRelay", "relay_route"]

MAX_BODY = 64 * 1024


class MountsRelay(web.RequestHandler):
    """Forwards one request to the mounts service at ``upstream``
    (``http://127.0.0.1:<port>/services/mounts/api/mounts``)."""

    def initialize(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")

    def check_xsrf_cookie(self) -> None:
        """Token callers only, and no cookie is forwarded: nothing for a forged form to use."""

    def _answer(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"status": status, "message": message}))

    async def _relay(self, user: str, workspace: str) -> None:
        body = self.request.body or b""
        if len(body) > MAX_BODY:
            self._answer(413, f"body must be at most {MAX_BODY} bytes")
            return
        url = f"{self.upstream}/{quote(user, safe='')}/{quote(workspace, safe='')}"
        if self.request.query:
            url += "?" + self.request.query
        headers = {"Content-Type": "application/json"}
        if self.request.headers.get("Authorization"):
            headers["Authorization"] = self.request.headers["Authorization"]
        method = self.request.method
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body if method == "POST" else None,
            follow_redirects=False,
            request_timeout=90,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError):  # refused, unreachable, timed out: not HTTP answers
            response = None
        if response is None or response.code == 599:
            self._answer(503, "the mounts service does not answer; try again shortly")
            return
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(response.body or b"")

    get = post = delete = _relay


def relay_route(service_port: int) -> tuple:
    """The hub handler for ``JupyterHub.extra_handlers`` (under the hub's prefix)."""
    upstream = f"http://127.0.0.1:{service_port}/services/mounts/api/mounts"
    return (r"/api/bench/mounts/([^/]+)/([^/]+)", MountsRelay, {"upstream": upstream})
