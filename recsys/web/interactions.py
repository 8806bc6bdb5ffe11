"""POST /interactions: record events, one or a batch, all or nothing, once per event_id."""

from __future__ import annotations

import re

from flask import Blueprint, jsonify

from recsys.data.events import EventIdConflictError, InvalidEventError, events_from_json
from recsys.errors import quote
from recsys.store.events import UnknownProductError
from recsys.web.auth import requires
from recsys.web.bodies import json_body
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import EventBatch, EventsAccepted

bp = Blueprint("interactions", __name__)

RECOMMENDATION_ID = "recommendation_id"
_ID = re.compile(r"[0-9a-f]{32}")

MAX_BATCH = 10_000


@bp.post("/interactions")
@operation(
    "Record events (views, clicks, cart additions, purchases, ratings, dislikes), all or "
    "nothing; an event_id stored before is not stored again",
    (201, EventsAccepted),
    body=EventBatch,
    errors=[409, 413, 415, 422],
    tags=["events"],
)
@requires("ingest")
def record_interactions():
    body = json_body("the events")
    rows = [body] if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise ApiError(400, "invalid_body", "send one event object or an array of event objects")
    if not rows:
        raise ApiError(400, "empty_batch", f"the array holds no events; send 1 to {MAX_BATCH}")
    if len(rows) > MAX_BATCH:
        # 400 like any other bound of the body's schema (maxItems); 413 is for bytes.
        raise ApiError(
            400, "batch_too_large", f"a batch holds at most {MAX_BATCH} events, got {len(rows)}"
        )
    rows, links = _recommendation_ids(rows)
    try:
        events = events_from_json(rows)
    except InvalidEventError as exc:
        raise ApiError(400, "invalid_event", str(exc)) from None
    try:
        ingested = runtime().add_interactions(events)
    except UnknownProductError as exc:
        raise ApiError(
            422,
            "unknown_product",
            f"event {exc.index}: product_id {exc.product_id} is not in the catalog",
        ) from None
    except EventIdConflictError as exc:
        raise ApiError(409, "event_id_conflict", str(exc)) from None
    if links:
        runtime().experiments.link_events(
            [
                (recommendation_id, e.user_id, e.product_id, e.purchased, e.created_at)
                for recommendation_id, e in zip(links, events, strict=True)
                if recommendation_id is not None
            ]
        )
    body = {"accepted": len(events), "new": ingested.new, "known": ingested.known}
    return jsonify(body), 201


def _recommendation_ids(rows: list) -> tuple[list, list[str | None] | None]:
    """Take the optional ``recommendation_id`` off each event (the A/B tests' attribution).

    Returns:
        The events without it, and per event its id or None (None overall when no event has one).

    Raises:
        ApiError: 400 ``invalid_event`` for an id that is not one /recommend gave.
    """
    if not any(isinstance(row, dict) and RECOMMENDATION_ID in row for row in rows):
        return rows, None
    stripped: list = []
    links: list[str | None] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or RECOMMENDATION_ID not in row:
            stripped.append(row)
            links.append(None)
            continue
        value = row[RECOMMENDATION_ID]
        if value is not None and not (isinstance(value, str) and _ID.fullmatch(value)):
            raise ApiError(
                400,
                "invalid_event",
                f"event {index}: recommendation_id must be the 32 hex digits /recommend "
                f"returned, got {quote(value)}",
            )
        stripped.append({k: v for k, v in row.items() if k != RECOMMENDATION_ID})
        links.append(value)
    return stripped, links
