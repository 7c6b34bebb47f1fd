"""The hub's relay to the mounts service passes the caller's token and nothing else."""

import json
import socket

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from hub_services.mounts.relay import MAX_BODY, relay_route


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Echo(web.RequestHandler):
    """Stands in for the mounts service: answers with what reached it."""

    def _echo(self, user, workspace):
        self.set_status(201 if self.request.method == "POST" else 200)
        self.write(
            {
                "path": self.request.path,
                "query": self.request.query,
                "user": user,
                "workspace": workspace,
                "headers": {k.lower(): v for k, v in self.request.headers.items()},
                "body": self.request.body.decode(),
            }
        )

    get = post = delete = _echo


@pytest.fixture
async def relay_url():
    service_port, hub_port = _port(), _port()
    service = web.Application([(r"/services/mounts/api/mounts/([^/]+)/([^/]+)", _Echo)]).listen(
        service_port, "127.0.0.1"
    )
    pattern, handler, kwargs = relay_route(service_port)
    hub = web.Application(
        [("/hub" + pattern, handler, kwargs)],
        xsrf_cookies=True,  # as the hub's settings
    ).listen(hub_port, "127.0.0.1")
    yield f"http://127.0.0.1:{hub_port}/hub/api/bench/mounts"
    service.stop()
    hub.stop()


async def _fetch(url, method="GET", body=None, headers=None):
    request = HTTPRequest(url, method=method, body=body, headers=headers or {})
    return await AsyncHTTPClient().fetch(request, raise_error=False)


async def test_the_token_body_and_query_reach_the_service_and_cookies_do_not(relay_url):
    headers = {"Authorization": "token abc", "Cookie": "jupyterhub-session-id=secret"}
    body = json.dumps({"mount_path": "/data/mounts/x", "source": "/data/project/x"})
    r = await _fetch(f"{relay_url}/alice/lab", "POST", body, headers)
    assert r.code == 201  # a token POST is not refused for want of an XSRF cookie
    seen = json.loads(r.body)
    assert seen["path"] == "/services/mounts/api/mounts/alice/lab"
    assert seen["headers"]["authorization"] == "token abc"
    assert "cookie" not in seen["headers"]
    assert json.loads(seen["body"])["source"] == "/data/project/x"
    r = await _fetch(f"{relay_url}/alice/lab?mount_path=/data/mounts/x", "DELETE", None, headers)
    assert json.loads(r.body)["query"] == "mount_path=/data/mounts/x"


async def test_without_a_token_the_service_sees_no_credentials(relay_url):
    seen = json.loads((await _fetch(f"{relay_url}/alice/lab")).body)
    assert "authorization" not in seen["headers"]


async def test_a_body_too_large_is_refused_before_the_service(relay_url):
    r = await _fetch(f"{relay_url}/alice/lab", "POST", "x" * (MAX_BODY + 1))
    assert r.code == 413 and str(MAX_BODY) in json.loads(r.body)["message"]


async def test_a_service_that_does_not_answer_is_a_503_saying_so():
    pattern, handler, kwargs = relay_route(_port())  # nothing listens there
    hub_port = _port()
    hub = web.Application([("/hub" + pattern, handler, kwargs)]).listen(hub_port, "127.0.0.1")
    try:
        r = await _fetch(f"http://127.0.0.1:{hub_port}/hub/api/bench/mounts/alice/lab")
        assert r.code == 503 and "mounts service" in json.loads(r.body)["message"]
    finally:
        hub.stop()
