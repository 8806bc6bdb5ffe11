"""The Flask class the service runs on: Flask, with ``async`` checked once and strict paths."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter


class ServiceFlask(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask passes every hook and view through ``ensure_sync`` on every
    request, and each time ``inspect`` checks whether it is a coroutine
    function: about 2 us of a /healthz request here. The answer never
    changes for a function, so a plain one is remembered (weakly: a function
    made for one request is forgotten with it) and passed through at once; a
    coroutine function still goes to Flask, which runs it or says why it
    cannot.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._plain_functions: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
        # Before any route exists: every <int:...> of the service is ASCII digits only.
        self.url_map.converters["int"] = AsciiIntegerConverter
        # A doubled slash (or an encoded one, %2F) matches no route, a JSON
        # 404, where werkzeug would answer a 308 redirect with an HTML page.
        self.url_map.merge_slashes = False

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``func`` itself if it is a plain function, else Flask's synchronous wrapper."""
        if func in self._plain_functions:
            return func
        wrapped = super().ensure_sync(func)
        if wrapped is func:
            # An object that cannot be weakly referenced is checked at every call, as Flask does.
            with contextlib.suppress(TypeError):
                self._plain_functions.add(func)
        return wrapped


class AsciiIntegerConverter(IntegerConverter):
    """Werkzeug's ``int`` path converter, matching the digits 0-9 only.

    Werkzeug's matches ``\\d``, every Unicode digit, and ``int()`` reads them:
    ``/products/%D9%A1`` (U+0661, the Arabic-Indic digit one) was product 1,
    where the query parameters refuse such an id. A path id is now what a
    query id is; any other spelling matches no route (404).
    """

    regex = r"[0-9]+"
