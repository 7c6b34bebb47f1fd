"""The one way tests and benchmarks wait: for a condition, with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["NotYet", "WaitTimedOut", "wait"]


class NotYet:
    """A false observation that keeps what was seen, for :class:`WaitTimedOut` to report."""

    def __init__(self, seen: Any):
        self.seen = seen

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"not yet: {self.seen!r}"


class WaitTimedOut(AssertionError):
    """A condition did not hold in time. ``what`` is the condition awaited, ``timeout`` the
    seconds waited and ``last`` the last observation (what was reached instead), so a test
    failure or a benchmark's row can say how far things got."""

    def __init__(self, what: str, timeout: float, last: Any):
        super().__init__(f"not after {timeout:g} s: {what} (last seen: {last!r})")
        self.what, self.timeout, self.last = what, timeout, last


def wait(
    observe: Callable[[], Any],
    timeout: float,
    what: str,
    step: float = 0.5,
    *,
    until: Callable[[Any], Any] = bool,
) -> Any:
    """Call ``observe()`` until ``until(observation)`` is true and return that observation.

    The first look is at once, then after 0.05 s, doubling up to every ``step`` seconds (a
    quick condition is seen quickly, a slow one costs few looks; ``step`` also bounds how late
    a measured event is seen). Raises :class:`WaitTimedOut` after ``timeout`` seconds, with the
    last observation. Exceptions of ``observe`` propagate.
    """
    deadline = time.monotonic() + timeout
    delay = min(0.05, step)
    while True:
        observed = observe()
        if until(observed):
            return observed
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimedOut(what, timeout, observed)
        time.sleep(min(delay, left))
        delay = min(delay * 2, step)
