"""Fault injection: real gunicorn servers whose Redis refuses connections or never answers.

Each test starts the service as production does (``tests.servers.Gunicorn``:
gthread workers, the app preloaded) with Redis behind a ``TcpProxy``
(tests/tcp_proxy.py) that refuses or swallows connections from the start,
and with everything that uses Redis switched on: rate limits counted there,
histories cached there, announcements of new events, an A/B test. Every
endpoint that uses Redis is asked, one request at a time and many at once
(each worker thread makes its own Redis client at its first request): none
may answer 5xx or anything but JSON, or wait for Redis longer than its
timeout, once for the rate limiter and once for the history cache and the
announcements. Measured times are recorded as test properties.
"""

from __future__ import annotations

import pytest

from tests.builders import POPULAR_VS_CHAMPION
from tests.servers import Servers
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.redis]

# RECSYS_REDIS_TIMEOUT_SECONDS of these tests.
REDIS_TIMEOUT = 0.5
# The longest an answer may take while Redis fails: the rate limiter's wait,
# the history cache's (or the announcement's), and a margin for the answer
# itself on a busy test host.
WITHIN = 2 * REDIS_TIMEOUT + 1.0

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


@pytest.fixture
def proxy(redis_url):
    """Yield a forwarding TcpProxy in front of the test's Redis."""
    host, port = redis_url.url.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as running:
        yield running


@pytest.fixture
def serve(tmp_path):
    """Return a function that starts gunicorn; every server is killed after."""
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
    )
    server.wait_ready()
    assert server.request("POST", "/experiments", POPULAR_VS_CHAMPION).status == 201
    assert server.request("POST", "/experiments/pop-vs-svd/start").status == 200
    asked = [(method, path, body) for method, path, body, _ in REQUESTS]
    one_at_a_time = [server.request(*request) for request in asked * 2]
    at_once = server.requests_at_once(asked * 2)
    answers = one_at_a_time + at_once
    slowest = max(answer.seconds for answer in answers)
    record_property("slowest_answer_seconds", round(slowest, 3))
    expected = [status for *_, status in REQUESTS] * 4
    assert [answer.status for answer in answers] == expected, server.log()[-4000:]
    assert all(answer.body is not None for answer in answers)  # every one JSON
    assert slowest < WITHIN
    assert "Traceback" not in server.log()
