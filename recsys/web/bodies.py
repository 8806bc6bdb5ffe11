"""JSON request bodies, read strictly: one bounded reader for every body the service takes.

A body must be JSON in UTF-8 (no byte order mark, no other charset, no
``Content-Encoding``), at most ``INGEST_MAX_BYTES`` long and ``MAX_DEPTH``
deep, with finite numbers only (no ``NaN``, ``Infinity`` or a literal that
overflows a double), no key given twice and no control character in any
string. Numbers are read as JSON Schema reads them: ``8027.0`` is the integer
8027.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask import current_app, request

from recsys.errors import quote
from recsys.web.context import settings_of
from recsys.web.errors import ApiError
from recsys.web.schemas import CONTROL_CHARACTERS

# The deepest body the API takes is an experiment's variant, three levels down.
MAX_DEPTH = 8
_TOO_DEEP = f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)"
# A control character reaches a parsed string only through these bytes: a
# \u escape of C0, DEL or C1, a raw DEL, or a raw C1 in UTF-8 (orjson refuses
# raw C0). A body without any (nearly every body) skips the check of each string.
_MAY_HOLD_CONTROL = re.compile(
    rb"\\u00[0-1][0-9A-Fa-f]|\\u007[Ff]|\\u00[89][0-9A-Fa-f]|\x7f|\xc2[\x80-\x9f]"
)
# Integral floats in this range become ints (float() of any int64 is exact here).
_INT_RANGE = 2.0**63


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> None:
    # {"purchased": 0, "purchased": 1} would otherwise silently keep the last.
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen.add(key)


def json_body(what: str) -> Any:
    """Return the request's JSON body, read by ``parse_json``.

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
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send {what} as UTF-8 JSON, got charset {quote(charset)}",
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send {what} uncompressed; Content-Encoding {quote(encoding)} is not accepted",
        )
    # MAX_CONTENT_LENGTH (INGEST_MAX_BYTES + 1) bounds this read for every
    # transfer encoding, chunked included. Werkzeug stops a streamed body at
    # the limit without an error, so one byte more than allowed means "too large".
    limit = settings_of(current_app).server.ingest_max_bytes
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"the body may be at most {limit} bytes")
    return parse_json(data)


def parse_json(data: bytes) -> Any:
    """Return the value of a JSON document, read strictly (see the module's rules).

    Raises:
        ApiError: 400 ``invalid_json`` naming the first problem.
    """
    try:
        # orjson takes UTF-8 only (no BOM) and refuses NaN, Infinity, numbers
        # that overflow a double and nesting past 1,024 levels.
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg:
            raise ApiError(400, "invalid_json", _TOO_DEEP) from None
        raise ApiError(
            400,
            "invalid_json",
            f"the body is not valid UTF-8 JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); numbers are finite, never NaN or Infinity",
        ) from None
    value = _checked(value, check_text=_MAY_HOLD_CONTROL.search(data) is not None)
    try:
        # orjson keeps the last of a repeated key; the standard parser can tell.
        # The depth is bounded above, so this cannot recurse far.
        json.loads(data, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise ApiError(400, "invalid_json", f"the key {quote(str(exc))} appears twice") from None
    return value


def _checked(value: Any, check_text: bool) -> Any:
    """Check depth (and strings, if asked), turn integral floats into ints; return the value."""
    if not isinstance(value, dict | list):
        return _checked_scalar(value, check_text)
    # Containers wait on a stack with their depth: no recursion, however deep.
    pending: list[tuple[dict | list, int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, "invalid_json", _TOO_DEEP)
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for slot, item in items:
            if check_text and isinstance(slot, str):
                _check_text(slot)
            kind = type(item)
            if kind is dict or kind is list:
                pending.append((item, depth + 1))
            elif kind is float or (check_text and kind is str):
                # Same-size replacement: safe while iterating a dict's items.
                container[slot] = _checked_scalar(item, check_text)
    return value


def _checked_scalar(item: Any, check_text: bool) -> Any:
    if isinstance(item, float):
        return int(item) if item.is_integer() and -_INT_RANGE <= item < _INT_RANGE else item
    if check_text and isinstance(item, str):
        _check_text(item)
    return item


def _check_text(text: str) -> None:
    found = CONTROL_CHARACTERS.search(text)
    if found is not None:
        raise ApiError(
            400,
            "invalid_json",
            f"strings may not hold control characters, got U+{ord(found.group()):04X} in "
            f"{quote(text)}",
        )
