"""The answering path's one cache layer: answers, candidates and users' histories.

``RecommendationService`` looks each request up once (``AnswerCache.lookup``):
the answer cached for the same pipeline and request while it holds, else the
user's history to make a new one with. Inside the layer:

- Answers and ranked candidates are kept in each process for a TTL at
  most, least recently used first out when full. Candidates are pure
  model output, named by (model version, ranker, user, categories), and hold
  at least ``CANDIDATES`` more than the request that made them left out, so
  that later requests with other exclusions usually find enough in them. An
  answer is used only with the version object it was made with and while no
  event of its user came since: vouched for without any I/O by the
  invalidation bus (``recsys.online.invalidation``), or else by comparing
  the user's history.
- Histories come from the shared Redis (``recsys.online.history_cache``), else from
  the store; a history read while the bus vouches for the user is kept in
  the process under the user's history version until their next event.

``NoAnswerCache`` is the layer with caching off (``CACHE=0``): every history
from the store, nothing kept. Without Redis, ``AnswerCache`` shares no
histories and checks every cached answer against the user's history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from recsys.models.ranked import RankedList
from recsys.online.answers import (
    STORE_UNAVAILABLE,
    AnswerKey,
    RecommendationAnswer,
    RecommendRequest,
)
from recsys.online.history_cache import CACHE_LOOKUPS, HistoryCache, HistoryLookup
from recsys.online.invalidation import HistoryVersion, InvalidationBus
from recsys.online.live_model import ServingModel
from recsys.online.rankers import Candidates, Ranker
from recsys.store.engine import STORE_OUTAGES
from recsys.store.events import EventStore, UserHistory

logger = logging.getLogger(__name__)

# Candidates ranked at least, beyond what a request leaves out: a later request
# for the same user with other exclusions or a small offset usually finds
# enough in them. A request that needs more ranks deeper and replaces the entry.
CANDIDATES = 100

_RANKING_HIT = CACHE_LOOKUPS.labels("ranking", "hit")
_RANKING_MISS = CACHE_LOOKUPS.labels("ranking", "miss")
_ANSWER_HIT = CACHE_LOOKUPS.labels("answer", "hit")
_ANSWER_MISS = CACHE_LOOKUPS.labels("answer", "miss")


class Lookup(NamedTuple):
    """What one lookup found: the cached answer, or what a new answer is made with.

    Attributes:
        answer: The cached answer, or None.
        history: The user's history (empty when ``answer`` was found).
        degraded: Why the history is incomplete, if it is.
        key: What the answer is cached under: (pipeline, request); None for
            a request whose answers are not cached (explained or re-ranked).
        version: The version the answer is made with.
        history_version: The user's history version when the request began,
            if the bus gave one.
        history_rows: The store's rows ``history`` was counted from, if it
            was read from the store.
    """

    answer: RecommendationAnswer | None
    history: UserHistory
    degraded: str | None = None
    key: tuple[str, AnswerKey] | None = None
    version: ServingModel | None = None
    history_version: HistoryVersion | None = None
    history_rows: Sequence[Sequence[Any]] | None = None


_NO_HISTORY = UserHistory()
# What a request knows of a user when the store cannot be read.
_UNREAD_HISTORY = UserHistory(unavailable=True)


@dataclass(frozen=True)
class _CachedAnswer:
    """A finished answer, and the version and history it was made with.

    ``history_rows``: the store's rows the history was counted from (None
    when it came from Redis): rows read again and found equal are the same
    history, without counting them again.
    """

    version: ServingModel
    history: UserHistory
    history_version: HistoryVersion | None
    answer: RecommendationAnswer
    history_rows: Sequence[Sequence[Any]] | None


def read_history(store: EventStore, user_id: int) -> tuple[UserHistory, str | None]:
    """Return the user's history from the store, and why it is incomplete if it is."""
    rows = read_history_rows(store, user_id)
    if rows is None:
        return _UNREAD_HISTORY, STORE_UNAVAILABLE
    return UserHistory.of_events(rows), None


