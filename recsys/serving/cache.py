"""Answer caches: ranked candidates and answers (in each process), histories (in Redis).

An answer has two parts, and they are cached differently:

- The model's part, the ranked candidates of a (model version, user,
  categories), is pure model output: it never changes for a version, so every
  process keeps its own (``RankingCache``, cachetools' ``TTLCache``), with a
  TTL. The version is in the key, so a new version never reuses an entry. It
  holds enough candidates (at least ``CANDIDATES`` beyond what the request
  that made it left out) to fill most later requests after leaving out what
  they exclude. Finished answers are kept beside them, reused while the
  version matches and no event of the user came since.
- The user's history (whether they have events, what they bought) changes
  with every purchase, and every worker of every server must see a purchase
  the moment ``POST /interactions`` answers. So it is cached only in the Redis
  they share (``HistoryCache``, cachelib's ``RedisCache``), and an event
  invalidates its user's entry after the store commits, before the answer.
  A kept answer needs no history at all while the process hears every
  event announced (``recsys.serving.invalidation``); the history is read to
  make an answer, and to check a kept one when announcements are not heard.

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
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from cachelib import RedisCache
from cachelib.serializers import RedisSerializer
from cachetools import TTLCache
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.store.events import UserHistory

logger = logging.getLogger(__name__)

# Candidates ranked at least, beyond what a request leaves out: a later request
# for the same user with other exclusions or a small offset usually finds
# enough in them. A request that needs more ranks deeper and replaces the entry.
CANDIDATES = 100
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
_RANKING_HIT = CACHE_LOOKUPS.labels("ranking", "hit")
_RANKING_MISS = CACHE_LOOKUPS.labels("ranking", "miss")
_ANSWER_HIT = CACHE_LOOKUPS.labels("answer", "hit")
_ANSWER_MISS = CACHE_LOOKUPS.labels("answer", "miss")
REDIS_FAILURES = Counter(
    "recsys_cache_redis_failures",
    "Redis commands that failed (the answer then came from the store)",
)


@dataclass(frozen=True)
class Candidates:
    """A ranked candidate list, best first, as the model made it (nothing excluded).

    Attributes:
        product_ids: Raw product ids, best first (read-only).
        scores: The model's scores (read-only).
        complete: Whether the list holds every product the model can rank,
            so that a shorter answer after exclusions is the right one.
    """

    product_ids: np.ndarray
    scores: np.ndarray
    complete: bool

    @classmethod
    def of(cls, product_ids: np.ndarray, scores: np.ndarray, complete: bool) -> Candidates:
        """Wrap a model's ranked list, made read-only since requests share it."""
        ids = np.array(product_ids, dtype=np.int64)
        values = np.array(scores, dtype=np.float64)
        ids.flags.writeable = False
        values.flags.writeable = False
        return cls(ids, values, complete)

    def pick(self, n: int, exclude: frozenset[int]) -> list[tuple[int, float]] | None:
        """Return the n best (product id, score) pairs not in ``exclude``.

        Returns:
            The pairs, or None when the list ran out before n were found and
            products beyond it might have filled the answer.
        """
        picked: list[tuple[int, float]] = []
        for product_id, score in zip(self.product_ids.tolist(), self.scores.tolist(), strict=True):
            if product_id in exclude:
                continue
            picked.append((product_id, score))
            if len(picked) == n:
                return picked
        return picked if self.complete else None


