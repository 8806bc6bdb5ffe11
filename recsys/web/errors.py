"""JSON errors: every failure answers ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from recsys.online import NoLiveModelError
from recsys.store.engine import STORE_OUTAGES
from recsys.web.context import settings_of

log = logging.getLogger(__name__)

# Machine-readable codes for the HTTP errors Flask raises itself.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answer: HTTP status, machine-readable code, message and extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str):
    """Return a Flask response carrying one JSON error."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def unavailable(code: str, message: str, retry_after_seconds: int):
    """Return a 503 the caller should retry after a while."""
    response = error_response(503, code, message)
    response.headers["Retry-After"] = str(retry_after_seconds)
    return response


def handle_store_outage(exc: Exception):
    """Answer a request the database failed: 503 ``store_unavailable``, retry in 1 s.

    The database is down, unreachable, locked or too slow: the caller may
    retry, so this is a 503 rather than the 500 that marks a bug.
    """
    log.warning("event store unavailable: %s", getattr(exc, "orig", None) or exc)
    return unavailable("store_unavailable", "the event store is unavailable; retry shortly", 1)


def init_app(app: Flask) -> None:
    """Register JSON handlers for API errors, HTTP errors, outages and crashes."""

    for outage in STORE_OUTAGES:
        app.register_error_handler(outage, handle_store_outage)

    @app.errorhandler(NoLiveModelError)
    def handle_no_model(exc: NoLiveModelError):
        return unavailable(
            "model_unavailable",
            "no model is published yet; run `flask --app app init` (or wait for it to "
            "finish); on an empty store the first model is trained when events arrive",
            5,
        )

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code or 500, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            limit = settings_of(current_app).server.ingest_max_bytes
            message = f"the body may be at most {limit} bytes"
        response = error_response(exc.code or 500, code, message)
        allowed = getattr(exc, "valid_methods", None)  # set on MethodNotAllowed
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def handle_crash(exc: Exception):
        # A 5xx is always a bug: log it whole, tell the caller little.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
