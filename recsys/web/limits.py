"""Rate limits with Flask-Limiter: per API key, or per client address when the service is open.

A key's calls are counted per role of the endpoint: the ``read`` endpoints
share one counter, ``POST /interactions`` has its own, and so do the
``admin`` endpoints. Each counter's limit is the key's own rate (set when it
was made: ``create-key --rate``), else its role's default:
``RECSYS_RATE_LIMIT`` for ``read`` and ``admin``, ``RECSYS_RATE_LIMIT_INGEST``
for ``ingest``. A request without a key (a service without keys) counts
against its client address, with ``RECSYS_RATE_LIMIT_ADDRESS`` (ingest:
``RECSYS_RATE_LIMIT_INGEST``). Counters are named by a prefix of the key's
SHA-256 (``ApiKey.limit_key``), never by the key. The health probes are never
limited. Over the limit: 429 ``rate_limited`` with ``Retry-After``.

Counters live in Redis when ``RECSYS_REDIS_URL`` is set, so every worker and
server shares them; in memory (per process) otherwise. When Redis fails
(refused, or silent past ``RECSYS_REDIS_TIMEOUT_SECONDS``, connecting or
answering), the limiter counts in memory and logs a warning, and goes back to
Redis once it answers again (Flask-Limiter tries it after 1, 2, 4 ... 32
seconds): an outage never turns a request into a 500. The limiter's Redis
storage shares the process's ``RedisOutage`` with the history cache and the
announcements, so a request waits for a failing Redis once in all.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, current_app, request
from flask_limiter import ExemptionScope, Limit, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits.storage import MemoryStorage, RedisStorage
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.config.api_keys import INGEST
from recsys.online import RedisOutage
from recsys.web import health
from recsys.web.auth import authenticated_key, endpoint_role
from recsys.web.context import settings_of
from recsys.web.errors import error_response

LIMITER_KEY = "recsys.limiter"
_OPEN_SCOPE = "open"
# The scheme of the storages below: "recsys+" before a REDIS_URL, or "memory://".
_SCHEME_PREFIX = "recsys+"
# How often the in-memory counters drop expired windows.
_SWEEP_SECONDS = 1.0


class _SweepingMemoryStorage(MemoryStorage):
    """limits' in-memory storage, dropping expired counters once a second rather than every 10 ms.

    limits' own starts a new timer thread on the first count after its last
    sweep, 10 ms after the one before: under load, a thread per 10 ms, which
    costs every counted request. A counter past its window reads as zero
    whenever the sweep comes (``get`` drops it), so sweeping less often
    changes no answer; it only keeps forgotten counters a little longer.
    """

    STORAGE_SCHEME = [_SCHEME_PREFIX + "memory"]  # noqa: RUF012

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (limits' private hook)
        if not self.timer.is_alive():
            # A daemon thread: a pending sweep never holds up the process's exit.
            sweep = self._MemoryStorage__expire_events  # type: ignore[attr-defined]
            self.timer = threading.Timer(_SWEEP_SECONDS, sweep)
            self.timer.daemon = True
            self.timer.start()


class _SharedOutageRedisStorage(RedisStorage):
    """limits' Redis storage that skips Redis while the process's ``RedisOutage`` says so.

    It raises at once instead, which Flask-Limiter takes as an outage (it
    counts in memory), and reports every failure of its own to the outage,
    so the history cache skips Redis too. Covers what the fixed-window
    strategy uses.

    Args:
        uri: ``recsys+`` and a ``REDIS_URL``.
        outage: The process's ``RedisOutage``.
        options: redis-py's client options.
    """

    # The registry of limits reads the class attribute.
    STORAGE_SCHEME = [_SCHEME_PREFIX + s for s in ("redis", "rediss", "redis+unix")]  # noqa: RUF012

    def __init__(self, uri: str, outage: RedisOutage, **options: Any):
        self._outage = outage
        self._failures = outage.failures
        super().__init__(uri.removeprefix(_SCHEME_PREFIX), **options)

    def _usable(self) -> bool:
        if not self._outage.usable():
            return False
        if self._failures != self._outage.failures:
            # Idle connections opened before Redis failed may be dead (see
            # RedisOutage); those in use are closed by their own failure.
            self._failures = self._outage.failures
            self.storage.connection_pool.disconnect(inuse_connections=False)
        return True

    def _guarded(self, command: Callable[..., Any], *args: Any) -> Any:
        if not self._usable():
            raise redis.ConnectionError("Redis is left alone after a failure")
        try:
            return command(*args)
        except redis.RedisError:
            self._outage.failed()
            raise

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._guarded(super().incr, key, expiry, amount)

    def get(self, key: str) -> int:
        return self._guarded(super().get, key)

    def get_expiry(self, key: str) -> float:
        return self._guarded(super().get_expiry, key)

    def clear(self, key: str) -> None:
        self._guarded(super().clear, key)

    def check(self) -> bool:
        """Ping Redis, unless it is left alone (False without asking)."""
        if not self._usable():
            return False
        if super().check():
            return True
        self._outage.failed()
        return False


def limit_key() -> str:
    """Return whose counter a request counts against: its key's digest prefix, or its address."""
    key = authenticated_key()
    if key is not None:
        return key.limit_key
    return f"addr-{request.remote_addr or 'unknown'}"