class _BoundedTTLCache:
    """A thread-safe cachetools ``TTLCache``: least recently used entries go first when full.

    (cachelib's ``SimpleCache`` sorts all its entries on every insertion once
    full: with 10,000 entries that cost milliseconds a request.)
    """

    def __init__(self, max_entries: int, ttl_seconds: int):
        self._entries: TTLCache = TTLCache(maxsize=max_entries, ttl=ttl_seconds)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            return self._entries.get(key)

    def set(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RankingCache:
    """Ranked candidates per (model version, user, categories), and whole answers, in this process.

    Both are pure functions of what their keys and checks name, so every
    process keeps its own, with a TTL and a size bound past which the least
    recently used go (cachetools' ``TTLCache``):

    - candidates: the model's ranking of a user (or ``"popular"``) within a
      set of categories (empty: all), long enough for the request that made it;
    - answers: the finished answer to one request, reused only while the model
      version and the user's history are the ones it was made with (the caller
      checks), so a repeated request costs a dictionary lookup.

    Args:
        ttl_seconds: How long an entry is kept at most.
        max_entries: How many entries of each kind at most (a few KiB each).
    """

    def __init__(self, ttl_seconds: int, max_entries: int):
        self._cache = _BoundedTTLCache(max_entries, ttl_seconds)
        self._answers = _BoundedTTLCache(max_entries, ttl_seconds)
        # Answers to exclusion lists apart: lists that change every request
        # (a basket) must not push out the answers that are asked for again.
        self._excluding_answers = _BoundedTTLCache(max_entries, ttl_seconds)
        self._histories = _BoundedTTLCache(max_entries, ttl_seconds)

    def get(
        self, version: str, user: int | str, categories: frozenset[str] = frozenset()
    ) -> Candidates | None:
        """Return a version's candidates for a user (or ``"popular"``) in categories, or None."""
        found = self._cache.get(_candidates_key(version, user, categories))
        (_RANKING_MISS if found is None else _RANKING_HIT).inc()
        return found

    def put(
        self,
        version: str,
        user: int | str,
        candidates: Candidates,
        categories: frozenset[str] = frozenset(),
    ) -> None:
        self._cache.set(_candidates_key(version, user, categories), candidates)

    def answer(
        self,
        request: Hashable,
        usable: Callable[[Any], bool],
        excluding: bool = False,
        count_miss: bool = True,
    ) -> Any:
        """Return what ``keep_answer`` kept for an identical request, if ``usable`` accepts it.

        A kept answer made with another model version or another history of
        the user is a miss: ``usable`` tells. ``excluding``: the request has
        an exclusion list (those answers are kept apart). ``count_miss``:
        False when another lookup follows a miss and counts it.
        """
        found = (self._excluding_answers if excluding else self._answers).get(request)
        if found is not None and not usable(found):
            found = None
        if found is not None:
            _ANSWER_HIT.inc()
        elif count_miss:
            _ANSWER_MISS.inc()
        return found

    def keep_answer(self, request: Hashable, entry: Any, excluding: bool = False) -> None:
        (self._excluding_answers if excluding else self._answers).set(request, entry)

    def history(self, user_id: int, stamp: Hashable) -> UserHistory | None:
        """Return the user's history kept under ``stamp``, or None (kept under another, or not)."""
        found = self._histories.get(user_id)
        if found is None or found[0] != stamp:
            return None
        return found[1]

    def keep_history(self, user_id: int, stamp: Hashable, history: UserHistory) -> None:
        """Keep a history read while ``stamp`` was the user's (current until the stamp changes)."""
        self._histories.set(user_id, (stamp, history))

    def clear(self) -> None:
        self._cache.clear()
        self._answers.clear()
        self._excluding_answers.clear()
        self._histories.clear()


def _candidates_key(version: str, user: int | str, categories: frozenset[str]) -> Hashable:
    # A tuple, not a joined string: no category text can pose as another key.
    return (version, user, categories)


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
        stamp: The epoch and generation current when the lookup began; the
            history read from the store after a miss is saved under it.
    """

    history: UserHistory | None
    stamp: tuple[int | None, int | None] | None


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
        # A generation token must outlive every entry stamped with the one it
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
        stamp = (epoch, generation)
        if isinstance(entry, dict) and entry.get("stamp") == [epoch, generation]:
            try:
                history = UserHistory(bool(entry["events"]), frozenset(entry["purchased"]))
            except (KeyError, TypeError):
                pass  # not an entry this service wrote: a miss
            else:
                _HISTORY_HIT.inc()
                return HistoryLookup(history, stamp)
        _HISTORY_MISS.inc()
        return HistoryLookup(None, stamp)

    def save(self, user_id: int, history: UserHistory, stamp: tuple | None) -> None:
        """Cache a history read from the store after ``lookup`` returned ``stamp``."""
        if stamp is None or not self._usable():
            return
        entry = {
            "stamp": list(stamp),
            "events": history.has_events,
            "purchased": sorted(history.purchased),
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
