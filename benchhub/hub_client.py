"""The hub REST API as BenchHub's services use it: paged reads, server stop and start.

A service reads the hub with its own token (``JUPYTERHUB_API_TOKEN``) and only the scopes its
role grants. Reads are paged (``limit`` users per request, JupyterHub's pagination), so a pass
over the hub costs one request per page, not one per workspace; :attr:`HubClient.calls` counts
requests for the benchmarks. Every request has a timeout.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

__all__ = ["HubClient", "HubServer"]

PAGE_SIZE = 200
_PAGINATED = "application/jupyterhub-pagination+json"


@dataclass(frozen=True)
class HubServer:
    """One named server (workspace) of a user, as the hub reports it."""

    user: str
    name: str
    model: dict

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"

    @property
    def project(self) -> str:
        """The workspace's project ("" for its owner's personal project)."""
        project = (self.model.get("user_options") or {}).get("project", "")
        return project if isinstance(project, str) else ""


class HubClient:
    """Calls the hub API at ``api_url`` (e.g. ``http://127.0.0.1:8081/hub/api``) with ``token``.

    Defaults come from the environment the hub gives a managed service.
    """

    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 30):
        self.api_url = (api_url or os.environ.get("JUPYTERHUB_API_URL", "")).rstrip("/")
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.timeout = timeout
        self.calls = 0

    async def request(self, method: str, path: str, body: dict | None = None, **headers) -> dict:
        """One API call; the decoded JSON body ({} when empty). HTTP errors raise
        ``tornado.httpclient.HTTPClientError`` with the hub's status code."""
        self.calls += 1
        request = HTTPRequest(
            f"{self.api_url}/{path.lstrip('/')}",
            method=method,
            headers={"Authorization": f"token {self.token}", **headers},
            body=json.dumps(body) if body is not None else (None if method == "GET" else ""),
            allow_nonstandard_methods=True,
            request_timeout=self.timeout,
        )
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body) if response.body else {}

    async def active_servers(self, page_size: int = PAGE_SIZE) -> AsyncIterator[HubServer]:
        """Every named server that is running or pending, one request per ``page_size`` users
        (``state=active`` lists only users with an active server)."""
        offset = 0
        while True:
            page = await self.request(
                "GET", f"users?state=active&offset={offset}&limit={page_size}", Accept=_PAGINATED
            )
            users = page["items"] if isinstance(page, dict) else page
            for user in users:
                for name, server in (user.get("servers") or {}).items():
                    if name:  # workspaces are named servers
                        yield HubServer(user["name"], name, server)
            following = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not following or not users:
                return
            offset = following["offset"]

    async def workspace_options(self) -> dict[str, dict]:
        """``{"user/workspace": user_options}`` of every running or pending workspace."""
        return {s.key: s.model.get("user_options") or {} async for s in self.active_servers()}

    async def project_of(self, user: str, name: str) -> str | None:
        """The project of ``user``'s workspace ``name``, running or not ("" for a personal
        one), None when the user or the workspace does not exist."""
        try:
            model = await self.request("GET", f"users/{quote(user)}?include_stopped_servers=1")
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise
        server = (model.get("servers") or {}).get(name)
        return HubServer(user, name, server).project if server is not None else None

    async def project_workspaces(
        self, project: str, page_size: int = PAGE_SIZE
    ) -> list[tuple[str, str]]:
        """``(user, workspace)`` of every workspace of ``project``, running or not, sorted."""
        found, offset = [], 0
        while True:
            page = await self.request(
                "GET",
                f"users?include_stopped_servers=1&offset={offset}&limit={page_size}",
                Accept=_PAGINATED,
            )
            users = page["items"] if isinstance(page, dict) else page
            for user in users:
                for name, server in (user.get("servers") or {}).items():
                    if name and HubServer(user["name"], name, server).project == project:
                        found.append((user["name"], name))
            following = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not following or not users:
                return sorted(found)
            offset = following["offset"]

    async def server(self, user: str, name: str) -> dict | None:
        """The server model of one workspace, None if it is not running or pending."""
        model = await self.request("GET", f"users/{quote(user)}")
        return (model.get("servers") or {}).get(name)

    async def stop_server(self, user: str, name: str, reason: str) -> None:
        """Ask the hub to stop a workspace, giving the reason for its activity log. A workspace
        that is already stopped is success."""
        try:
            await self.request(
                "DELETE", f"users/{quote(user)}/servers/{quote(name)}", {"reason": reason}
            )
        except HTTPClientError as e:
            if e.code not in (400, 404):  # 400: not running
                raise

    async def start_server(self, user: str, name: str) -> None:
        """Start a workspace with its stored options. One already running or starting is
        success."""
        try:
            await self.request("POST", f"users/{quote(user)}/servers/{quote(name)}", {})
        except HTTPClientError as e:
            if e.code != 400 or b"already" not in (e.response.body if e.response else b""):
                raise
