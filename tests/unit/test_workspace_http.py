"""Asking a server that a user controls: no redirect followed, the answer bounded in size and
time, and the lifecycle probe presenting the token it was given (the server's own).

The servers here are real HTTP servers on loopback (tornado), playing a workspace's Jupyter
server and a host service a redirect could point at.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from tornado import web
from tornado.httpclient import HTTPClientError
from tornado.httpserver import HTTPServer

from benchhub.workspace_http import ResponseTooLarge, fetch_bounded
from hub_services.lifecycle.server_probe import probe_server, server_token


class Recorded(web.RequestHandler):
    def get(self, *args):
        self.settings["asked"].append((self.request.path, dict(self.request.headers)))
        kind = self.settings["answer"]
        if kind == "redirect":
            self.redirect(self.settings["target"])
        elif kind == "huge":
            for _ in range(64):
                self.write(b"[" + b" " * (64 * 1024) + b"]")
        elif kind == "kernels":
            if self.request.path.endswith("/terminals"):
                self.write(json.dumps([]))
            else:
                self.write(
                    json.dumps(
                        [
                            {
                                "id": "k1",
                                "execution_state": "busy",
                                "last_activity": "2026-01-31T18:00:00Z",
                            }
                        ]
                    )
                )
        else:
            self.write(b'{"ok": true}')


class Trickle(web.RequestHandler):
    async def get(self):
        for _ in range(100):
            self.write(b" ")
            await self.flush()
            await asyncio.sleep(0.1)


async def serve(answer: str, target: str = "") -> tuple[str, list, HTTPServer]:
    app = web.Application(
        [(r"/slow", Trickle), (r"/(.*)", Recorded)], asked=[], answer=answer, target=target
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = HTTPServer(app)
    server.add_sockets([sock])
    return f"http://127.0.0.1:{sock.getsockname()[1]}", app.settings["asked"], server


async def test_a_plain_answer_is_returned():
    url, _, server = await serve("plain")
    try:
        assert await fetch_bounded(f"{url}/api", max_bytes=1024, wait_s=5) == b'{"ok": true}'
    finally:
        server.stop()


async def test_a_redirect_to_a_host_service_is_an_error_and_is_not_followed():
    host_url, host_asked, host = await serve("plain")
    url, _, server = await serve("redirect", target=f"{host_url}/hub/api/users")
    try:
        with pytest.raises(HTTPClientError) as refused:
            await fetch_bounded(
                f"{url}/api", max_bytes=1024, wait_s=5, headers={"Authorization": "token own"}
            )
        assert refused.value.code == 302
        assert host_asked == []
    finally:
        server.stop()
        host.stop()


async def test_an_answer_over_the_limit_is_dropped_at_the_limit():
    url, _, server = await serve("huge")
    try:
        with pytest.raises(ResponseTooLarge):
            await fetch_bounded(f"{url}/api", max_bytes=256 * 1024, wait_s=10)
    finally:
        server.stop()


async def test_a_trickling_answer_ends_at_the_deadline():
    url, _, server = await serve("plain")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(HTTPClientError) as late:
            await fetch_bounded(f"{url}/slow", max_bytes=1024 * 1024, wait_s=1)
        assert late.value.code == 599
        assert loop.time() - started < 5
    finally:
        server.stop()


async def test_the_probe_presents_the_token_it_is_given_and_reads_the_kernels():
    url, asked, server = await serve("kernels")
    try:
        activity = await probe_server(f"{url}/user/ida/ws/", "the-servers-own-token")
    finally:
        server.stop()
    assert activity.kernels_busy and activity.kernels == 1
    assert [path for path, _ in asked] == ["/user/ida/ws/api/kernels", "/user/ida/ws/api/terminals"]
    assert {h["Authorization"] for _, h in asked} == {"token the-servers-own-token"}


def test_the_server_token_comes_from_the_containers_environment():
    inspect = {
        "Config": {"Env": ["PATH=/usr/bin", "JUPYTERHUB_API_TOKEN=abc=def", "JUPYTERHUB_USER=ida"]}
    }
    assert server_token(inspect) == "abc=def"
    assert server_token({"Config": {"Env": ["JUPYTERHUB_API_TOKEN="]}}) is None
    assert server_token({"Config": {}}) is None
