"""The hub's client for a user's spend this month (benchhub.spend_client): a lifecycle service
that is down, too slow or not configured is a SpendUnknown saying so (never a spend of 0), and
its token is generated once and kept private. A real usage API answers it in
tests/integration/test_budgets.py."""

from __future__ import annotations

import socket
import time

import pytest

from benchhub.spend_client import SpendClient, SpendUnknown, reader_token


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


async def test_a_lifecycle_service_that_is_down_is_unknown_spend_not_zero():
    client = SpendClient(f"http://127.0.0.1:{closed_port()}/services/lifecycle/api/usage", "t")
    with pytest.raises(SpendUnknown, match="^lifecycle service unavailable"):
        await client.month_to_date("alice")


async def test_a_lifecycle_service_that_does_not_answer_in_time_is_unknown_within_the_timeout():
    with socket.socket() as listener:  # accepts connections (the backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/usage"
        started = time.monotonic()
        with pytest.raises(SpendUnknown, match="^lifecycle service unavailable"):
            await SpendClient(url, "t", timeout=0.5).month_to_date("alice")
        assert time.monotonic() - started < 5


async def test_without_a_url_or_token_the_spend_is_unknown_and_says_what_to_configure():
    with pytest.raises(SpendUnknown, match="BenchQuotas.spend_url or spend_token"):
        await SpendClient("", "").month_to_date("alice")


def test_the_readers_token_is_made_once_private_and_read_back(tmp_path):
    first = reader_token(tmp_path)
    assert len(first) >= 40 and reader_token(tmp_path) == first
    assert (tmp_path / "budget-reader-token").stat().st_mode & 0o777 == 0o600
