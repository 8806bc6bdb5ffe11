"""Rate limits with the ``limits`` library: per API key, or per client address when open.

A key's calls are counted per role of the endpoint: the ``read`` endpoints
share one counter, ``POST /interactions`` has its own, and so do the
``admin`` endpoints. Each counter's limit is the key's own rate (set when it
was made: ``create-key --rate``), else its role's default:
``RECSYS_RATE_LIMIT`` for ``read`` and ``admin``, ``RECSYS_RATE_LIMIT_INGEST``
for ``ingest``. A request without a key (a service without keys) counts
against its client address, with ``RECSYS_RATE_LIMIT_ADDRESS`` (ingest:
``RECSYS_RATE_LIMIT_INGEST``). Counters are named by a prefix of the key's
SHA-256 (``ApiKey.limit_key``), never by the key. A request refused for its
key (401: none, or not a configured one) is an anonymous one: it counts
against its client address too, with ``RECSYS_RATE_LIMIT_ADDRESS``, on a
counter of its own, so keys cannot be guessed at the service's full speed.
The health probes are never limited. Over the limit: 429 ``rate_limited``
with ``Retry-After``.

Counters live in Redis when ``RECSYS_REDIS_URL`` is set, so every worker and
server shares them; in memory (per process) otherwise. When Redis fails
(refused, or silent past ``RECSYS_REDIS_TIMEOUT_SECONDS``, connecting or
answering), the limiter counts in memory and logs a warning, and goes back to
Redis once it answers again: an outage never turns a request into a 500. The
limiter's Redis storage shares the process's ``RedisOutage`` with the history
cache and the announcements, so a request waits for a failing Redis once in
all, and every user of Redis tries it again after the same pause.

Why ``limits`` alone, without Flask-Limiter around it: Flask-Limiter works
out each request's limits, exemptions and scopes anew, through Flask's
context proxies, from registries this service never uses (decorated views,
blueprint limits). Measured in one process, a limited cached ``/recommend``
cost 2.1 times an unlimited one's CPU (171 us against 82). The rule here is one
counter per key and role, found from what the key check already knows, then
one ``hit`` of the ``limits`` fixed window on its storage.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Request, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.config.api_keys import INGEST
from recsys.config.sections import SecuritySection
from recsys.online import RedisOutage
from recsys.web import health
from recsys.web.auth import authenticated_key, endpoint_role
from recsys.web.context import settings_of
from recsys.web.errors import ApiError

log = logging.getLogger(__name__)

LIMITER_KEY = "recsys.limiter"
# The counter of requests to an endpoint that needs no role (counted per address).
_OPEN_SCOPE = "open"
# The counter of an address's requests refused for their key (401).
_REFUSED_SCOPE = "refused"
# What a failing Redis raises through the storage (ours raises redis' errors).
_STORAGE_FAILURES = (redis.RedisError, StorageError, OSError)
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

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (limits' private hook)
        if not self.timer.is_alive():
            # A daemon thread: a pending sweep never holds up the process's exit.
            sweep = self._MemoryStorage__expire_events  # type: ignore[attr-defined]
            self.timer = threading.Timer(_SWEEP_SECONDS, sweep)
            self.timer.daemon = True
            self.timer.start()


class _SharedOutageRedisStorage(RedisStorage):
    """limits' Redis storage that skips Redis while the process's ``RedisOutage`` says so.

    It raises at once instead, which ``RequestLimiter`` takes as an outage
    (it counts in memory), and reports every failure of its own to the
    outage, so the history cache skips Redis too. Covers what the
    fixed-window strategy uses.

    Args:
        uri: A ``REDIS_URL``.
        outage: The process's ``RedisOutage``.
        options: redis-py's client options.
    """

    def __init__(self, uri: str, outage: RedisOutage, **options: Any):
        self._outage = outage
        self._failures = outage.failures
        super().__init__(uri, **options)

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


class RequestLimiter:
    """Counts each request against its counter and refuses one past its limit (429).

    A request's counter is its key's (``ApiKey.limit_key``) or its client
    address's, for the role of its endpoint; its limits are the key's own
    rate, else the role's default (see the module's docstring).

    Args:
        security: The service's security settings (the default limits).
        shared: Counters in Redis, or None to count in this process's memory.
        key_prefix: Put before every counter's name (``RATELIMIT_KEY_PREFIX``;
            several services sharing one Redis keep their counters apart).
        outage: The process's ``RedisOutage`` (with ``shared``).
    """

    def __init__(
        self,
        security: SecuritySection,
        shared: RedisStorage | None = None,
        key_prefix: str = "",
        outage: RedisOutage | None = None,
    ) -> None:
        self._security = security
        self._shared = FixedWindowRateLimiter(shared) if shared is not None else None
        self._outage = outage if outage is not None else RedisOutage()
        self._memory = FixedWindowRateLimiter(_SweepingMemoryStorage())
        self._prefix = (key_prefix,) if key_prefix else ()
        # Each limit's text parsed once: a handful of distinct texts (defaults, keys' rates).
        self._parsed: dict[str, list[RateLimitItem]] = {}
        # Whether the last count fell back to memory (its warning is logged once).
        self._in_memory = False

    def check(self, request: Request) -> None:
        """Count the request; raise 429 ``rate_limited`` with ``Retry-After`` past its limit.

        The health probes and requests no route answers are not counted.

        Raises:
            ApiError: 429, the request is past one of its counter's limits.
        """
        if request.url_rule is None or request.blueprint == health.bp.name:
            return
        role = endpoint_role()
        key = authenticated_key()
        security = self._security
        if role == INGEST:
            default = security.rate_limit_ingest
        else:
            default = security.rate_limit if key is not None else security.rate_limit_address
        text = key.rate if key is not None and key.rate else default
        if key is not None:
            self._count(request, text, key.limit_key, role or _OPEN_SCOPE, "API key")
        else:
            self._count(request, text, _address(request), role or _OPEN_SCOPE, "client address")

    def check_refused(self, request: Request) -> None:
        """Count a request refused for its key (401) against its client address.

        No key let it in, so it is an anonymous request, limited as one
        (``RATE_LIMIT_ADDRESS``); its own counter, so that guessing keys from
        an address never spends that address's open endpoints' budget.

        Raises:
            ApiError: 429 instead of the 401, the address is past its limit.
        """
        text = self._security.rate_limit_address
        self._count(request, text, _address(request), _REFUSED_SCOPE, "client address")

    def _count(self, request: Request, text: str | None, who: str, scope: str, per: str) -> None:
        """Count one request on ``who``'s counter for ``scope``; 429 past a limit in ``text``."""
        if not text:
            return
        counter = (*self._prefix, who, scope)
        for limit in self._limits(text):
            allowed, limiter = self._hit(limit, counter)
            if not allowed:
                retry_after = _seconds_until_reset(limiter, limit, counter)
                log.info("rate limit %s exceeded by %s at %s", limit, who, request.path)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests: at most {limit} per {per}; retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )

    def _limits(self, text: str) -> list[RateLimitItem]:
        found = self._parsed.get(text)
        if found is None:
            found = self._parsed[text] = parse_many(text)
        return found

    def _hit(
        self, limit: RateLimitItem, counter: tuple[str, ...]
    ) -> tuple[bool, FixedWindowRateLimiter]:
        """Count one request in Redis, or in memory while Redis fails; return if it is allowed."""
        if self._shared is not None and self._outage.usable():
            try:
                allowed = self._shared.hit(limit, *counter)
            except _STORAGE_FAILURES as exc:
                if not self._in_memory:
                    self._in_memory = True
                    log.warning(
                        "rate limits: Redis failed (%s); counting in memory, in each process, "
                        "until it answers again",
                        exc,
                    )
            else:
                if self._in_memory:
                    self._in_memory = False
                    log.warning("rate limits: Redis answers again; counting there")
                return allowed, self._shared
        return self._memory.hit(limit, *counter), self._memory


