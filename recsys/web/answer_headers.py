"""The headers every answer carries, added around Flask: the request id and the security headers.

A WSGI middleware, so that nothing, however it fails inside Flask, answers
without them: it gives each request its id (``request_id.accepted_id``)
before Flask sees it, and appends the headers to the list Flask hands to the
server: about 1 us a request, where three ``Headers`` calls in after-request
hooks (each checks the value and searches the list) took 8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from recsys.web.request_id import ENVIRON_KEY, GIVEN_ENVIRON_KEY, HEADER, accepted_id

# Every answer is JSON (or a dashboard page that says what it is): browsers must never guess.
NO_SNIFFING = ("X-Content-Type-Options", "nosniff")
# Lists, histories and figures are personal or change by the second: no cache
# keeps them unless the view says how long one may (its own Cache-Control wins).
NOT_STORED = ("Cache-Control", "no-store")
# Headers only this layer sets: one a view set by mistake is replaced, not repeated.
_REPLACED = frozenset({NO_SNIFFING[0].lower(), HEADER.lower()})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AnswerHeaders:
    """WSGI middleware: a request id for every request; it and the security headers on every answer.

    Args:
        wsgi_app: The app it wraps (Flask's ``app.wsgi_app``).
    """

    def __init__(self, wsgi_app: WSGIApp):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request_id = environ[ENVIRON_KEY] = accepted_id(environ.get(GIVEN_ENVIRON_KEY))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            add_answer_headers(headers, request_id)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def add_answer_headers(headers: list[tuple[str, str]], request_id: str) -> None:
    """Add the security headers and the request id to an answer's header list, in place."""
    names = {name.lower() for name, _ in headers}
    if not names.isdisjoint(_REPLACED):
        headers[:] = [(name, value) for name, value in headers if name.lower() not in _REPLACED]
    headers.append(NO_SNIFFING)
    if "cache-control" not in names:
        headers.append(NOT_STORED)
    headers.append((HEADER, request_id))
