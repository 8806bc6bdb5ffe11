"""Request ids: ``X-Request-ID`` taken from the caller (if sane) or made, echoed, logged.

A caller's id is kept when it is 1 to 128 printable ASCII characters; any
other value is replaced by a new one rather than refused, so that a proxy's
odd ids never cost an answer. ``answer_headers.AnswerHeaders`` gives every
request its id (in the WSGI environment) and echoes it on every answer, and
every log record written while the request is handled names it
(``RequestIdFilter``).
"""

from __future__ import annotations

import logging
import os
import re

from flask import has_request_context, request

HEADER = "X-Request-ID"
# Where the caller's id arrives, and where the request's own id is kept.
GIVEN_ENVIRON_KEY = "HTTP_X_REQUEST_ID"
ENVIRON_KEY = "recsys.request_id"
MAX_LENGTH = 128
_ACCEPTED = re.compile(rf"[\x20-\x7e]{{1,{MAX_LENGTH}}}")


def accepted_id(given: str | None) -> str:
    """Return the caller's id if it is acceptable, else a new one (32 random hex digits)."""
    if given is not None and _ACCEPTED.fullmatch(given):
        return given
    # As random as a uuid4, without building the UUID object: a fifth of its time.
    return os.urandom(16).hex()


def current_id() -> str | None:
    """Return the id of the request being handled, or None outside a request."""
    if not has_request_context():
        return None
    return request.environ.get(ENVIRON_KEY)


class RequestIdFilter(logging.Filter):
    """Add ``request_id`` (None outside a request) to every record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_id()
        return True
