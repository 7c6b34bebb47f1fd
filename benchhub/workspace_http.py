"""HTTP requests to a server that a user controls (a workspace's Jupyter server, a Spark UI).

Whatever answers on a workspace's port is the user's program: it may answer with a redirect
to a host service, an endless or gzip-bombed body, or trickle bytes forever. :func:`fetch_bounded`
is the one way BenchHub's services ask such a server: redirects are never followed (a 3xx is
an error like any other non-2xx), the body is never decompressed and never held beyond
``max_bytes``, and the whole exchange has a deadline. Which credential may go with the request
is the caller's decision, and the rule is in docs/security.md: only one worth no more than the
workspace it goes to (its own server token).
"""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import HTTPInputError

__all__ = ["ResponseTooLarge", "fetch_bounded"]


class ResponseTooLarge(Exception):
    """The server sent more than the caller's limit; the connection was dropped."""


async def fetch_bounded(
    url: str, *, max_bytes: int, wait_s: float, headers: dict[str, str] | None = None
) -> bytes:
    """The body of ``GET url``, at most ``max_bytes`` bytes, within ``wait_s`` seconds.

    Raises :class:`ResponseTooLarge` when the body is longer (reading stops there),
    ``tornado.httpclient.HTTPClientError`` for any status outside 2xx (3xx included: a
    redirect is not followed) or when ``wait_s`` passes, ``OSError`` when nothing answers.
    """
    received, overflowed = bytearray(), []

    def collect(chunk: bytes) -> None:
        if len(received) + len(chunk) > max_bytes:
            overflowed.append(True)
            # tornado closes the connection on an HTTPInputError from here, quietly
            raise HTTPInputError(f"more than {max_bytes} bytes")
        received.extend(chunk)

    request = HTTPRequest(
        url,
        headers=headers or {},
        follow_redirects=False,  # a redirect could point the request at a host service
        decompress_response=False,  # no gzip: the limit counts what we hold, not the wire
        connect_timeout=min(wait_s, 5),
        request_timeout=wait_s,
        streaming_callback=collect,
    )
    try:
        await AsyncHTTPClient().fetch(request)
    except HTTPClientError:
        if overflowed:
            raise ResponseTooLarge(f"{url} answered with more than {max_bytes} bytes") from None
        raise
    return bytes(received)
