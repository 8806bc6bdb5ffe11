"""Strict parsing of query parameters, with errors that name what is accepted."""

from __future__ import annotations

import re

import numpy as np
from flask import Request
from werkzeug.datastructures import MultiDict

from recsys.data.interactions import MAX_ID
from recsys.errors import quote
from recsys.web.errors import ApiError
from recsys.web.schemas import (
    CATEGORY_CHARS,
    CONTROL_CHARACTERS,
    MAX_CATEGORIES,
    MAX_EXCLUDED,
    MAX_LIST_END,
)

# ASCII digits only: str.isdigit and \d also accept Arabic-Indic or fullwidth digits.
_DIGITS = re.compile(r"[0-9]{1,40}")
_ID_LIST = re.compile(r"[0-9]{1,19}(?:,[0-9]{1,19})*")
_SHORT_ID_LIST = re.compile(r"[0-9]{1,18}(?:,[0-9]{1,18})*")
# A raw query string of printable ASCII without escapes: none of its decoded
# names or values can hold a control character ("+" decodes to a space).
_PLAIN_QUERY = re.compile(rb"[\x20-\x24\x26-\x7e]*")


def refuse_control_characters(request: Request) -> None:
    """Refuse a request whose path or query holds a control character (400).

    Runs before every view, so no text parameter reaches a database (which
    cannot store NUL) or a log with one.

    Args:
        request: The request being handled.

    Raises:
        ApiError: 400 ``invalid_parameter`` naming the parameter.
    """
    given = [(name, v) for name, v in (request.view_args or {}).items() if isinstance(v, str)]
    if not _PLAIN_QUERY.fullmatch(request.query_string):
        # Only a query with escapes or other bytes is decoded and searched.
        given.extend(request.args.items(multi=True))
    for name, value in given:
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
            raise ApiError(
                400,
                "invalid_parameter",
                f"{quote(name)} must hold no control characters, got {quote(value)}",
            )


def single_value(args: MultiDict, name: str, required: bool) -> str | None:
    """Return a parameter's only value; reject it missing (if required), twice, or empty."""
    values = args.getlist(name)
    if not values:
        if required:
            raise ApiError(400, "missing_parameter", f"{name} is required")
        return None
    if len(values) > 1:
        raise ApiError(400, "duplicate_parameter", f"{name} must be given once, got {len(values)}")
    if values[0] == "":
        raise ApiError(400, "invalid_parameter", f"{name} must not be empty")
    return values[0]


def bounded_int(args: MultiDict, name: str, low: int, high: int, default: int | None = None) -> int:
    """Return an integer parameter within [low, high], or the default when absent.

    Raises:
        ApiError: 400 naming the parameter and the accepted range.
    """
    text = single_value(args, name, required=default is None)
    if text is None:
        assert default is not None, "single_value raised for a required parameter"
        return default
    accepted = f"{name} must be an integer from {low} to {high}"
    # The length cap comes first: int() of thousands of digits is slow, and
    # past 4,300 digits Python refuses it outright.
    if not _DIGITS.fullmatch(text):
        raise ApiError(400, "invalid_parameter", f"{accepted}, got {quote(text)}")
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{accepted}, got {quote(text)}")
    return value


def user_id(args: MultiDict) -> int:
    """Return the required ``user_id``: a positive 64-bit integer."""
    return bounded_int(args, "user_id", 1, MAX_ID)


def list_length(args: MultiDict, default: int = 5, high: int = 100) -> int:
    """Return ``n``, how many products to list (1..high, default 5)."""
    return bounded_int(args, "n", 1, high, default)


# A fraction written plainly: 0, 1, 0.25, .5, 1.0 (no signs, exponents or spaces).
_FRACTION = re.compile(r"(0|1)?(\.[0-9]{1,6})?")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def flag(args: MultiDict, name: str) -> bool:
    """Return a yes/no parameter: true or 1, false or 0 (default false)."""
    text = single_value(args, name, required=False)
    if text is None:
        return False
    if text not in _FLAGS:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be true, false, 1 or 0, got {quote(text)}"
        )
    return _FLAGS[text]


def fraction(args: MultiDict, name: str) -> float:
    """Return a number from 0 to 1 with at most 6 decimals (default 0)."""
    text = single_value(args, name, required=False)
    if text is None:
        return 0.0
    accepted = f"{name} must be a number from 0 to 1 (at most 6 decimals)"
    if not _FRACTION.fullmatch(text) or text in ("", ".") or float(text) > 1:
        raise ApiError(400, "invalid_parameter", f"{accepted}, got {quote(text)}")
    return float(text)


def offset(args: MultiDict, n: int) -> int:
    """Return ``offset``, how many of the best products to skip (offset + n at most 1,000)."""
    value = bounded_int(args, "offset", 0, MAX_LIST_END - 1, default=0)
    if value + n > MAX_LIST_END:
        raise ApiError(
            400,
            "invalid_parameter",
            f"offset + n must be at most {MAX_LIST_END}, got {value} + {n}",
        )
    return value


def categories(args: MultiDict) -> frozenset[str]:
    """Return the ``category`` values (repeatable): each 1 to 100 characters, at most 50."""
    values = args.getlist("category")
    if len(values) > MAX_CATEGORIES:
        raise ApiError(
            400,
            "invalid_parameter",
            f"category may be given at most {MAX_CATEGORIES} times, got {len(values)}",
        )
    for value in values:
        if not value or len(value) > CATEGORY_CHARS or CONTROL_CHARACTERS.search(value):
            raise ApiError(
                400,
                "invalid_parameter",
                f"category must be 1 to {CATEGORY_CHARS} characters without control characters, "
                f"got {quote(value)}",
            )
    return frozenset(values)


def product_id_list(args: MultiDict, name: str) -> frozenset[int]:
    """Return a comma-separated list of product ids (at most 1,000), or none when absent.

    Each entry is 1 to 19 digits, as the document says; an id no product can
    have (0, or past 2^63-1) is left out, since it excludes nothing.
    """
    text = single_value(args, name, required=False)
    if text is None:
        return frozenset()
    accepted = f"{name} must be up to {MAX_EXCLUDED:,} comma-separated product ids"
    # Checked before splitting: a huge parameter costs nothing to refuse.
    if len(text) > MAX_EXCLUDED * 20:
        raise ApiError(400, "invalid_parameter", f"{accepted}, got {len(text):,} characters")
    count = text.count(",") + 1
    if count > MAX_EXCLUDED:
        raise ApiError(400, "invalid_parameter", f"{accepted}, got {count:,}")
    # One match for the whole list, then one C-level parse (a shop sends
    # hundreds of ids a request). Up to 18 digits no id overflows int64; a
    # longer one takes the item-by-item path.
    if _SHORT_ID_LIST.fullmatch(text):
        parsed = np.fromstring(text, dtype=np.int64, sep=",")
        return frozenset(parsed[parsed >= 1].tolist())
    if _ID_LIST.fullmatch(text):
        return frozenset(i for i in map(int, text.split(",")) if 1 <= i <= MAX_ID)
    bad = next(item for item in text.split(",") if not _ID_LIST.fullmatch(item))
    raise ApiError(400, "invalid_parameter", f"{accepted} (1 to 19 digits each), got {quote(bad)}")
