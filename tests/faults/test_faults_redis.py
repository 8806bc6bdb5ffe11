"""Fault injection: real servers whose Redis refuses connections or never answers.

Each test starts the service as production does (``tests.servers.Production``:
granian's workers, the app preloaded) with Redis behind a ``TcpProxy``
(tests/tcp_proxy.py) that refuses or swallows connections from the start,
and with everything that uses Redis switched on: rate limits counted there,
histories cached there, announcements of new events, an A/B test. Every
endpoint that uses Redis is asked, one request at a time and many at once
(each worker thread makes its own Redis client at its first request): none
may answer 5xx or anything but JSON, or wait for Redis longer than its
timeout (once: the rate limiter, the history cache and the announcements
share one outage). Measured times are recorded as test properties.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.builders import POPULAR_VS_CHAMPION
from tests.servers import Answer, Production, Servers
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.redis]

# RECSYS_REDIS_TIMEOUT_SECONDS of these tests.
REDIS_TIMEOUT = 0.5
# The longest an answer may take while Redis fails: one wait for Redis (the
# rate limiter, the history cache and the announcements share one outage),
# and a margin for the answer itself on a busy test host.
WITHIN = REDIS_TIMEOUT + 1.0

PURCHASE = {"user_id": 17, "product_id": 3, "purchased": 1}
# (method, path, body, the status it answers with Redis up or not)
REQUESTS = [
    ("GET", "/recommend?user_id=17", None, 200),
    ("GET", "/recommend?user_id=17", None, 200),
    ("GET", "/recommend?user_id=18&exclude=1,2", None, 200),
    ("POST", "/interactions", PURCHASE, 201),
    ("GET", "/recommend?user_id=17&n=3", None, 200),
    ("GET", "/similar?product_id=3", None, 200),
    ("GET", "/experiments", None, 200),
    ("GET", "/experiments/pop-vs-svd/report", None, 200),
    ("GET", "/users/17/history", None, 200),
]


def start_experiment(server: Production) -> None:
    """Define and start the A/B test of the popularity list against the live model."""
    assert server.request("POST", "/experiments", POPULAR_VS_CHAMPION).status == 201
    assert server.request("POST", "/experiments/pop-vs-svd/start").status == 200


@pytest.fixture
def proxy(redis_url):
    """Yield a forwarding TcpProxy in front of the test's Redis."""
    host, port = redis_url.url.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as running:
        yield running


@pytest.fixture
def serve(tmp_path):
    """Return a function that starts the production server; every server is killed after."""
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()


@pytest.mark.parametrize("outage", ["refuse", "blackhole"], ids=["refused", "blackholed"])
def test_every_endpoint_answers_json_in_time_when_redis_fails_from_the_start(
    outage, proxy, serve, sqlite_url, cache_prefix, record_property
):
    getattr(proxy, outage)()
    server = serve(
        sqlite_url,
        REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
        REDIS_TIMEOUT_SECONDS=REDIS_TIMEOUT,
        CACHE_KEY_PREFIX=cache_prefix,
        RATE_LIMIT="1000 per second",
        RATE_LIMIT_INGEST="1000 per second",
        RATE_LIMIT_ADDRESS="1000 per second",
    )
    server.wait_ready()
    start_experiment(server)
    asked = [(method, path, body) for method, path, body, _ in REQUESTS]
    answers: list[Answer] = []
    rounds = 0
    # Past the time Redis is left alone after a failure (2 s), twice: the
    # requests that try it again wait for it too.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answers += [server.request(*request) for request in asked]
        answers += server.requests_at_once(asked)
        rounds += 1
    slowest = max(answer.seconds for answer in answers)
    record_property("slowest_answer_seconds", round(slowest, 3))
    expected = [status for *_, status in REQUESTS] * 2 * rounds
    assert [answer.status for answer in answers] == expected, server.log()[-4000:]
    assert all(answer.body is not None for answer in answers)  # every one JSON
    assert slowest < WITHIN
    assert "Traceback" not in server.log()


def test_every_endpoint_answers_in_time_while_redis_goes_silent_and_after_it_returns(
    proxy, serve, sqlite_url, redis_url, cache_prefix, record_property
):
    server = serve(
        sqlite_url,
        REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
        REDIS_TIMEOUT_SECONDS=REDIS_TIMEOUT,
        CACHE_KEY_PREFIX=cache_prefix,
        RATE_LIMIT="1000 per second",
        RATE_LIMIT_INGEST="1000 per second",
        RATE_LIMIT_ADDRESS="1000 per second",
    )
    server.wait_ready()
    start_experiment(server)
    asked = [(method, path, body) for method, path, body, _ in REQUESTS]
    expected = [status for *_, status in REQUESTS] * 2
    # Every thread that answers has its Redis connections open before the outage.
    assert [a.status for a in server.requests_at_once(asked * 2)] == expected
    proxy.blackhole()
    during = server.requests_at_once(asked * 2)
    proxy.forward()
    after = server.requests_at_once(asked * 2)
    record_property("slowest_answer_seconds", round(max(a.seconds for a in during), 3))
    assert [a.status for a in during + after] == expected * 2, server.log()[-4000:]
    assert all(answer.body is not None for answer in during + after)
    assert max(answer.seconds for answer in during + after) < WITHIN
    # Histories are cached in Redis again: a new user's first answer caches one.
    new_users = itertools.count(100)

    def caches_a_new_history() -> bool:
        user_id = next(new_users)
        assert server.get(f"/recommend?user_id={user_id}").status == 200
        stored = redis_url.keys()
        return any(key.endswith(f"history:user:{user_id}") for key in stored)

    seconds = server.wait_until(caches_a_new_history, within=10, what="caching histories again")
    record_property("seconds_to_cache_again", round(seconds, 2))
