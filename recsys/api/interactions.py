"""POST /interactions: record clicks and purchases, one event or a batch, all or nothing."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from recsys.api.errors import ApiError
from recsys.store import InvalidEventError, UnknownProductError, events_from_json

bp = Blueprint("interactions", __name__)

MAX_BATCH = 10_000


def _runtime():
    return current_app.extensions["recsys.runtime"]


def _json_body():
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type",
            "send the events as JSON (Content-Type: application/json)",
        )
    limit = current_app.config["INGEST_MAX_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body may be at most {limit} bytes")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    return body


@bp.post("/interactions")
def record_interactions():
    body = _json_body()
    rows = [body] if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise ApiError(400, "invalid_body", "send one event object or an array of event objects")
    if not rows:
        raise ApiError(400, "empty_batch", "the array holds no events; send 1 to 10000")
    if len(rows) > MAX_BATCH:
        raise ApiError(
            413, "batch_too_large", f"a batch holds at most {MAX_BATCH} events, got {len(rows)}"
        )
    try:
        accepted = _runtime().store.add_interactions(events_from_json(rows))
    except InvalidEventError as exc:
        raise ApiError(400, "invalid_event", f"event {exc.index}: {exc.reason}") from None
    except UnknownProductError as exc:
        raise ApiError(
            422, "unknown_product",
            f"event {exc.index}: product_id {exc.product_id} is not in the catalog",
        ) from None
    _runtime().record_events(accepted)
    return jsonify({"accepted": accepted}), 201