def _address(request: Request) -> str:
    return f"addr-{request.remote_addr or 'unknown'}"


def _seconds_until_reset(
    limiter: FixedWindowRateLimiter, limit: RateLimitItem, counter: tuple[str, ...]
) -> int:
    """Return the whole seconds until the counter's window ends (at least 1)."""
    try:
        reset = limiter.get_window_stats(limit, *counter).reset_time
    except _STORAGE_FAILURES:
        return max(1, limit.get_expiry())  # Redis failed in between: a whole window is safe
    return max(1, math.ceil(reset - time.time()))


def check_refused(request: Request) -> None:
    """Count a request refused for its key against its address, if limits are on (429 past it)."""
    limiter: RequestLimiter | None = current_app.extensions.get(LIMITER_KEY)
    if limiter is not None:
        limiter.check_refused(request)


def init_app(app: Flask) -> None:
    """Count requests with a limiter configured from the app's settings (after ``request_hooks``).

    Its check runs after the API key check, so that a request is counted
    against the key it was let in with. With no limit configured anywhere
    there is nothing to count, and no check is registered.
    """
    settings = settings_of(app)
    security = settings.security
    if not (
        security.rate_limit
        or security.rate_limit_ingest
        or security.rate_limit_address
        or any(key.rate for key in security.api_keys.keys)
    ):
        app.extensions[LIMITER_KEY] = None
        return
    outage = app.extensions["recsys.runtime"].redis_outage
    shared = None
    if settings.redis.url:
        shared = _SharedOutageRedisStorage(
            settings.redis.url,
            outage,
            # Past the timeout, connecting or answering, the limiter counts in
            # memory. No retries: redis-py's default retries three times with
            # back-off, seconds per request while Redis is silent.
            socket_connect_timeout=settings.redis.timeout_seconds,
            socket_timeout=settings.redis.timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
    limiter = RequestLimiter(security, shared, app.config.get("RATELIMIT_KEY_PREFIX", ""), outage)
    app.extensions[LIMITER_KEY] = limiter

    def check_rate_limit() -> None:
        limiter.check(request._get_current_object())  # type: ignore[attr-defined]

    app.before_request(check_rate_limit)
