"""Sharing's handlers answer only once the journal entry is written (`_AnswerAfterJournal`).

JupyterHub's sharing handlers finish their answer inside the method BenchHub extends, and the
journal entry comes after it; a caller reading the journal on the answer could miss the entry
(stop 24's CI: a refused request seemed to add the entry of the allowed one before it). The
base handler here stands in for JupyterHub's, which needs a whole hub: it answers the way they
do (``finish`` or a redirect inside ``post``). The server and client are real tornado.
"""

from __future__ import annotations

import pytest
from tornado import httpclient, httpserver, web
from tornado.testing import bind_unused_port

from bench_spawner.sharing import _AnswerAfterJournal


class _JupyterHubLike(web.RequestHandler):
    """Answers inside ``post`` as JupyterHub's share handlers do."""

    def post(self, how):
        if how == "refuse":
            raise web.HTTPError(404, "no such share")
        if how == "redirect":
            self.redirect("/somewhere")
        else:
            self.finish('{"code": "c"}')


class _Journaled(_AnswerAfterJournal, _JupyterHubLike):
    def initialize(self, seen):
        self.seen = seen

    async def post(self, how):
        async with self._answer_held():
            super().post(how)
            # the journal write: the answer must not have gone out yet
            self.seen.append(("answered before the journal", self._finished))
            if how == "journal-fails":
                raise OSError("disk full")


@pytest.fixture
async def served():
    seen: list = []
    sock, port = bind_unused_port()
    http = httpserver.HTTPServer(web.Application([(r"/([\w-]+)", _Journaled, {"seen": seen})]))
    http.add_sockets([sock])
    yield f"http://127.0.0.1:{port}", seen, httpclient.AsyncHTTPClient()
    http.stop()


async def _post(client, url):
    return await client.fetch(
        url, method="POST", body=b"", raise_error=False, follow_redirects=False
    )


async def test_the_answer_goes_out_after_the_journal_entry_is_written(served):
    url, seen, client = served
    r = await _post(client, f"{url}/answer")
    assert (r.code, r.body) == (200, b'{"code": "c"}')
    assert seen == [("answered before the journal", False)]


async def test_a_redirect_is_held_the_same_way(served):
    url, seen, client = served
    r = await _post(client, f"{url}/redirect")
    assert (r.code, r.headers["Location"]) == (302, "/somewhere")
    assert seen == [("answered before the journal", False)]


async def test_a_refusal_before_any_answer_is_sent_as_the_refusal(served):
    url, seen, client = served
    r = await _post(client, f"{url}/refuse")
    assert r.code == 404
    assert seen == []


async def test_a_failed_journal_write_still_sends_the_answer_of_the_change_made(served):
    url, seen, client = served
    r = await _post(client, f"{url}/journal-fails")
    assert (r.code, r.body) == (200, b'{"code": "c"}')
    assert seen == [("answered before the journal", False)]