def read_history_rows(store: EventStore, user_id: int) -> Sequence[Sequence[Any]] | None:
    """Return the store's rows of the user's history, or None when the store is unavailable."""
    try:
        return store.user_history_rows(user_id)
    except STORE_OUTAGES as exc:
        logger.warning("event store unavailable for a user's history: %s", type(exc).__name__)
        return None


class NoAnswerCache:
    """The cache layer with caching off: every history read from the store, nothing kept."""

    def __init__(self, store: EventStore):
        self.store = store

    def lookup(self, pipeline: str, version: ServingModel, request: RecommendRequest) -> Lookup:
        """Return the user's history from the store (there are no cached answers)."""
        assert request.user_id is not None, "a session has no history to look up"
        return Lookup(None, *read_history(self.store, request.user_id))

    def keep(self, found: Lookup, answer: RecommendationAnswer) -> None:
        """Keep nothing."""

    def pick(
        self,
        version: ServingModel,
        ranker: Ranker,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        wanted: int,
        left_out: frozenset[int],
    ) -> RankedList | None:
        """Return None: the pipeline ranks every request."""
        return None

    def forget(self, user_ids: Iterable[int], erased: bool = False) -> None:
        """Forget nothing (nothing is kept)."""

    def announce_catalog(self) -> None:
        """Announce nothing (no other process is told: each refreshes its catalog in time)."""

    def on_announcements(
        self, erased: Callable[[list[int]], object], catalog: Callable[[], object]
    ) -> None:
        """Hear nothing (there is no bus)."""

    def forget_everything(self) -> None:
        """Forget nothing (nothing is kept)."""

    def clear(self) -> None:
        """Drop nothing (nothing is kept)."""

    def start(self) -> None:
        """Start nothing."""

    def stop(self) -> None:
        """Stop nothing."""


