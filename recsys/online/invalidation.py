"""Which cached answers are stale: every process hears of an event before it is acknowledged.

A cached answer (``AnswerCache``) is only right while its user has posted
nothing since it was made. Reading the user's history from Redis on every
request would tell, but that round trip was most of a cached answer's cost
under gunicorn. Instead each process keeps a listener thread subscribed to one
Redis channel, and ``POST /interactions`` announces its users there after the
store commits, and waits until every subscribed listener confirms (a barrier)
before it answers. A cached answer then needs no I/O to be trusted: it is used
while the user's history version (the process's epoch and the user's mark,
both local) is still the one it was made with.

What makes that safe when something fails:

- A listener proves it is current by a ping round: it sends PING on its
  subscription and, since Redis answers in order, once the reply arrives every
  announcement published before it has been handled. History versions are
  handed out only while the last such proof is under ``FRESH_SECONDS`` old. A
  listener that stops hearing (Redis gone, a network cut, a stalled process)
  falls back, within that time, to checking each user's history as before.
- The barrier waits at most ``ACK_SECONDS``, longer than ``FRESH_SECONDS``: a
  listener that got the announcement but did not confirm it in time is, by
  then, no longer trusted with history versions.
- A listener that (re)subscribes drops every cached answer first: it may have
  missed announcements while it was not subscribed.
- An announcement that cannot be published (Redis unreachable from the
  writer) is made good by a "drop everything" announcement as soon as Redis
  answers this process again. After a failure, announcements are not tried
  for ``REDIS_RETRY_SECONDS`` (``RedisOutage``, shared with the history
  cache): they count as not published, so a request waits for a Redis that
  does not answer at most once.

Two more kinds ride the same channel and the same confirmation: a deletion
of users (their marks, and each process's ``on_erased`` handler, so that no
version ranks them from a training-time row) and a change of products'
availability (each process's ``on_catalog`` handler re-reads which products
are hidden). Both handlers run before the process confirms.

Announcements are JSON, never pickles; one that is not ours drops everything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis
from prometheus_client import Counter

from recsys.online.history_cache import (
    REDIS_RETRY_SECONDS,
    REDIS_TIMEOUT_SECONDS,
    RedisOutage,
    redis_client,
)

logger = logging.getLogger(__name__)

# How often a listener proves it is current (a ping round).
HEARTBEAT_SECONDS = 0.2
# How long a ping round may take before the subscription counts as broken.
PONG_TIMEOUT_SECONDS = 1.0
# How old the last proof may be for history versions to be handed out.
FRESH_SECONDS = 1.0
# How long an announcement waits for the listeners' confirmations at most
# (longer than FRESH_SECONDS: see the module docstring).
ACK_SECONDS = 2.0
# Confirmations expire from Redis after this long.
_ACK_KEY_TTL_MS = 60_000
# Users with a mark at most; past it every mark (and cached answer) is dropped.
MAX_MARKED_USERS = 1_000_000

# (epoch, mark): which version of a user's history this process last heard
# of; an announced event of the user (a new mark) or a drop of everything (a
# new epoch) changes it.
HistoryVersion = tuple[int, int]

CACHED_ANSWERS_DROPPED = Counter(
    "recsys_cache_answers_dropped",
    "Times a process stopped trusting every answer it cached, by reason",
    ["reason"],
)


class InvalidationBus:
    """Announces users' new events to every process, and says which cached answers still hold.

    Args:
        url: ``REDIS_URL``.
        key_prefix: Prefix of the channel and keys (``CACHE_KEY_PREFIX``).
        timeout_seconds: Longest wait for Redis (``REDIS_TIMEOUT_SECONDS``), for
            connecting and for announcing; the listener waits ``PONG_TIMEOUT_SECONDS``
            for replies, off the request path.
        outage: When Redis may be tried again, shared with its other users
            in the process (a new one by default).
    """

    def __init__(
        self,
        url: str,
        key_prefix: str,
        timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
        outage: RedisOutage | None = None,
    ):
        self._url = url
        self._timeout = timeout_seconds
        self._redis = outage if outage is not None else RedisOutage()
        self._channel = f"{key_prefix}invalidate"
        self._ack_prefix = f"{key_prefix}ack:"
        self._local = threading.local()
        # The listener's state; read by request threads without a lock (single
        # attribute reads and writes are atomic in CPython).
        # (epoch, user -> mark), replaced whole when everything is dropped so
        # that a reader never pairs a new epoch's marks with the old epoch.
        self._state: tuple[int, dict[int, int]] = (0, {})
        self._next_mark = 0
        self._proved_at = float("-inf")
        self._marks_lock = threading.Lock()
        self._lost = False  # an announcement of this process could not be published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._outage_logged = False
        self._on_erased: Callable[[list[int]], object] = _ignore
        self._on_catalog: Callable[[], object] = _ignore

    # -- request threads ------------------------------------------------------------

    def history_version(self, user_id: int) -> HistoryVersion | None:
        """Return the user's history version, or None when this process cannot vouch for it.

        An answer cached under a history version is current while
        ``history_version`` returns the same one. None: the listener has not
        proved itself current lately; check the user's history instead.
        """
        if time.monotonic() - self._proved_at >= FRESH_SECONDS:
            return None
        epoch, marks = self._state
        return (epoch, marks.get(user_id, 0))

    def announce(self, user_ids: Iterable[int], erased: bool = False) -> bool:
        """Tell every process that these users' cached answers are stale, and wait until they know.

        Call it after the users' events are committed, before answering.

        Args:
            user_ids: The users.
            erased: The users were deleted: every process also hears it
                (``on_erased``) before it confirms.

        Returns:
            Whether every listener confirmed within ``ACK_SECONDS`` (those
            that did not stop trusting their history versions by then); False without
            trying while Redis is left alone after a failure.
        """
        users = sorted({int(u) for u in user_ids})
        if not users:
            return True
        self._mark(users)  # this process knows at once
        body: dict[str, Any] = {"users": users}
        if erased:
            body["erased"] = True
        return self._announce(body)

    def announce_catalog(self) -> bool:
        """Tell every process that products' availability changed, and wait until they know.

        Each process's ``on_catalog`` callback runs before it confirms.

        Returns:
            Whether every listener confirmed within ``ACK_SECONDS``.
        """
        return self._announce({"catalog": True})

    def on_announcements(
        self, erased: Callable[[list[int]], object], catalog: Callable[[], object]
    ) -> None:
        """Set what this process does, before confirming, on erased users and catalog changes."""
        self._on_erased, self._on_catalog = erased, catalog

    def _announce(self, body: dict[str, Any]) -> bool:
        if not self._redis.usable():
            self._lost = True
            return False
        try:
            if self._lost:
                self._publish_drop_of_everything()
                logger.info("Redis: announced a drop of every cached answer (some were lost)")
            return self._publish(body)
        except redis.RedisError as exc:
            self._lost = True
            self._redis.failed()
            self._log_outage(exc)
            return False

    def _client(self) -> redis.Redis:
        """Return the thread's client, connecting it at first use and after failures.

        Raises:
            redis.RedisError: Redis cannot be reached.
        """
        client = getattr(self._local, "client", None)
        # A client made before a fork shares its socket with the parent; one
        # made before Redis failed may hold a connection Redis closed since.
        if (
            client is None
            or self._local.pid != os.getpid()
            or self._local.failures != self._redis.failures
        ):
            if client is not None and self._local.pid == os.getpid():
                client.close()
            self._local.client = None
            failures = self._redis.failures
            client = self._local.client = redis_client(self._url, self._timeout)
            self._local.pid, self._local.failures = os.getpid(), failures
        return client

    def _publish(self, body: dict[str, Any]) -> bool:
        token = secrets.token_hex(16)
        body["ack"] = token
        client = self._client()
        # redis-py types its sync and async clients alike: this one returns an int.
        receivers = int(cast(int, client.publish(self._channel, json.dumps(body))))
        ack_key = self._ack_prefix + token
        confirmed = 0
        deadline = time.monotonic() + ACK_SECONDS
        while confirmed < receivers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Short waits: the client's socket timeout is the Redis timeout.
            if client.blpop([ack_key], timeout=min(remaining, self._timeout / 2)):
                confirmed += 1
        if confirmed < receivers:
            logger.warning(
                "%d of %d processes did not confirm an announcement within %g s: they stop "
                "trusting cached answers until they hear from Redis again",
                receivers - confirmed,
                receivers,
                ACK_SECONDS,
            )
            return False
        return True

    # -- the listener -----------------------------------------------------------------

    def start(self) -> None:
        """Start this process's listener (once per process; a forked child starts its own)."""
        if self._thread is not None and self._thread_pid == os.getpid():
            return
        # Whatever a parent process proved says nothing about this one.
        self._proved_at = float("-inf")
        self._stop.clear()
        self._thread_pid = os.getpid()
        self._thread = threading.Thread(target=self._listen, daemon=True, name="invalidations")
        self._thread.start()

    def stop(self) -> None:
        """Stop the listener (within ``HEARTBEAT_SECONDS``); no history versions are handed out."""
        self._stop.set()
        self._proved_at = float("-inf")
        if self._thread is not None and self._thread_pid == os.getpid():
            self._thread.join(timeout=HEARTBEAT_SECONDS + PONG_TIMEOUT_SECONDS + 1)
        self._proved_at = float("-inf")  # a ping round may have ended after the first reset

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis_client(
                    self._url,
                    self._timeout,
                    read_timeout=PONG_TIMEOUT_SECONDS,
                    single_connection=False,
                )
                pubsub = client.pubsub()
                pubsub.subscribe(self._channel)
                # Announcements made before this subscription were not heard.
                self._drop_everything("subscribed")
                self._follow(pubsub)
            except (redis.RedisError, OSError) as exc:
                # No history versions until it proves itself again, after (re)subscribing.
                self._proved_at = float("-inf")
                self._log_outage(exc)
                self._stop.wait(REDIS_RETRY_SECONDS)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()

    def _log_outage(self, exc: Exception) -> None:
        # Once per outage, whichever thread meets it first.
        if self._outage_logged:
            return
        self._outage_logged = True
        logger.warning(
            "Redis unavailable for announcements (%s: %s): cached answers are checked against "
            "each user's history, and events posted here are announced again as a drop of "
            "every cached answer once Redis answers",
            type(exc).__name__,
            exc,
        )

    def _follow(self, pubsub: redis.client.PubSub) -> None:
        """Handle announcements and prove currency every HEARTBEAT_SECONDS until stopped."""
        self._prove(pubsub)
        if self._outage_logged:
            self._outage_logged = False
            logger.info("Redis answers announcements again: cached answers trusted while current")
        if self._lost:
            # This process's announcements were lost: nobody knows which. Made
            # from another thread, since this one must confirm it too.
            threading.Thread(target=self.announce_everything, daemon=True).start()
        next_round = time.monotonic() + HEARTBEAT_SECONDS
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=max(0.0, next_round - time.monotonic()))
            if message is not None:
                self._handle(message)
            if time.monotonic() >= next_round:
                self._prove(pubsub)
                next_round = time.monotonic() + HEARTBEAT_SECONDS

    def announce_everything(self) -> None:
        """Tell every process to drop every cached answer (after lost announcements)."""
        # If it fails, it stays lost: the next announcement or reconnection tries again.
        with contextlib.suppress(redis.RedisError):
            self._publish_drop_of_everything()

    def _publish_drop_of_everything(self) -> None:
        """Publish "drop every cached answer" (may raise RedisError); nothing is lost after it."""
        self._publish({"all": True})
        self._lost = False

    def _prove(self, pubsub: redis.client.PubSub) -> None:
        """Run one ping round: handle what arrives before the reply, then record when it was sent.

        Raises:
            redis.TimeoutError: No reply within PONG_TIMEOUT_SECONDS.
        """
        token = secrets.token_hex(8)
        sent_at = time.monotonic()
        pubsub.ping(token)
        deadline = sent_at + PONG_TIMEOUT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise redis.TimeoutError(f"no reply to PING within {PONG_TIMEOUT_SECONDS} s")
            message = pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message["type"] == "pong":
                if _text(message["data"]) == token:
                    if not self._stop.is_set():
                        self._proved_at = sent_at
                    return
                continue  # an older round's reply
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return  # subscription confirmations
        try:
            body = json.loads(message["data"])
            ack = str(body["ack"])
            catalog = body.get("catalog") is True
            users = None if body.get("all") or catalog else [int(u) for u in body["users"]]
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning(
                "an announcement that is not ours (%s): dropping every cached answer", exc
            )
            self._drop_everything("unknown_announcement")
            return
        if catalog:
            self._call(self._on_catalog)
        elif users is None:
            self._drop_everything("announced")
        else:
            self._mark(users)
            if body.get("erased") is True:
                self._call(self._on_erased, users)
        # Confirmed only once handled: the announcer is waiting for this.
        ack_key = self._ack_prefix + ack
        pipeline = self._client().pipeline(transaction=False)
        pipeline.lpush(ack_key, 1)
        pipeline.pexpire(ack_key, _ACK_KEY_TTL_MS)
        pipeline.execute()

    @staticmethod
    def _call(callback: Callable[..., object], *args: Any) -> None:
        # A failing callback must not stop the listener; the refresh period catches up.
        try:
            callback(*args)
        except Exception:
            logger.exception("an announcement's handler failed")

    # -- marks ----------------------------------------------------------------------

    def _mark(self, users: list[int]) -> None:
        with self._marks_lock:
            marks = self._state[1]
            if len(marks) + len(users) > MAX_MARKED_USERS:
                marks = self._drop_everything_locked("too_many_marks")[1]
            self._next_mark += 1
            mark = self._next_mark
            for user in users:
                marks[user] = mark

    def _drop_everything(self, reason: str) -> None:
        with self._marks_lock:
            self._drop_everything_locked(reason)

    def _drop_everything_locked(self, reason: str) -> tuple[int, dict[int, int]]:
        # A new epoch makes every history version handed out so far a stale one.
        self._state = (self._state[0] + 1, {})
        CACHED_ANSWERS_DROPPED.labels(reason).inc()
        return self._state


def _ignore(*args: Any) -> None:
    """Do nothing (no handler set)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
