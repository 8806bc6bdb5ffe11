"""GET /users/<id>/history: a user's interactions, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, jsonify

from recsys.data.interactions import MAX_ID
from recsys.data.timestamps import EARLIEST, format_utc
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import History, HistoryPageQuery

bp = Blueprint("history", __name__)

_MICROSECOND = timedelta(microseconds=1)
_LATEST_MICROS = (datetime.max - EARLIEST) // _MICROSECOND


@bp.get(f"/users/<int(min=1, max={MAX_ID}):user_id>/history")
@operation(
    "A user's interactions, newest first",
    (200, History),
    query=HistoryPageQuery,
    errors=[404],
    validate=True,
    tags=["events"],
)
@requires("read")
def user_history(user_id: int, query: HistoryPageQuery):
    store = runtime().store
    before = decode_cursor(query.cursor) if query.cursor else None
    entries = store.user_interactions(user_id, query.limit + 1, before)
    if not entries and not store.has_user(user_id):
        raise ApiError(404, "unknown_user", f"user_id {user_id} has no recorded events")
    page = entries[: query.limit]
    more = len(entries) > query.limit
    return jsonify(
        {
            "user_id": user_id,
            "interactions": [
                {
                    "product_id": e.product_id,
                    "type": e.type,
                    "value": e.value,
                    "purchased": e.purchased,
                    "timestamp": format_utc(e.created_at),
                }
                for e in page
            ],
            "next": encode_cursor(page[-1].created_at, page[-1].id) if more else None,
        }
    )


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """Return the cursor after an entry: its time in microseconds since 1970, a dot, its id."""
    return f"{(created_at - EARLIEST) // _MICROSECOND}.{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Return ``(created_at, id)`` from ``encode_cursor``'s text (its shape already checked).

    Numbers past the latest time or the largest id (the document allows 19
    digits each) mean "after everything": the page starts at the newest entry.
    """
    micros, row_id = (int(part) for part in cursor.split("."))
    return EARLIEST + min(micros, _LATEST_MICROS) * _MICROSECOND, min(row_id, MAX_ID)
