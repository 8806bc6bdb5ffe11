"""POST /interactions: record clicks and purchases, one event or a batch, all or nothing."""

from __future__ import annotations

from flask import Blueprint, jsonify

from recsys.data.events import InvalidEventError, events_from_json
from recsys.store.events import UnknownProductError
from recsys.web.auth import requires
from recsys.web.bodies import json_body
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import Accepted, EventBatch

bp = Blueprint("interactions", __name__)

MAX_BATCH = 10_000


@bp.post("/interactions")
@operation(
    "Record clicks and purchases, all or nothing",
    (201, Accepted),
    body=EventBatch,
    errors=[413, 415, 422],
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
        raise ApiError(
            413, "batch_too_large", f"a batch holds at most {MAX_BATCH} events, got {len(rows)}"
        )
    try:
        events = events_from_json(rows)
    except InvalidEventError as exc:
        raise ApiError(400, "invalid_event", str(exc)) from None
    try:
        accepted = runtime().add_interactions(events)
    except UnknownProductError as exc:
        raise ApiError(
            422,
            "unknown_product",
            f"event {exc.index}: product_id {exc.product_id} is not in the catalog",
        ) from None
    return jsonify({"accepted": accepted}), 201
