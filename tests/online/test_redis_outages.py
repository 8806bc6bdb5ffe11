"""Redis refused, silent, or gone and back: every endpoint that uses it answers, and soon.

The app reaches the test's Redis through a ``TcpProxy`` (tests/tcp_proxy.py)
that a test switches to refusing connections or swallowing them. Every
endpoint that uses Redis is asked in turn: ``/recommend`` (a first answer, a
cached one, one with exclusions, users of both arms of a running A/B test), ``POST
/interactions`` (its history invalidation and its announcement), ``/similar``
and the experiments' endpoints, each counted by the rate limiter in Redis.
Each must answer as it does with Redis up, in JSON, without waiting for Redis
longer than the Redis timeout (once: the rate limiter, the history cache and
the announcements share one outage).
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from recsys.config import Settings, SettingsError
from recsys.online import history_cache as cache_module
from tests.builders import POPULAR_VS_CHAMPION, listed, runtime_of
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

# RECSYS_REDIS_TIMEOUT_SECONDS of these tests.
REDIS_TIMEOUT = 0.3
# The longest a request may take while Redis fails: one wait for Redis, and
# the answer itself.
WITHIN = REDIS_TIMEOUT + 0.5
PURCHASE = {"user_id": 17, "product_id": 3, "purchased": 1}

# (what is asked, method, path, body, the status it answers with Redis up or not)
REQUESTS = [
    ("a first answer", "GET", "/recommend?user_id=17&n=3", None, 200),
    ("a cached answer", "GET", "/recommend?user_id=17&n=3", None, 200),
    ("an answer with exclusions", "GET", "/recommend?user_id=17&exclude=1,2", None, 200),
    ("a user of the other arm", "GET", "/recommend?user_id=18", None, 200),
    ("a purchase", "POST", "/interactions", PURCHASE, 201),
    ("an answer after it", "GET", "/recommend?user_id=17&n=3", None, 200),
    ("similar products", "GET", "/similar?product_id=3", None, 200),
    ("the experiments", "GET", "/experiments", None, 200),
    ("the running one's report", "GET", "/experiments/pop-vs-svd/report", None, 200),
    ("a history", "GET", "/users/17/history", None, 200),
]


def ask_everything(client) -> list[tuple[str, int, bool]]:
    """Ask every request of REQUESTS; return (what, status, JSON and in time) for each."""
    answers = []
    for what, method, path, body, _ in REQUESTS:
        started = time.monotonic()
        response = client.open(path, method=method, json=body)
        seconds = time.monotonic() - started
        answers.append((what, response.status_code, response.is_json and seconds < WITHIN))
    return answers


EXPECTED = [(what, status, True) for what, *_, status in REQUESTS]


@pytest.fixture
def proxy(redis_url):
    """Yield a forwarding TcpProxy in front of the test's Redis."""
    host, port = redis_url.url.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as running:
        yield running


@pytest.fixture
def make_client(app_factory, proxy, redis_url, cache_prefix, monkeypatch):
    """Return a function making a client of an app that reaches Redis through the proxy.

    The app counts rate limits in Redis, caches histories there, hears
    announcements, and runs an A/B test; Redis is tried again 0.2 s after a failure.
    """
    monkeypatch.setattr(cache_module, "REDIS_RETRY_SECONDS", 0.2)

    def make():
        app = app_factory(
            REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
            REDIS_TIMEOUT_SECONDS=REDIS_TIMEOUT,
            CACHE_KEY_PREFIX=cache_prefix,
            RATELIMIT_KEY_PREFIX=redis_url.prefix,
            RATE_LIMIT="1000 per second",
            RATE_LIMIT_INGEST="1000 per second",
            RATE_LIMIT_ADDRESS="1000 per second",
        )
        runtime_of(app).start()
        client = app.test_client()
        assert client.post("/experiments", json=POPULAR_VS_CHAMPION).status_code == 201
        assert client.post("/experiments/pop-vs-svd/start").status_code == 200
        return client

    return make


@pytest.mark.parametrize("outage", ["refuse", "blackhole"], ids=["refused", "blackholed"])
def test_every_endpoint_answers_in_time_when_redis_fails_from_the_start(make_client, proxy, outage):
    getattr(proxy, outage)()
    client = make_client()
    assert ask_everything(client) == EXPECTED
    # The purchase made while Redis failed is left out at once.
    assert PURCHASE["product_id"] not in listed(client.get("/recommend?user_id=17"))


@pytest.mark.parametrize("outage", ["refuse", "blackhole"], ids=["refused", "blackholed"])
def test_every_endpoint_answers_in_time_when_redis_fails_mid_run_and_comes_back(
    make_client, proxy, redis_url, outage
):
    client = make_client()
    assert ask_everything(client) == EXPECTED
    getattr(proxy, outage)()
    assert ask_everything(client) == EXPECTED
    proxy.forward()
    assert ask_everything(client) == EXPECTED
    # Redis is used again: a user's first answer caches the history read for it.
    # (A connection opened before the outage fails once more, which leaves
    # Redis alone for another retry interval.)
    deadline = time.monotonic() + 5
    for user_id in itertools.count(100):
        assert client.get(f"/recommend?user_id={user_id}").status_code == 200
        stored = redis_url.keys()
        if any(key.endswith(f"history:user:{user_id}") for key in stored):
            break
        assert time.monotonic() < deadline, "histories were not cached again within 5 s"
        time.sleep(0.1)


def test_connections_opened_before_an_outage_are_opened_anew_once_redis_answers(
    make_client, proxy, redis_url
):
    client = make_client()
    assert ask_everything(client) == EXPECTED  # every user of Redis has a connection open
    proxy.refuse()  # closes them all, as a Redis restart does
    assert client.get("/recommend?user_id=100").status_code == 200
    proxy.forward()
    time.sleep(0.3)  # past the retry interval
    # The first request after it reaches Redis: no connection of before fails again.
    assert client.post("/interactions", json={**PURCHASE, "user_id": 101}).status_code == 201
    assert client.get("/recommend?user_id=102").status_code == 200
    stored = redis_url.keys()
    assert any(key.endswith("history:user:102") for key in stored)


def test_a_thread_meeting_redis_first_during_an_outage_answers_from_the_store(make_client, proxy):
    client = make_client()
    proxy.refuse()
    # Threaded servers give each request thread its own Redis client, made
    # (and connected) at the thread's first use: a new thread, during the outage.
    answers: list[int] = []
    worker = threading.Thread(
        target=lambda: answers.append(client.get("/recommend?user_id=21").status_code)
    )
    worker.start()
    worker.join(timeout=10)
    assert answers == [200]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0.25),
        ("1.5", 1.5),
        (0.1, 0.1),
    ],
)
def test_the_redis_timeout_has_a_default_and_takes_seconds(tmp_path, value, expected):
    config = {} if value is None else {"REDIS_TIMEOUT_SECONDS": value}
    assert Settings.load({}, config, tmp_path).redis.timeout_seconds == expected


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_redis_timeout_that_is_not_a_positive_number_is_refused(tmp_path, value):
    with pytest.raises(SettingsError) as raised:
        Settings.load({"RECSYS_REDIS_TIMEOUT_SECONDS": value}, None, tmp_path)
    assert str(raised.value) == (
        f"RECSYS_REDIS_TIMEOUT_SECONDS: expected a number > 0 and at most 1000000, got '{value}'"
    )
