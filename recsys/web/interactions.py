"""POST /interactions: record clicks and purchases, one event or a batch, all or nothing."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from recsys.data.events import InvalidEventError, events_from_json
from recsys.errors import quote
from recsys.store.events import UnknownProductError
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.errors import ApiError

bp = Blueprint("interactions", __name__)

MAX_BATCH = 10_000


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"purchased": 0, "purchased": 1} would otherwise silently keep the last.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _json_body() -> Any:
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the events as JSON (Content-Type: application/json)",
        )
    # MAX_CONTENT_LENGTH (INGEST_MAX_BYTES + 1) bounds this read for every
    # transfer encoding, chunked included. Werkzeug stops a streamed body at
    # the limit without an error, so one byte more than allowed means "too large".
    limit = current_app.config["INGEST_MAX_BYTES"]
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"the body may be at most {limit} bytes")
    try:
        return json.loads(data, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise ApiError(400, "invalid_json", f"the key {quote(str(exc))} appears twice") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8 JSON") from None


@bp.post("/interactions")
@requires("ingest")
def record_interactions():
    body = _json_body()
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
