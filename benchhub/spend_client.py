"""A user's spend this month, read from the usage ledger: the client the hub uses for budgets.

The ledger lives in the lifecycle service; its usage API already answers "what did this user
spend from the start of this calendar month (UTC) until now", in the site's unit:
``GET <lifecycle>/api/usage?user=<name>&group_by=user`` (``from`` defaults to the month's first
midnight UTC, ``to`` to now; ``total.charge`` in ``unit``). So budgets need no second
endpoint: :class:`SpendClient` asks that one with a token of its own (the hub's
``budget-reader`` service in ``jupyterhub_config.py``: ``read:servers``, which the usage API's
access rule needs to see any user's usage, and ``access:services!service=lifecycle``).

Every request has a short timeout. When the service cannot answer (not running, too slow, an
error status), :class:`SpendUnknown` says why: callers refuse what the budget would govern
rather than let it through (a budget is not lifted because the ledger is down).

:func:`reader_token` keeps the client's token in the hub's state directory (generated once,
mode 0600), so a hub restart does not register a new token each time.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .atomic import write_once
from .quotas import Spend

__all__ = ["TOKEN_FILE", "SpendClient", "SpendUnknown", "reader_token"]

TOKEN_FILE = "budget-reader-token"
UNAVAILABLE = "lifecycle service unavailable"


class SpendUnknown(Exception):
    """The lifecycle service could not say what a user spent; ``str(e)`` says why."""


def reader_token(state_dir: str | os.PathLike) -> str:
    """The spend reader's API token, in ``<state_dir>/budget-reader-token``: created on the
    first call (43 URL-safe characters, mode 0600, atomically: two first runs agree)."""
    path = Path(state_dir) / TOKEN_FILE
    if not path.exists():
        write_once(path, secrets.token_urlsafe(32) + "\n", 0o600)
    return path.read_text().strip()


class SpendClient:
    """Asks the usage API at ``usage_url`` (e.g.
    ``http://127.0.0.1:10102/services/lifecycle/api/usage``) with ``token``, waiting at most
    ``timeout`` seconds."""

    def __init__(self, usage_url: str, token: str, timeout: float = 5.0):
        self.usage_url = usage_url
        self.token = token
        self.timeout = timeout

    async def month_to_date(self, user: str) -> Spend:
        """``user``'s charge from the start of this UTC month until now. Raises
        :class:`SpendUnknown` when the service is not configured, unreachable, slow or
        answers an error."""
        if not self.usage_url or not self.token:
            raise SpendUnknown(
                f"{UNAVAILABLE} (no BenchQuotas.spend_url or spend_token is configured)"
            )
        request = HTTPRequest(
            f"{self.usage_url}?{urlencode({'user': user, 'group_by': 'user'})}",
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.code == 599:  # tornado's code for a timeout or a refused connection
                raise SpendUnknown(f"{UNAVAILABLE} ({e.message})") from None
            raise SpendUnknown(f"{UNAVAILABLE} (it answered {e.code}: {_message(e)})") from None
        except OSError as e:
            raise SpendUnknown(f"{UNAVAILABLE} ({e})") from None
        try:
            body = json.loads(response.body)
            return Spend(float(body["total"]["charge"]), str(body["unit"]))
        except (ValueError, KeyError, TypeError) as e:
            raise SpendUnknown(f"{UNAVAILABLE} (an answer without total.charge: {e})") from None


def _message(error: HTTPClientError) -> str:
    try:
        return json.loads(error.response.body)["message"]
    except Exception:
        return error.message or ""
