"""Times as the service pages show them to people: UTC to the minute, e.g. ``2026-11-30 07:04 UTC``.

APIs keep full ISO 8601 times; only what a person reads goes through :func:`display_time`.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["display_time"]

NO_TIME = "—"


def display_time(value: datetime | str | float | None) -> str:
    """``value`` as ``YYYY-MM-DD HH:MM UTC``. Accepts a datetime (naive ones are taken as UTC,
    as the services store them), an ISO 8601 string (a trailing ``Z`` too), or seconds since
    the epoch; None, "" and an unreadable string give "—"."""
    if value is None or value == "":
        return NO_TIME
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return NO_TIME
    elif isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
