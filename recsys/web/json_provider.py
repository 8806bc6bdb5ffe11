"""JSON answers that are always valid JSON: a non-finite number is written as null."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

log = logging.getLogger(__name__)


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, keeping keys in order and never writing NaN or Infinity.

    The standard library writes ``NaN`` and ``Infinity``, which no JSON parser
    reads. Inputs are checked finite at the boundary, so meeting one here is a
    bug upstream: it is logged, and the answer carries null instead.
    """

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Return ``obj`` as JSON text, non-finite numbers as null."""
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        try:
            return json.dumps(obj, allow_nan=False, **kwargs)
        except ValueError:
            log.warning("an answer held a non-finite number; it is sent as null")
            return json.dumps(finite(obj), allow_nan=False, **kwargs)


def finite(value: Any) -> Any:
    """Return a copy of a JSON-like value with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
