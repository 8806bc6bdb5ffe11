"""The invalidation bus: every process hears of a user's event before it is acknowledged.

Two buses in one test stand for two processes (workers or servers): each has
its own listener thread and connections, as separate processes would.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis
from prometheus_client import REGISTRY

from recsys.online import invalidation as invalidation_module
from recsys.online.invalidation import InvalidationBus
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis


def heard(bus: InvalidationBus, seconds: float = 5.0) -> InvalidationBus:
    """Wait until the bus's listener has proved itself current; return the bus."""
    deadline = time.monotonic() + seconds
    while bus.history_version(0) is None:
        assert time.monotonic() < deadline, "the listener never proved itself current"
        time.sleep(0.01)
    return bus


def unheard(bus: InvalidationBus, seconds: float = 5.0) -> None:
    """Wait until the bus no longer hands out history versions."""
    deadline = time.monotonic() + seconds
    while bus.history_version(0) is not None:
        assert time.monotonic() < deadline, "the bus kept vouching for its history versions"
        time.sleep(0.01)


@pytest.fixture
def buses(redis_url, cache_prefix):
    """Make started buses on the test's Redis prefix (or a given URL); stop them afterwards."""
    made: list[InvalidationBus] = []

    def make(url: str | None = None) -> InvalidationBus:
        bus = InvalidationBus(url or redis_url.url, cache_prefix)
        bus.start()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.stop()


def test_a_bus_vouches_for_no_history_version_until_its_listener_has_proved_itself(
    redis_url, cache_prefix
):
    bus = InvalidationBus(redis_url.url, cache_prefix)
    assert bus.history_version(7) is None
    bus.start()
    try:
        assert heard(bus).history_version(7) is not None
    finally:
        bus.stop()
    assert bus.history_version(7) is None


def test_an_announcement_changes_the_users_history_version_in_every_process_before_it_returns(
    buses,
):
    writer, reader = heard(buses()), heard(buses())
    before = {user: reader.history_version(user) for user in (7, 8)}
    assert writer.announce([7]) is True
    assert reader.history_version(7) != before[7]  # no waiting: the announcement waited for it
    assert reader.history_version(8) == before[8]  # another user's cached answers stay
    assert writer.history_version(7) != before[7]


def test_a_history_version_stays_the_same_while_nothing_is_announced(buses):
    bus = heard(buses())
    first = bus.history_version(7)
    time.sleep(3 * invalidation_module.HEARTBEAT_SECONDS)  # a few ping rounds
    assert bus.history_version(7) == first


def test_an_announcement_waits_for_a_listener_that_does_not_confirm_then_says_so(
    buses, redis_url, cache_prefix, monkeypatch, caplog
):
    monkeypatch.setattr(invalidation_module, "ACK_SECONDS", 0.3)
    writer = heard(buses())
    stalled = redis.Redis.from_url(redis_url.url).pubsub()
    stalled.subscribe(f"{cache_prefix}invalidate")  # subscribed, never confirming
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="recsys"):
            assert writer.announce([7]) is False
        assert time.monotonic() - started >= 0.3
        assert "1 of 2 processes did not confirm" in caplog.text
    finally:
        stalled.close()


def test_a_listener_cut_off_from_redis_stops_vouching_within_the_fresh_time(
    buses, redis_url, cache_prefix
):
    with TcpProxy(*redis_url.address) as proxy:
        bus = heard(buses(redis_url.through(proxy.port)))
        old = bus.history_version(7)
        proxy.blackhole()  # a network cut: nothing answers, nothing is refused
        started = time.monotonic()
        unheard(bus)
        waited = time.monotonic() - started
        assert waited < invalidation_module.FRESH_SECONDS + 0.5
        proxy.forward()
        # Back: everything cached before is dropped (announcements were missed).
        assert heard(bus, 10).history_version(7) != old


def test_an_announcement_lost_while_redis_was_unreachable_drops_everything_when_it_answers(
    buses, redis_url, cache_prefix, monkeypatch
):
    monkeypatch.setattr(invalidation_module, "REDIS_RETRY_SECONDS", 0.1)
    reader = heard(buses())
    with TcpProxy(*redis_url.address) as proxy:
        writer = heard(buses(redis_url.through(proxy.port)))
        proxy.refuse()
        assert writer.announce([7]) is False  # the event is stored; the others cannot hear
        version_of_8 = reader.history_version(8)
        proxy.forward()
        deadline = time.monotonic() + 10
        while (
            reader.history_version(8) == version_of_8
        ):  # the writer reconnects and drops everything
            assert time.monotonic() < deadline, "the lost announcement was never made good"
            time.sleep(0.02)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", json.dumps({"users": ["x"], "ack": "t"}).encode(), b"\xff\xfe"],
    ids=["text", "a list", "users not ids", "not utf-8"],
)
def test_an_announcement_that_is_not_ours_drops_every_cached_answer(
    buses, redis_url, cache_prefix, payload
):
    bus = heard(buses())
    before = bus.history_version(8)
    redis.Redis.from_url(redis_url.url).publish(f"{cache_prefix}invalidate", payload)
    deadline = time.monotonic() + 5
    while bus.history_version(8) == before:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert heard(bus).history_version(8) is not None  # and the listener goes on


def test_past_the_marked_users_bound_everything_is_dropped_and_marks_start_anew(buses, monkeypatch):
    monkeypatch.setattr(invalidation_module, "MAX_MARKED_USERS", 3)
    bus = heard(buses())
    assert bus.announce([1, 2]) is True
    untouched = bus.history_version(9)
    assert bus.announce([3, 4]) is True  # 4 marks > 3: a new epoch
    assert bus.history_version(9) != untouched
    assert len(bus._state[1]) == 2


def test_each_drop_of_every_cached_answer_is_counted_by_reason(buses, redis_url, cache_prefix):
    def dropped(reason: str) -> float:
        value = REGISTRY.get_sample_value("recsys_cache_answers_dropped_total", {"reason": reason})
        return value or 0.0

    subscribed, announced = dropped("subscribed"), dropped("announced")
    bus = heard(buses())
    assert dropped("subscribed") == subscribed + 1
    bus.announce_everything()
    assert dropped("announced") == announced + 1
