"""Events: one click or purchase to record, and the one validator for them.

Both doors into the store use it: ``POST /interactions`` (JSON objects) and
the CSV import (``read_interactions_csv``, which validates through
``load_interactions``). Ids are positive 64-bit integers; ``purchased`` is
0, 1, true or false (never 0.5 or "1"; the API's body reader has already made
1.0 the integer 1, as JSON Schema reads it); a timestamp follows
``recsys.data.timestamps.TIMESTAMP_RULE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.interactions import MAX_ID, TIMESTAMP_COLUMN, load_interactions
from recsys.data.timestamps import parse_timestamp
from recsys.errors import RecsysError, quote

EVENT_FIELDS = ("user_id", "product_id", "purchased", "timestamp")
REQUIRED_EVENT_FIELDS = ("user_id", "product_id", "purchased")


class InvalidEventError(RecsysError, ValueError):
    """One event of a batch is malformed (a 400 for the API).

    Args:
        index: 0-based position of the event in its batch.
        reason: What is wrong, naming the field and the accepted values.
    """

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"event {index}: {reason}")


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction to record.

    Attributes:
        user_id: Positive integer user id (unknown users are created).
        product_id: Positive integer id of a catalog product.
        purchased: Whether the click ended in a purchase.
        created_at: When it happened, naive UTC; None means "now".
    """

    user_id: int
    product_id: int
    purchased: bool
    created_at: datetime | None = None


def _positive_id(value: Any, field: str) -> int:
    # bool is an int subclass; true/false is never an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an integer from 1 to {MAX_ID}, got {quote(value)}")
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{field} must be an integer from 1 to {MAX_ID}, got {quote(value)}")
    return value


def _purchased_flag(value: Any) -> bool:
    # Floats and "1" are refused: a sender that types fractions or strings here
    # has a bug worth hearing about, and JSON has true/false for this.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"purchased must be 0, 1, true or false, got {quote(value)}")


def event_from_mapping(row: Any, index: int) -> Event:
    """Validate one JSON-like event and return it as an ``Event``.

    Args:
        row: A mapping with ``user_id``, ``product_id``, ``purchased`` and an
            optional ``timestamp``.
        index: The row's position in its batch, for the error.

    Raises:
        InvalidEventError: The row is malformed; the message names the field.
    """
    if not isinstance(row, Mapping):
        raise InvalidEventError(index, f"an event must be a JSON object, got {type(row).__name__}")
    extra = sorted(set(row) - set(EVENT_FIELDS))
    if extra:
        raise InvalidEventError(
            index, f"unexpected field(s) {quote(extra)}; accepted: {list(EVENT_FIELDS)}"
        )
    missing = [f for f in REQUIRED_EVENT_FIELDS if f not in row]
    if missing:
        raise InvalidEventError(index, f"missing field(s) {missing}")
    try:
        user_id = _positive_id(row["user_id"], "user_id")
        product_id = _positive_id(row["product_id"], "product_id")
        purchased = _purchased_flag(row["purchased"])
        created_at = None
        stamp = row.get("timestamp")
        if stamp is not None:
            if not isinstance(stamp, str):
                raise TypeError(f"timestamp must be an ISO-8601 string, got {quote(stamp)}")
            created_at = parse_timestamp(stamp)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(index, str(exc)) from None
    return Event(user_id, product_id, purchased, created_at)


def events_from_json(rows: Sequence[Any]) -> list[Event]:
    """Validate a batch of JSON-like events; the first bad one raises.

    Args:
        rows: Mappings as ``event_from_mapping`` accepts.

    Raises:
        InvalidEventError: For the first malformed row.
    """
    return [event_from_mapping(row, i) for i, row in enumerate(rows)]


def events_from_log(log: pd.DataFrame) -> list[Event]:
    """Return the events of a validated log frame (``load_interactions``'s output)."""
    if TIMESTAMP_COLUMN in log:
        stamps = [None if pd.isna(t) else t.to_pydatetime() for t in log[TIMESTAMP_COLUMN]]
    else:
        stamps = [None] * len(log)
    return [
        Event(int(user_id), int(product_id), bool(purchased), created_at)
        for user_id, product_id, purchased, created_at in zip(
            log["user_id"].tolist(),
            log["product_clicked"].tolist(),
            log["purchased"].tolist(),
            stamps,
            strict=True,
        )
    ]


def read_interactions_csv(path: str | Path) -> list[Event]:
    """Read and validate an interactions CSV into events.

    Args:
        path: A file with header ``user_id,product_clicked,purchased[,timestamp]``.

    Raises:
        DataFileError: The file is missing, empty, or has a bad header or line.
    """
    return events_from_log(load_interactions(path))
