"""Events: one thing a user did with a product, and the one validator for them.

Both doors into the store use it: ``POST /interactions`` (JSON objects) and
the CSV import (``read_interactions_csv``, which validates through
``load_interactions``). Ids are positive 64-bit integers; an event's ``type``
is one of ``EVENT_TYPES`` (view, click, cart, purchase, rating, dislike); a
rating carries a ``value`` of 1 to 5 stars and no other type takes one. The
older form, ``purchased`` 0/1 without a type, is a click or a purchase:
``purchased`` is 0, 1, true or false (never 0.5 or "1"; the API's body reader
has already made 1.0 the integer 1, as JSON Schema reads it) and, next to a
type, must agree with it. A timestamp follows
``recsys.data.timestamps.TIMESTAMP_RULE``. An ``event_id`` (1 to 64
characters) names the event once per store, so a batch sent again stores
nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.interactions import (
    EVENT_ID_COLUMN,
    EVENT_TYPES,
    MAX_EVENT_ID,
    MAX_ID,
    RATING_VALUES,
    TIMESTAMP_COLUMN,
    VALUE_COLUMN,
    event_codes,
    load_interactions,
)
from recsys.data.timestamps import parse_timestamp
from recsys.errors import RecsysError, quote

EVENT_FIELDS = ("user_id", "product_id", "type", "value", "purchased", "timestamp", "event_id")
REQUIRED_EVENT_FIELDS = ("user_id", "product_id")


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


class EventIdConflictError(RecsysError, ValueError):
    """An event_id already names an event with other content (a 409 for the API).

    Args:
        index: 0-based position of the event in its batch.
        event_id: The reused id.
        difference: How the contents differ (``Event.differs_from``).
        earlier: The position of the batch's earlier event of that id, or
            None when the store holds it.
    """

    def __init__(self, index: int, event_id: str, difference: str, earlier: int | None = None):
        self.index = index
        self.event_id = event_id
        self.difference = difference
        self.earlier = earlier
        super().__init__(f"event {index}: {self.problem(f'event {earlier}')}")

    def problem(self, earlier: str) -> str:
        """Return the problem, naming the batch's earlier event as ``earlier`` says."""
        where = "recorded" if self.earlier is None else f"in {earlier}"
        return (
            f"event_id {quote(self.event_id)} already names another event "
            f"({self.difference} {where}); an event_id names one event for good"
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction to record.

    Built either from a type (``Event(7, 1, type="cart")``) or, as before types
    existed, from ``purchased`` alone (a click, or a purchase when true);
    ``purchased`` and ``type`` always agree once built.

    Attributes:
        user_id: Positive integer user id (unknown users are created).
        product_id: Positive integer id of a catalog product.
        purchased: Whether it is a purchase.
        created_at: When it happened, naive UTC; None means "now".
        type: One of ``EVENT_TYPES`` ("" at construction: from ``purchased``).
        value: The stars of a rating (1-5); None for every other type.
        event_id: The sender's id of the event (1-64 characters), or None.
    """

    user_id: int
    product_id: int
    purchased: bool = False
    created_at: datetime | None = None
    type: str = ""
    value: int | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", "purchase" if self.purchased else "click")
        else:
            object.__setattr__(self, "purchased", self.type == "purchase")

    def differs_from(self, other: Event) -> str | None:
        """Return how this event differs from another of the same event_id, or None.

        Its time counts only when this one names it: an event sent without a
        timestamp was stored at the time it arrived, which a retry cannot repeat.
        The answer reads "user_id 7, where 8 is" (the other's value follows).
        """
        for field in ("user_id", "product_id", "type", "value"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                return f"{field} {quote(mine)}, where {quote(theirs)} is"
        if self.created_at is not None and self.created_at != other.created_at:
            return f"timestamp {self.created_at.isoformat()}, where another is"
        return None


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
        row: A mapping with ``user_id``, ``product_id``, and a ``type`` (with
            a ``value`` for a rating) or ``purchased`` (or both, agreeing); an
            optional ``timestamp`` and ``event_id``.
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
    if "type" not in row and "purchased" not in row:
        missing.append("type (or purchased)")
    if missing:
        raise InvalidEventError(index, f"missing field(s) {missing}")
    try:
        user_id = _positive_id(row["user_id"], "user_id")
        product_id = _positive_id(row["product_id"], "product_id")
        kind = _event_type(row)
        value = _event_value(kind, row.get("value"))
        created_at = None
        stamp = row.get("timestamp")
        if stamp is not None:
            if not isinstance(stamp, str):
                raise TypeError(f"timestamp must be an ISO-8601 string, got {quote(stamp)}")
            created_at = parse_timestamp(stamp)
        event_id = _event_id(row.get("event_id"))
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(index, str(exc)) from None
    return Event(user_id, product_id, kind == "purchase", created_at, kind, value, event_id)


def _event_type(row: Mapping) -> str:
    """Return the event's type: its ``type``, else click or purchase as ``purchased`` says."""
    purchased = _purchased_flag(row["purchased"]) if "purchased" in row else None
    kind = row.get("type")
    if kind is None:
        if purchased is None:
            raise TypeError(f"type must be one of {', '.join(EVENT_TYPES)}, got null")
        return "purchase" if purchased else "click"
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}, got {quote(kind)}")
    if purchased is not None and purchased != (kind == "purchase"):
        raise ValueError(
            f"purchased {quote(row['purchased'])} contradicts type {quote(kind)} "
            "(true exactly for a purchase; send type alone)"
        )
    return kind


def _event_value(kind: str, value: Any) -> int | None:
    """Return a rating's stars; refuse a value on any other type."""
    low, high = RATING_VALUES
    if kind != "rating":
        if value is not None:
            raise ValueError(f"value is only for a rating; type {quote(kind)} takes none")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = "none" if value is None else quote(value)
        raise ValueError(f"value must be an integer from {low} to {high} on a rating, got {shown}")
    return value


def _event_id(value: Any) -> str | None:
    """Return a valid event_id (1-64 characters), or None when the event has none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"event_id must be a string of 1 to {MAX_EVENT_ID} characters")
    if not value:
        raise ValueError(f"event_id is empty; give 1 to {MAX_EVENT_ID} characters or leave it out")
    if len(value) > MAX_EVENT_ID:
        raise ValueError(f"event_id is {len(value)} characters long; at most {MAX_EVENT_ID}")
    return value


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
    rows = len(log)
    if TIMESTAMP_COLUMN in log:
        stamps = [None if pd.isna(t) else t.to_pydatetime() for t in log[TIMESTAMP_COLUMN]]
    else:
        stamps = [None] * rows
    types = [EVENT_TYPES[code] for code in event_codes(log).tolist()]
    values: list = (
        [v or None for v in log[VALUE_COLUMN].tolist()] if VALUE_COLUMN in log else [None] * rows
    )
    ids: list = log[EVENT_ID_COLUMN].tolist() if EVENT_ID_COLUMN in log else [None] * rows
    return [
        Event(int(user_id), int(product_id), kind == "purchase", created_at, kind, value, event_id)
        for user_id, product_id, created_at, kind, value, event_id in zip(
            log["user_id"].tolist(),
            log["product_clicked"].tolist(),
            stamps,
            types,
            values,
            ids,
            strict=True,
        )
    ]


def unique_events(events: Sequence[Event]) -> tuple[list[int], int]:
    """Return the positions of a batch's events to store, and how many repeat an earlier one.

    An event_id given twice in one batch is one event: the later copies are
    already known (and must say the same).

    Raises:
        EventIdConflictError: A later copy says something else.
    """
    first: dict[str, int] = {}
    keep: list[int] = []
    for index, event in enumerate(events):
        if event.event_id is None:
            keep.append(index)
            continue
        seen = first.setdefault(event.event_id, index)
        if seen == index:
            keep.append(index)
            continue
        difference = event.differs_from(events[seen])
        if difference is not None:
            raise EventIdConflictError(index, event.event_id, difference, earlier=seen)
    return keep, len(events) - len(keep)


def read_interactions_csv(path: str | Path) -> list[Event]:
    """Read and validate an interactions CSV into events.

    Args:
        path: A file with header ``user_id,product_clicked,purchased`` and any
            of ``timestamp, type, value, event_id`` (``load_interactions``).

    Raises:
        DataFileError: The file is missing, empty, or has a bad header or line.
    """
    return events_from_log(load_interactions(path))
