"""JSON answers that are always valid JSON: a non-finite number is written as null."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

log = logging.getLogger(__name__)


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, keeping keys in order and never writing NaN or Infinity.

    The standard library writes ``NaN`` and ``Infinity``, which no JSON parser
    reads. Inputs are checked finite at the boundary, so meeting one here is a
    bug upstream: it is logged, and the answer carries null instead.
    """

    sort_keys = False

    def __init__(self, app: Any):
        super().__init__(app)
        # The settings the compact encoder was built with, and the encoder.
        self._compact: tuple[tuple[Any, ...], json.JSONEncoder] | None = None

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

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Return a JSON answer (``jsonify``): the same text as Flask's, non-finite numbers as null.

        Compact answers (out of debug mode) reuse one encoder: ``json.dumps``
        with any option builds a new one per call, about 3 us of the 13 that
        a small answer such as /healthz's took.
        """
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        encoder = self._compact_encoder()
        try:
            text = encoder.encode(obj)
        except ValueError:
            log.warning("an answer held a non-finite number; it is sent as null")
            text = encoder.encode(finite(obj))
        return self._app.response_class(f"{text}\n", mimetype=self.mimetype)

    def _compact_encoder(self) -> json.JSONEncoder:
        # Built again if a setting changed since (Flask lets an app set them at any time).
        settings = (self.default, self.ensure_ascii, self.sort_keys)
        if self._compact is None or self._compact[0] != settings:
            encoder = json.JSONEncoder(
                default=self.default,
                ensure_ascii=self.ensure_ascii,
                sort_keys=self.sort_keys,
                allow_nan=False,
                separators=(",", ":"),
            )
            self._compact = (settings, encoder)
        return self._compact[1]


def finite(value: Any) -> Any:
    """Return a copy of a JSON-like value with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
