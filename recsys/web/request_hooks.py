"""The steps every request passes inside Flask, before its view and after its answer.

Flask calls each registered hook through ``ensure_sync`` (an ``inspect``
check per call) and its own loops: one hook per side that calls the steps in
order costs a fraction of one hook per step. The steps stay in their modules.
The request id and the security headers are added around Flask
(``answer_headers``); the rate limiter registers its own hooks, after these,
and counts here only a request the key check refuses (401).
"""

from __future__ import annotations

from flask import Flask, Request, Response, request

from recsys.web import auth, limits, prometheus, query_params
from recsys.web.errors import ApiError


def init_app(app: Flask) -> None:
    """Run ``before_every_view`` and ``after_every_answer`` on every request."""
    app.before_request(before_every_view)
    app.after_request(after_every_answer)


def before_every_view() -> None:
    """Start the request's clock, then refuse it if it is not let in or not well formed.

    Raises:
        ApiError: 401 or 403 (the key check), 415 (a form post), 400 (a
            control character in the path or query).
    """
    current = _current_request()
    prometheus.start_clock(current)
    # The key check first: the limiter counts a request against the key it was let in with.
    try:
        auth.check_api_key(current)
    except ApiError as refused:
        if refused.status == 401:
            limits.check_refused(current)  # past the address's limit: 429 instead
        raise
    auth.refuse_form_posts(current)
    query_params.refuse_control_characters(current)


def after_every_answer(response: Response) -> Response:
    """Count the answer by endpoint and status, with its latency."""
    prometheus.count_request(_current_request(), response)
    return response


def _current_request() -> Request:
    # The request itself, found once: each use of Flask's ``request`` proxy
    # looks it up again (about 1 us each, ten times a request here).
    return request._get_current_object()  # type: ignore[attr-defined]
