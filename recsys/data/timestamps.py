"""The one convention for time: aware input with an offset, naive UTC inside, "Z" outside.

Events carry ISO-8601 timestamps with a time and a UTC offset (``Z`` or
``+HH:MM``); a date alone or a time without an offset names no instant, so it
is refused rather than guessed. Accepted instants lie from 1970-01-01T00:00Z
to one day after now: earlier or later ones are typing mistakes, and the
bounds keep every stored value far from the calendar's ends. Inside, times
are naive UTC ``datetime`` values (what both database back-ends store); they
leave the program as ``2026-11-29T10:00:00Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from recsys.errors import quote

EARLIEST = datetime(1970, 1, 1)
# Clocks of event senders drift; a day ahead allows for that and for time zones.
MAX_AHEAD = timedelta(days=1)
# A date, a time, and an offset: 2026-11-29T10:00:00Z, 2026-11-29 10:00:00.5+01:00.
ISO_WITH_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}:?\d{2})"
)
TIMESTAMP_RULE = (
    "an ISO-8601 date-time with a UTC offset (like 2026-01-31T12:00:00Z or "
    "2026-01-31T13:00:00+01:00), from 1970-01-01 to one day after now"
)


def utc_now() -> datetime:
    """Return the current time as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def retention_cutoff(days: int | None, now: datetime | None = None) -> datetime | None:
    """Return the moment before which events are past a retention of ``days`` days.

    The one rule for the window: training (either engine) reads the events
    recorded at or after it, and pruning deletes those recorded before it.

    Args:
        days: The retention in days (``EVENT_RETENTION_DAYS``); None: kept for ever.
        now: The current naive-UTC time (default: the clock).

    Returns:
        The cutoff, naive UTC; None when events are kept for ever.
    """
    return None if days is None else (now or utc_now()) - timedelta(days=days)


def to_naive_utc(value: datetime) -> datetime:
    """Return an aware datetime as naive UTC; a naive one is taken as UTC already."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def format_utc(value: datetime | None) -> str | None:
    """Return ``2026-11-29T10:00:00Z`` for a naive-UTC or aware datetime (None stays None)."""
    if value is None:
        return None
    return to_naive_utc(value).isoformat() + "Z"


def parse_timestamp(text: str, now: datetime | None = None) -> datetime:
    """Parse an event timestamp into naive UTC.

    Args:
        text: ISO-8601 with a time and an offset, e.g. ``2026-11-29T10:00:00Z``.
        now: The current naive-UTC time (default: the clock), for the upper bound.

    Raises:
        ValueError: The text breaks ``TIMESTAMP_RULE``; the message says how.
    """
    if not ISO_WITH_OFFSET.fullmatch(text):
        raise ValueError(f"timestamp must be {TIMESTAMP_RULE}, got {quote(text)}")
    try:
        # Offsets such as -14:00 on 9999-12-31 overflow while converting to UTC.
        value = to_naive_utc(datetime.fromisoformat(text.replace("z", "Z")))
    except (ValueError, OverflowError):
        raise ValueError(f"timestamp must be {TIMESTAMP_RULE}, got {quote(text)}") from None
    latest = (now or utc_now()) + MAX_AHEAD
    if not EARLIEST <= value <= latest:
        raise ValueError(f"timestamp must be {TIMESTAMP_RULE}, got {quote(text)}")
    return value
