"""JSON request bodies, read strictly: JSON content type, bounded size, no key given twice."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from recsys.errors import quote
from recsys.web.errors import ApiError


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


def json_body(what: str) -> Any:
    """Return the request's JSON body.

    Args:
        what: What the body holds, for the 415 message ("the events").

    Raises:
        ApiError: 415 ``unsupported_media_type``, 413 ``payload_too_large``
            or 400 ``invalid_json``.
    """
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send {what} as JSON (Content-Type: application/json)",
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
