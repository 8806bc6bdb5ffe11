"""Users' histories in the Redis every worker and server shares, and that Redis's outages.

The user's history (whether they have events, what they bought) changes with
every purchase, and every worker of every server must see a purchase the
moment ``POST /interactions`` answers. So it is cached only in the Redis they
share (``HistoryCache``, cachelib's ``RedisCache``), and an event invalidates
its user's entry after the store commits, before the answer. (Answers and
ranked candidates are kept in each process: ``recsys.online.answer_cache``.)

Invalidation gives the user a new random generation token instead of deleting
the entry: a request that read the store just before the commit could
otherwise write the old history back just after the delete. Each entry
records the generation (and the global epoch) current when its request began,
and counts only while both still match; both are read in the same round trip
as the entry. A Redis that fails (refused, or silent past the Redis timeout,
from the first connection on) is skipped by every user of it in the process
(``RedisOutage``: histories come from the store) for ``REDIS_RETRY_SECONDS``,
logged once per outage; invalidations lost in an outage are made good when
Redis answers again by a new epoch, which drops every history cached before it.

Entries in Redis are JSON, never pickles: whoever can write to Redis cannot
make the service run code.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from cachelib import RedisCache
from cachelib.serializers import RedisSerializer
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.store.events import UserHistory

logger = logging.getLogger(__name__)

# A failing Redis is left alone this long before it is tried again.
REDIS_RETRY_SECONDS = 2.0
# The longest connecting or a command may take before it counts as a failure
# (the default of RECSYS_REDIS_TIMEOUT_SECONDS).
REDIS_TIMEOUT_SECONDS = 0.25

CACHE_LOOKUPS = Counter(
    "recsys_cache_lookups",
    "Cache lookups of the answering path by cache and result",
    ["cache", "result"],
)
_HISTORY_HIT = CACHE_LOOKUPS.labels("history", "hit")
_HISTORY_MISS = CACHE_LOOKUPS.labels("history", "miss")
REDIS_FAILURES = Counter(
    "recsys_cache_redis_failures",
    "Redis commands that failed (the answer then came from the store)",
)


class _JSONRedisSerializer(RedisSerializer):
    """Integers as Redis integers, everything else as JSON; never pickles."""

    def dumps(self, value: Any, protocol: int | None = None) -> bytes:
        if type(value) is int:
            return str(value).encode("ascii")
        return b"j" + json.dumps(value, separators=(",", ":")).encode()

    def loads(self, bvalue: Any) -> Any:
        if bvalue is None:
            return None
        try:
            if bvalue.startswith(b"j"):
                return json.loads(bvalue[1:])
            return int(bvalue)
        except ValueError:
            return None  # not ours, or damaged: a miss


class _JSONRedisCache(RedisCache):
    serializer = _JSONRedisSerializer()


@dataclass(frozen=True)
class HistoryLookup:
    """What ``HistoryCache.lookup`` found.

    Attributes:
        history: The cached history, or None on a miss.
        generation: The epoch and the user's generation current when the
            lookup began; the history read from the store after a miss is
            saved under them.
    """

    history: UserHistory | None
    generation: tuple[int | None, int | None] | None


_MISS = HistoryLookup(None, None)


def redis_client(
    url: str,
    timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
    read_timeout: float | None = None,
    single_connection: bool = True,
) -> redis.Redis:
    """Return a client for a ``REDIS_URL`` that fails fast instead of retrying.

    By default one connection per client, no pool: for one thread's commands
    that halves redis-py's cost per command (it was a third of a cached
    answer); a pub/sub subscription takes a pooled connection of its own.
    ``redis+unix://PATH`` (the rate limiter's spelling) is redis-py's ``unix://PATH``.

    Args:
        url: ``REDIS_URL``.
        timeout_seconds: Longest wait to connect, and for a command's reply.
        read_timeout: Longest wait for a reply instead, when it differs.
        single_connection: One connection, made now, instead of a pool.

    Raises:
        redis.RedisError: ``single_connection``, and Redis cannot be reached:
            redis-py connects such a client as it makes it.
    """
    if url.startswith("redis+unix://"):
        url = "unix://" + url.removeprefix("redis+unix://")
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds if read_timeout is None else read_timeout,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single_connection,
    )


class RedisOutage:
    """When this process may try Redis again after it failed: one for every user of Redis.

    The history cache, the announcements and the rate limiter share one, so
    that a request that finds Redis down or silent waits for it once, not
    once per user: after a failure every user skips Redis for
    ``REDIS_RETRY_SECONDS``, then the next request tries it again.

    Attributes:
        failures: How many times Redis failed so far. A connection opened
            before the last failure may be dead (a restarted Redis closed it)
            without knowing it: its user opens a new one instead, so that
            Redis is not found failing again, one stale connection at a time.
    """

    def __init__(self) -> None:
        # Written by any thread, read without a lock: single attributes.
        self._retry_at = 0.0
        self.failures = 0

    def usable(self) -> bool:
        """Whether Redis may be tried now."""
        return time.monotonic() >= self._retry_at

    def failed(self) -> None:
        """Note that Redis just failed: nobody tries it for ``REDIS_RETRY_SECONDS``."""
        self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        self.failures += 1


class HistoryCache:
    """Users' histories in the Redis all workers and servers share.

    Each thread talks to Redis through a client (and connection) of its own.

    Args:
        url: ``REDIS_URL``.
        key_prefix: Prefix of every key (``CACHE_KEY_PREFIX``).
        ttl_seconds: How long a history is kept at most.
        timeout_seconds: Longest wait for Redis (``REDIS_TIMEOUT_SECONDS``).
        outage: When Redis may be tried again, shared with its other users
            in the process (a new one by default).
    """

    def __init__(
        self,
        url: str,
        key_prefix: str,
        ttl_seconds: int,
        timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
        outage: RedisOutage | None = None,
    ):
        self._url = url
        self._timeout = timeout_seconds
        self._redis = outage if outage is not None else RedisOutage()
        self._key_prefix = f"{key_prefix}history:"
        self._ttl = ttl_seconds
        self._local = threading.local()
        # A generation token must outlive every entry saved under the one it
        # replaced (written at most a request's duration later).
        self._generation_ttl = 2 * ttl_seconds + 60
        self._state_lock = threading.Lock()
        self._outage = False  # logged, and not yet over
        self._lost_invalidations = False

    @property
    def _cache(self) -> _JSONRedisCache:
        """Return the thread's cache, connecting its client at first use and after failures.

        Raises:
            redis.RedisError: Redis cannot be reached: use it only inside the
                outage handling, as any command.
        """
        cache = getattr(self._local, "cache", None)
        if cache is None or self._local.failures != self._redis.failures:
            if cache is not None:
                self._local.client.close()
                self._local.cache = None
            failures = self._redis.failures
            client = redis_client(self._url, self._timeout)
            cache = _JSONRedisCache(client, key_prefix=self._key_prefix, default_timeout=self._ttl)
            self._local.client, self._local.cache = client, cache
            self._local.failures = failures
        return cache

    # -- the three operations ---------------------------------------------------

    def lookup(self, user_id: int) -> HistoryLookup:
        """Return the user's cached history, if Redis has a current one."""
        if not self._usable():
            return _MISS
        prefix = self._key_prefix
        try:
            cache = self._cache
            self._settle_lost_invalidations()
            # Every answer makes this read, so it goes straight to the thread's
            # connection: redis-py's client layers (pool, retries, events)
            # cost more CPU than the round trip itself.
            connection = self._local.client.connection
            connection.send_command(
                "MGET", f"{prefix}epoch", f"{prefix}gen:{user_id}", f"{prefix}user:{user_id}"
            )
            raw = connection.read_response()
        except redis.RedisError as exc:
            self._failed(exc)
            return _MISS
        if self._outage:
            self._answered()
        loads = cache.serializer.loads
        epoch, generation, entry = loads(raw[0]), loads(raw[1]), loads(raw[2])
        current = (epoch, generation)
        # The stored field keeps its old name, "stamp", so that servers of the
        # previous release and this one read each other's entries in a deploy.
        if isinstance(entry, dict) and entry.get("stamp") == [epoch, generation]:
            try:
                # Only "typed" holds dislikes: an entry of a release before
                # event types lacks it, and is a miss. Only this release's
                # rows hold each product's latest time: a history with events
                # but without the times (the previous release's) is a miss too.
                history = UserHistory.of_events(entry["typed"])
            except (KeyError, TypeError, ValueError):
                pass  # not an entry this service wrote: a miss
            else:
                if history.latest or not history.has_events:
                    _HISTORY_HIT.inc()
                    return HistoryLookup(history, current)
        _HISTORY_MISS.inc()
        return HistoryLookup(None, current)

    def save(self, user_id: int, history: UserHistory, generation: tuple | None) -> None:
        """Cache a history read from the store after ``lookup`` returned ``generation``."""
        if generation is None or not self._usable():
            return
        # "events", "purchased" and "counts" are what releases before event
        # types read: kept for a deploy in which both serve; "typed" is what
        # this one needs. Its rows carry the products' latest times as a fifth
        # element, which the release before them cannot read: in a deploy it
        # counts this one's entries as misses, and this one its entries, so
        # each reads the store instead (a separate field of times would make
        # every lookup parse twice the JSON, for the length of a deploy).
        entry = {
            "stamp": list(generation),
            "events": history.has_events,
            "purchased": sorted(history.purchased),
            "counts": history.counts(),
            "typed": history.event_rows(),
        }
        try:
            self._cache.set(f"user:{user_id}", entry)
        except redis.RedisError as exc:
            self._failed(exc)

    def invalidate(self, user_ids: Iterable[int]) -> None:
        """Make the users' cached histories stale everywhere (call after the store commits)."""
        tokens = {f"gen:{u}": secrets.randbits(62) for u in set(user_ids)}
        if not tokens:
            return
        if not self._usable():
            self._lost_invalidations = True
            return
        try:
            self._settle_lost_invalidations()
            # One round trip; the old entries expire with their TTL.
            self._cache.set_many(tokens, timeout=self._generation_ttl)
        except redis.RedisError as exc:
            self._lost_invalidations = True
            self._failed(exc)
        else:
            self._answered()

    def invalidate_all(self) -> None:
        """Make every cached history stale everywhere (after events came in past the API)."""
        self._lost_invalidations = True
        if not self._usable():
            return
        try:
            self._settle_lost_invalidations()
        except redis.RedisError as exc:
            self._failed(exc)

    # -- outages ----------------------------------------------------------------

    def _settle_lost_invalidations(self) -> None:
        """Drop every cached history if some invalidations were lost (may raise RedisError)."""
        if not self._lost_invalidations:
            return
        self._cache.set("epoch", secrets.randbits(62), timeout=0)
        self._lost_invalidations = False
        logger.info("Redis: every history cached so far dropped (new epoch)")

    def _usable(self) -> bool:
        return self._redis.usable()

    def _failed(self, exc: Exception) -> None:
        REDIS_FAILURES.inc()
        self._redis.failed()
        with self._state_lock:
            if self._outage:
                return
            self._outage = True
        logger.warning(
            "Redis unavailable (%s: %s): reading histories from the store, retrying every %g s",
            type(exc).__name__,
            exc,
            REDIS_RETRY_SECONDS,
        )

    def _answered(self) -> None:
        if not self._outage:
            return
        with self._state_lock:
            if not self._outage:
                return
            self._outage = False
        logger.info("Redis answers again: caching histories")