class _BoundedTTLCache:
    """A thread-safe cache: least recently used entries go first when full, none outlives its TTL.

    An ordered dict of (deadline, value), most recently used last: a hit is
    a clock read, a lookup and a move. (cachetools' ``TTLCache`` went
    through five Python calls and two clock reads for one: 3.1 us against
    0.7. cachelib's ``SimpleCache`` sorts all its entries on every insertion
    once full: with 10,000 entries that cost milliseconds a request.)
    """

    def __init__(self, max_entries: int, ttl_seconds: int):
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_seconds = ttl_seconds
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: Hashable, value: Any) -> None:
        now = time.monotonic()
        with self._lock:
            entries = self._entries
            entries[key] = (now + self._ttl_seconds, value)
            entries.move_to_end(key)
            # The least recently used go when full, and expired ones found on the way.
            while entries and (
                len(entries) > self._max_entries or next(iter(entries.values()))[0] <= now
            ):
                entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class AnswerCache:
    """Answers, candidates and histories, looked up once per request.

    Args:
        store: Where histories are read on a miss.
        ttl_seconds: How long an entry is kept in the process at most.
        max_entries: How many entries of each kind at most (a few KiB each).
        histories: Users' histories in the shared Redis; None: no Redis.
        invalidations: The bus that vouches for cached answers; None: no Redis.
    """

    def __init__(
        self,
        store: EventStore,
        ttl_seconds: int,
        max_entries: int,
        histories: HistoryCache | None = None,
        invalidations: InvalidationBus | None = None,
    ):
        self.store = store
        self.histories = histories if histories is not None else _NoSharedHistories()
        self.invalidations = invalidations if invalidations is not None else _NoAnnouncements()
        self._candidates = _BoundedTTLCache(max_entries, ttl_seconds)
        self._answers = _BoundedTTLCache(max_entries, ttl_seconds)
        # Answers to exclusion lists apart: lists that change every request
        # (a basket) must not push out the answers that are asked for again.
        self._excluding_answers = _BoundedTTLCache(max_entries, ttl_seconds)
        self._versioned_histories = _BoundedTTLCache(max_entries, ttl_seconds)

    def lookup(self, pipeline: str, version: ServingModel, request: RecommendRequest) -> Lookup:
        """Return a pipeline's cached answer to a request if it holds, else the user's history.

        With a history version from the bus, a cached answer holds without
        reading the history; without one, it holds while the history is the
        one it was made with. Plain requests count one hit or miss.
        """
        user_id = request.user_id
        assert user_id is not None, "a session has no history to look up"
        history_version = self.invalidations.history_version(user_id)
        key = (pipeline, request.key) if request.plain else None
        cached = self._cached(key)
        if cached is not None and cached.version is not version:
            cached = None  # made with another version, or before the catalog changed
        if (
            cached is not None
            and history_version is not None
            and cached.history_version == history_version
        ):
            # No event of the user was announced since: it holds without reading their history.
            _ANSWER_HIT.inc()
            return Lookup(cached.answer, _NO_HISTORY)
        history, degraded, rows = self._history(user_id, history_version, cached)
        if (
            cached is not None
            and history_version is None
            and (cached.history is history or cached.history == history)
        ):
            # Rows read the same gave the cached history itself: no comparing needed.
            _ANSWER_HIT.inc()
            return Lookup(cached.answer, history)
        if key is not None:
            _ANSWER_MISS.inc()
        return Lookup(None, history, degraded, key, version, history_version, rows)

    def keep(self, found: Lookup, answer: RecommendationAnswer) -> None:
        """Keep an answer made after ``found`` missed (unless it is degraded or not cached)."""
        if found.key is None or found.version is None or answer.degraded is not None:
            return
        entry = _CachedAnswer(
            found.version, found.history, found.history_version, answer, found.history_rows
        )
        self._answers_of(found.key).set(found.key, entry)

    def pick(
        self,
        version: ServingModel,
        ranker: Ranker,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        wanted: int,
        left_out: frozenset[int],
    ) -> RankedList:
        """Return the ``wanted`` best candidates of a user outside ``left_out``.

        From the cached candidates when enough remain in them after
        ``left_out`` (or they hold every product); otherwise the ranker ranks
        ``wanted + len(left_out)`` (at least ``CANDIDATES`` more), which is
        always enough, and the deeper list replaces the cached one. A user's
        candidates are named by their history too: folded in from it, they
        hold exactly as long as it is unchanged.
        """
        person = (user_id, history) if ranker.per_user else None
        # The unavailable products too: hiding one replaces the version object,
        # not its name, and candidates are kept by name.
        key = (version.version, version.hidden, ranker.key, person, categories)
        found: Candidates | None = self._candidates.get(key)
        (_RANKING_MISS if found is None else _RANKING_HIT).inc()
        picked = found.pick(wanted, left_out) if found is not None else None
        if picked is not None:
            return picked
        depth = max(CANDIDATES, wanted) + len(left_out)
        found = ranker.candidates(version, user_id, history, categories, depth)
        self._candidates.set(key, found)
        picked = found.pick(wanted, left_out)
        assert picked is not None, "ranked deep enough for the request"
        return picked

    def forget(self, user_ids: Iterable[int], erased: bool = False) -> None:
        """Make the users' cached histories and answers stale for every worker and server.

        Call it after their new events are committed, before answering: the
        next request of any of them reads the store again.

        Args:
            user_ids: The users.
            erased: The users were deleted: every process hears it too.
        """
        users = list(user_ids)
        self.histories.invalidate(users)
        self.invalidations.announce(users, erased=erased)

    def announce_catalog(self) -> None:
        """Tell every process that products' availability changed; wait until they know."""
        self.invalidations.announce_catalog()

    def on_announcements(
        self, erased: Callable[[list[int]], object], catalog: Callable[[], object]
    ) -> None:
        """Set what this process does when another announces erased users or a catalog change."""
        self.invalidations.on_announcements(erased, catalog)

    def forget_everything(self) -> None:
        """Make every cached history and answer stale (after events came in past the API)."""
        self.histories.invalidate_all()
        self.invalidations.announce_everything()

    def clear(self) -> None:
        """Drop everything kept in this process (a new version went live)."""
        for cache in (
            self._candidates,
            self._answers,
            self._excluding_answers,
            self._versioned_histories,
        ):
            cache.clear()

    def start(self) -> None:
        """Start listening to the bus (once per process)."""
        self.invalidations.start()

    def stop(self) -> None:
        """Stop listening to the bus: cached answers are checked against histories."""
        self.invalidations.stop()

    def _answers_of(self, key: tuple[str, AnswerKey]) -> _BoundedTTLCache:
        return self._excluding_answers if key[1].excluding else self._answers

    def _cached(self, key: tuple[str, AnswerKey] | None) -> _CachedAnswer | None:
        return None if key is None else self._answers_of(key).get(key)

    def _history(
        self, user_id: int, history_version: HistoryVersion | None, cached: _CachedAnswer | None
    ) -> _HistoryRead:
        """Return the user's history, why it is incomplete if it is, and the store's rows of it.

        With a ``history_version`` (the bus vouches for this process), a
        history kept in the process under the same version is current; one
        read from Redis or the store is kept under it. Without one, a history
        read from the store in the same rows as the ``cached`` answer's is
        that answer's history object (a hit compares them at no cost).
        """
        if history_version is None:
            return self._shared_history(user_id, cached)
        found = self._versioned_histories.get(user_id)
        if found is not None and found[0] == history_version:
            return _HistoryRead(found[1], None, None)
        read = self._shared_history(user_id, None)
        if read.degraded is None:
            self._versioned_histories.set(user_id, (history_version, read.history))
        return read

    def _shared_history(self, user_id: int, cached: _CachedAnswer | None) -> _HistoryRead:
        """Return the user's history from Redis or the store (see ``_history``)."""
        lookup = self.histories.lookup(user_id)
        if lookup.history is not None:
            return _HistoryRead(lookup.history, None, None)
        rows = read_history_rows(self.store, user_id)
        if rows is None:
            return _HistoryRead(_UNREAD_HISTORY, STORE_UNAVAILABLE, None)
        if cached is not None and cached.history_rows == rows:
            history = cached.history  # the same events: counting them again finds the same
        else:
            history = UserHistory.of_events(rows)
        self.histories.save(user_id, history, lookup.generation)
        return _HistoryRead(history, None, rows)


class _HistoryRead(NamedTuple):
    """A user's history as read, why it is incomplete, and the store's rows of it (or None)."""

    history: UserHistory
    degraded: str | None
    rows: Sequence[Sequence[Any]] | None


_NOT_SHARED = HistoryLookup(None, None)


class _NoSharedHistories:
    """Histories without Redis: none shared, every one read from the store."""

    def lookup(self, user_id: int) -> HistoryLookup:
        return _NOT_SHARED

    def save(self, user_id: int, history: UserHistory, generation: tuple | None) -> None:
        pass

    def invalidate(self, user_ids: Iterable[int]) -> None:
        pass

    def invalidate_all(self) -> None:
        pass


class _NoAnnouncements:
    """The bus without Redis: it never vouches for an answer, and announces nothing."""

    def history_version(self, user_id: int) -> HistoryVersion | None:
        return None

    def announce(self, user_ids: Iterable[int], erased: bool = False) -> bool:
        return True

    def announce_catalog(self) -> bool:
        return True

    def on_announcements(
        self, erased: Callable[[list[int]], object], catalog: Callable[[], object]
    ) -> None:
        pass

    def announce_everything(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
