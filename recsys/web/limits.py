"""Rate limits with Flask-Limiter: per API key, or per client address when the service is open.

A key's calls are counted per role of the endpoint: the ``read`` endpoints
share one counter and one limit (``RECSYS_RATE_LIMIT``), ``POST
/interactions`` has ``RECSYS_RATE_LIMIT_INGEST``, the ``admin`` endpoints the
read limit on a counter of their own. Counters are named by a prefix of the
key's SHA-256 (``ApiKey.limit_key``), never by the key. The health probes are
never limited. Over the limit: 429 ``rate_limited`` with ``Retry-After``.

Counters live in Redis when ``RECSYS_REDIS_URL`` is set, so every worker and
server shares them; in memory (per process) otherwise. When Redis fails
(refused, or silent past ``RECSYS_REDIS_TIMEOUT_SECONDS``, connecting or
answering), the limiter counts in memory and logs a warning, and goes back to
Redis once it answers again (Flask-Limiter tries it after 1, 2, 4 ... 32
seconds): an outage never turns a request into a 500, and a request waits
for it at most once.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limit, Limiter
from flask_limiter.errors import RateLimitExceeded
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.serving.api_keys import INGEST
from recsys.web import health
from recsys.web.auth import authenticated_key, endpoint_role
from recsys.web.errors import error_response

LIMITER_KEY = "recsys.limiter"
_OPEN_SCOPE = "open"


def limit_key() -> str:
    """Return whose counter a request counts against: its key's digest prefix, or its address."""
    key = authenticated_key()
    if key is not None:
        return key.limit_key
    return f"addr-{request.remote_addr or 'unknown'}"


def _scope(_endpoint: str = "") -> str:
    return endpoint_role() or _OPEN_SCOPE


def _limit() -> str:
    setting = "RATE_LIMIT_INGEST" if _scope() == INGEST else "RATE_LIMIT"
    return current_app.config[setting] or ""


def init_app(app: Flask) -> None:
    """Attach a limiter configured from the app's settings (after ``auth.init_app``).

    Its check runs after the API key check, so that a request is counted
    against the key it was let in with.
    """
    redis_url = app.config["REDIS_URL"]
    # Passed on to redis-py (Flask-Limiter types the values as text or numbers).
    redis_options: dict[str, Any] = {
        # Past the timeout, connecting or answering, the limiter counts in
        # memory. No retries: redis-py's default retries three times with
        # back-off, seconds per request while Redis is silent.
        "socket_connect_timeout": app.config["REDIS_TIMEOUT_SECONDS"],
        "socket_timeout": app.config["REDIS_TIMEOUT_SECONDS"],
        "retry": Retry(NoBackoff(), 0),
    }
    limiter = Limiter(
        limit_key,
        default_limits=[Limit(_limit, scope=_scope, shared=True)],
        storage_uri=redis_url or "memory://",
        storage_options=redis_options if redis_url else {},
        strategy="fixed-window",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        # Retry-After is set on 429 answers only (below), not on every answer.
        headers_enabled=False,
    )
    # With no limit set there is nothing to count: the limiter's per-request
    # work (it resolves its limits on every request) is skipped entirely.
    app.config.setdefault(
        "RATELIMIT_ENABLED", bool(app.config["RATE_LIMIT"] or app.config["RATE_LIMIT_INGEST"])
    )
    limiter.init_app(app)
    limiter.exempt(health.bp)
    app.extensions[LIMITER_KEY] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def _rate_limited(exc: RateLimitExceeded) -> Response:
    retry_after = _seconds_until_reset(exc)
    per = "API key" if authenticated_key() is not None else "client address"
    response = error_response(
        429,
        "rate_limited",
        f"too many requests: at most {exc.description} per {per}; retry in {retry_after} s",
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _seconds_until_reset(exc: RateLimitExceeded) -> int:
    limiter: Limiter = current_app.extensions[LIMITER_KEY]
    breached = limiter.current_limit
    if breached is not None:
        try:
            return max(1, math.ceil(breached.window.reset_time - time.time()))
        except Exception:
            pass  # the storage failed in between: a whole window is a safe answer
    return max(1, exc.limit.limit.get_expiry())