def _scope(_endpoint: str = "") -> str:
    return endpoint_role() or _OPEN_SCOPE


def _limit() -> str:
    security = settings_of(current_app).security
    if _scope() == INGEST:
        default = security.rate_limit_ingest
    else:
        default = security.rate_limit if authenticated_key() else security.rate_limit_address
    key = authenticated_key()
    return (key.rate if key is not None and key.rate else default) or ""


def init_app(app: Flask) -> None:
    """Attach a limiter configured from the app's settings (after ``auth.init_app``).

    Its check runs after the API key check, so that a request is counted
    against the key it was let in with.
    """
    settings = settings_of(app)
    redis_url = settings.redis.url
    # Passed on to the storage (Flask-Limiter types the values as text or numbers).
    redis_options: dict[str, Any] = {
        "outage": app.extensions["recsys.runtime"].redis_outage,
        # Past the timeout, connecting or answering, the limiter counts in
        # memory. No retries: redis-py's default retries three times with
        # back-off, seconds per request while Redis is silent.
        "socket_connect_timeout": settings.redis.timeout_seconds,
        "socket_timeout": settings.redis.timeout_seconds,
        "retry": Retry(NoBackoff(), 0),
    }
    limiter = Limiter(
        limit_key,
        default_limits=[Limit(_limit, scope=_scope, shared=True)],
        storage_uri=_SCHEME_PREFIX + (redis_url or "memory://"),
        storage_options=redis_options if redis_url else {},
        strategy="fixed-window",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        # Retry-After is set on 429 answers only (below), not on every answer.
        headers_enabled=False,
    )
    # With no limit set there is nothing to count: the limiter's per-request
    # work (it resolves its limits on every request) is skipped entirely.
    security = settings.security
    app.config.setdefault(
        "RATELIMIT_ENABLED",
        bool(
            security.rate_limit
            or security.rate_limit_ingest
            or security.rate_limit_address
            or any(key.rate for key in security.api_keys.keys)
        ),
    )
    _remember_route_scopes(limiter)
    limiter.init_app(app)
    # A request filter, not ``limiter.exempt(health.bp)``: it ends the
    # limiter's work on a probe before any limit is resolved.
    limiter.request_filter(_is_health_probe)
    app.extensions[LIMITER_KEY] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def _remember_route_scopes(limiter: Limiter) -> None:
    """Work out each endpoint's exemptions and blueprint limits once, not on every request.

    Flask-Limiter recomputes both from its registries on every request (the
    exemptions twice), though they change only while the app is set up: none
    is registered once it serves. The limiter serves one app, so the endpoint
    and its blueprint name the answer.
    """
    manager = limiter.limit_manager
    exemption_scope, blueprint_limits = manager.exemption_scope, manager.blueprint_limits
    scopes: dict[tuple[str | None, str | None], ExemptionScope] = {}
    limits: dict[str, list[Any]] = {}

    def remembered_exemption_scope(
        app: Flask, endpoint: str | None, blueprint: str | None
    ) -> ExemptionScope:
        if (endpoint, blueprint) not in scopes:
            scopes[endpoint, blueprint] = exemption_scope(app, endpoint, blueprint)
        return scopes[endpoint, blueprint]

    def remembered_blueprint_limits(app: Flask, blueprint: str) -> list[Any]:
        if blueprint not in limits:
            limits[blueprint] = blueprint_limits(app, blueprint)
        return list(limits[blueprint])

    manager.exemption_scope = remembered_exemption_scope  # type: ignore[method-assign]
    manager.blueprint_limits = remembered_blueprint_limits  # type: ignore[method-assign]


def _is_health_probe() -> bool:
    return request.blueprint == health.bp.name


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
