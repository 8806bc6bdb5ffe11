"""Rate limits: per key or per address, per kind of endpoint, in memory or shared in Redis."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import pytest

from recsys.config import Settings, SettingsError

KEYS = {"read": "limits-read-key-0123456789", "ingest": "limits-ingest-key-0123456789"}
API_KEYS = ",".join(f"{r}:{hashlib.sha256(k.encode()).hexdigest()}" for r, k in KEYS.items())
EVENT = {"user_id": 7, "product_id": 3, "purchased": 0}


def key(who: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[who]}


@pytest.fixture()
def limited(app_factory):
    """Make an app with keys and these limits (already initialised)."""

    def make(**settings):
        return app_factory(**{"API_KEYS": API_KEYS, **settings})

    return make


# -- in memory ---------------------------------------------------------------------------------


def test_past_the_limit_a_request_is_429_with_retry_after(limited):
    client = limited(RATE_LIMIT="2 per minute").test_client()
    assert [client.get("/popular", headers=key("read")).status_code for _ in range(2)] == [200, 200]
    response = client.get("/popular", headers=key("read"))
    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.get_json() == {
        "error": {
            "code": "rate_limited",
            "message": "too many requests: at most 2 per 1 minute per API key; "
            f"retry in {retry_after} s",
        }
    }


def test_an_answer_within_the_limit_carries_no_retry_after(limited):
    client = limited(RATE_LIMIT="2 per minute").test_client()
    assert "Retry-After" not in client.get("/popular", headers=key("read")).headers


def test_the_read_endpoints_share_one_counter_per_key(limited):
    client = limited(RATE_LIMIT="2 per minute").test_client()
    assert client.get("/recommend?user_id=1", headers=key("read")).status_code == 200
    assert client.get("/popular", headers=key("read")).status_code == 200
    assert client.get("/recommend?user_id=2", headers=key("read")).status_code == 429


def test_each_key_has_its_own_counter(limited):
    other = "another-read-key-0123456789"
    app = limited(
        RATE_LIMIT="1 per minute",
        API_KEYS=f"{API_KEYS},read:{hashlib.sha256(other.encode()).hexdigest()}",
    )
    client = app.test_client()
    assert client.get("/popular", headers=key("read")).status_code == 200
    assert client.get("/popular", headers=key("read")).status_code == 429
    assert client.get("/popular", headers={"X-API-Key": other}).status_code == 200


def test_ingest_has_its_own_limit(limited):
    client = limited(RATE_LIMIT="1 per minute", RATE_LIMIT_INGEST="2 per minute").test_client()
    assert client.get("/popular", headers=key("read")).status_code == 200
    statuses = [
        client.post("/interactions", json=EVENT, headers=key("ingest")).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_an_open_service_limits_each_client_address(app_factory):
    client = app_factory(RATE_LIMIT_ADDRESS="1 per minute").test_client()

    def get(address: str) -> int:
        return client.get("/popular", environ_base={"REMOTE_ADDR": address}).status_code

    assert [get("10.0.0.1"), get("10.0.0.1"), get("10.0.0.2")] == [200, 429, 200]
    response = client.get("/popular", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert "per client address" in response.get_json()["error"]["message"]


def status_through_proxy(client, forwarded_for: str) -> int:
    """GET /popular as a proxy at 10.0.0.9 forwards it, with its X-Forwarded-For."""
    headers = {"X-Forwarded-For": forwarded_for}
    return client.get(
        "/popular", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    ).status_code


@pytest.mark.parametrize(
    ("proxies", "statuses"),
    [
        # Two browsers behind one proxy: one client each when the proxy is trusted.
        (1, [200, 429, 200]),
        # The header is anyone's to write when nothing in front sets it: one client.
        (0, [200, 429, 429]),
    ],
)
def test_behind_a_trusted_proxy_each_forwarded_client_address_is_limited_alone(
    app_factory, proxies, statuses
):
    client = app_factory(
        RATE_LIMIT_ADDRESS="1 per minute", TRUSTED_PROXIES=str(proxies)
    ).test_client()
    browsers = ["198.51.100.1", "198.51.100.1", "198.51.100.2"]
    assert [status_through_proxy(client, browser) for browser in browsers] == statuses


def test_a_client_cannot_pass_for_another_by_writing_x_forwarded_for_itself(app_factory):
    # nginx appends the address it saw: the trusted value is the last one.
    client = app_factory(RATE_LIMIT_ADDRESS="1 per minute", TRUSTED_PROXIES="1").test_client()
    assert status_through_proxy(client, "198.51.100.7") == 200
    assert status_through_proxy(client, "203.0.113.5, 198.51.100.7") == 429


def test_a_key_of_its_own_rate_is_limited_by_it_not_by_its_roles_default(limited):
    fast = "fast-read-key-0123456789"
    entry = f"read:{hashlib.sha256(fast.encode()).hexdigest()}:3 per minute"
    client = limited(RATE_LIMIT="1 per minute", API_KEYS=f"{API_KEYS},{entry}").test_client()
    statuses = [client.get("/popular", headers={"X-API-Key": fast}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert [client.get("/popular", headers=key("read")).status_code for _ in range(2)] == [200, 429]


def test_requests_without_a_key_have_a_default_of_their_own(app_factory):
    # A browser-facing (open) service: the per-address limit, not the per-key one.
    client = app_factory(RATE_LIMIT="1 per minute", RATE_LIMIT_ADDRESS="2 per minute").test_client()
    statuses = [client.get("/popular").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


# Requests an API key check refuses (401), each as a guesser would send it.
REFUSED_REQUESTS = {
    "no key": ("GET", "/popular", {}),
    "a wrong key": ("GET", "/popular", {"X-API-Key": "a-guessed-key"}),
    "a wrong key posting events": ("POST", "/interactions", {"X-API-Key": "a-guessed-key"}),
}


@pytest.mark.parametrize(
    ("method", "path", "headers"), REFUSED_REQUESTS.values(), ids=list(REFUSED_REQUESTS)
)
def test_requests_refused_for_their_key_count_against_the_address_and_then_get_429(
    limited, method, path, headers
):
    client = limited(RATE_LIMIT_ADDRESS="2 per minute").test_client()

    def send(address: str):
        return client.open(
            path, method=method, json=EVENT, headers=headers, environ_base={"REMOTE_ADDR": address}
        )

    assert [send("10.0.0.1").status_code for _ in range(3)] == [401, 401, 429]
    refused = send("10.0.0.1")
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert "per client address" in refused.get_json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert send("10.0.0.2").status_code == 401  # another address has its own count


def test_refused_guesses_from_an_address_do_not_hold_up_a_right_key_from_it(limited):
    client = limited(RATE_LIMIT_ADDRESS="1 per minute").test_client()
    guessed = {"X-API-Key": "a-guessed-key"}
    assert [client.get("/popular", headers=guessed).status_code for _ in range(2)] == [401, 429]
    assert client.get("/popular", headers=key("read")).status_code == 200
    # A key let in but without the role is no guess: 403, never counted as one.
    assert client.post("/interactions", json=EVENT, headers=key("read")).status_code == 403


def test_refused_requests_are_not_counted_when_the_address_has_no_limit(limited):
    client = limited(RATE_LIMIT_ADDRESS="").test_client()
    assert {client.get("/popular").status_code for _ in range(20)} == {401}


@pytest.mark.parametrize(
    ("limits", "statuses", "named"),
    [
        ("5 per minute;1 per second", [200, 429], "1 per 1 second"),
        ("1 per second;2 per minute", [200, 429], "1 per 1 second"),
        ("10 per second;1 per minute", [200, 429], "1 per 1 minute"),
    ],
)
def test_every_limit_of_a_list_counts_and_the_429_names_the_one_passed(
    limited, limits, statuses, named
):
    client = limited(RATE_LIMIT=limits).test_client()
    answers = [client.get("/popular", headers=key("read")) for _ in statuses]
    assert [answer.status_code for answer in answers] == statuses
    assert f"at most {named} per API key" in answers[-1].get_json()["error"]["message"]


def test_threads_counting_at_once_never_let_more_through_than_the_limit(limited):
    app = limited(RATE_LIMIT="100 per minute")
    statuses: list[int] = []

    def send() -> None:
        client = app.test_client()
        found = [client.get("/popular", headers=key("read")).status_code for _ in range(40)]
        statuses.extend(found)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 320 and set(statuses) == {200, 429}
    # (Two counts at the very limit may both read the later total: fewer, never more.)
    assert 90 <= statuses.count(200) <= 100


def test_requests_no_route_answers_are_not_counted(app_factory):
    client = app_factory(RATE_LIMIT_ADDRESS="1 per minute").test_client()
    assert {client.get("/no-such-page").status_code for _ in range(3)} == {404}
    assert client.post("/popular").status_code == 405
    assert [client.get("/popular").status_code for _ in range(2)] == [200, 429]


def test_the_health_probes_are_never_limited(limited):
    client = limited(RATE_LIMIT="1 per minute").test_client()
    assert {client.get(path).status_code for path in ["/healthz", "/readyz"] * 5} == {200}


def test_a_counter_starts_again_once_its_window_is_over(limited):
    client = limited(RATE_LIMIT="1 per second").test_client()
    statuses = [client.get("/popular", headers=key("read")).status_code for _ in range(2)]
    time.sleep(1.1)
    statuses.append(client.get("/popular", headers=key("read")).status_code)
    assert statuses == [200, 429, 200]


def test_counting_in_memory_starts_no_thread_per_request(limited, monkeypatch):
    # limits' own memory storage starts a timer thread 10 ms after the last one.
    client = limited(RATE_LIMIT="100 per minute").test_client()
    client.get("/popular", headers=key("read"))
    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda t: (started.append(t), start(t)))
    for _ in range(5):
        time.sleep(0.02)
        assert client.get("/popular", headers=key("read")).status_code == 200
    assert len(started) <= 1


def test_an_empty_limit_means_none(limited):
    client = limited(RATE_LIMIT="", RATE_LIMIT_INGEST="").test_client()
    assert {client.get("/popular", headers=key("read")).status_code for _ in range(60)} == {200}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT", "fast"),
        ("RATE_LIMIT", "50"),
        ("RATE_LIMIT", "0 per second"),
        ("RATE_LIMIT_INGEST", "10 per fortnight"),
        ("RATE_LIMIT_ADDRESS", "-5 per second"),
    ],
)
def test_a_bad_limit_is_one_line_naming_the_variable(tmp_path, name, value):
    with pytest.raises(SettingsError, match=rf"^RECSYS_{name}: expected a limit such as"):
        Settings.load({f"RECSYS_{name}": value}, None, tmp_path)


def test_limits_and_redis_have_defaults_and_read_the_unprefixed_redis_url(tmp_path):
    defaults = Settings.load({}, None, tmp_path)
    security = defaults.security
    assert (security.rate_limit, security.rate_limit_ingest, security.rate_limit_address) == (
        "1000 per second",
        "200 per second",
        "50 per second",
    )
    assert defaults.redis.url is None
    hosted = Settings.load({"REDIS_URL": "redis://cache:6379/2"}, None, tmp_path)
    assert hosted.redis.url == "redis://cache:6379/2"


def test_a_bad_redis_url_is_refused_without_showing_it(tmp_path):
    with pytest.raises(SettingsError) as raised:
        Settings.load({"RECSYS_REDIS_URL": "http://user:s3cret@cache"}, None, tmp_path)
    assert str(raised.value).startswith("RECSYS_REDIS_URL: expected redis://")
    assert "s3cret" not in str(raised.value)


# -- in Redis ----------------------------------------------------------------------------------


@pytest.mark.redis
def test_two_apps_on_one_redis_share_the_counters(limited, redis_url):
    settings = {
        "RATE_LIMIT": "3 per minute",
        "REDIS_URL": redis_url.url,
        "RATELIMIT_KEY_PREFIX": redis_url.prefix,
    }
    first, second = limited(**settings).test_client(), limited(**settings).test_client()
    assert first.get("/popular", headers=key("read")).status_code == 200
    assert second.get("/popular", headers=key("read")).status_code == 200
    assert first.get("/popular", headers=key("read")).status_code == 200
    response = second.get("/popular", headers=key("read"))
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.mark.redis
def test_redis_counters_are_named_by_digest_prefix_never_by_key(limited, redis_url):
    app = limited(
        RATE_LIMIT="5 per minute", REDIS_URL=redis_url.url, RATELIMIT_KEY_PREFIX=redis_url.prefix
    )
    client = app.test_client()
    assert client.get("/popular", headers=key("read")).status_code == 200
    digest = hashlib.sha256(KEYS["read"].encode()).hexdigest()
    stored = redis_url.keys()
    assert len(stored) == 1
    assert f"key-{digest[:16]}" in stored[0] and "/read/" in stored[0]
    assert KEYS["read"] not in stored[0] and digest not in stored[0]


@pytest.mark.slow
@pytest.mark.redis
def test_a_redis_outage_falls_back_to_memory_and_recovers(limited, own_redis, caplog):
    client = limited(RATE_LIMIT="3 per minute", REDIS_URL=own_redis.url).test_client()

    def popular() -> int:
        return client.get("/popular", headers=key("read")).status_code

    assert popular() == 200
    assert own_redis.client().dbsize() == 1  # counted in Redis

    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="recsys.web.limits"):
        # Still limited, now in memory (which starts counting afresh): never a 500.
        assert [popular() for _ in range(4)] == [200, 200, 200, 429]
    # One warning for the outage, not one per request.
    assert len([r for r in caplog.records if "counting in memory" in r.getMessage()]) == 1

    own_redis.start()  # the same port, empty
    deadline = time.monotonic() + 15
    while own_redis.client().dbsize() == 0:
        # Redis is tried again a moment after its last failure (REDIS_RETRY_SECONDS).
        assert popular() in (200, 429)
        assert time.monotonic() < deadline, "the limiter did not return to Redis within 15 s"
        time.sleep(0.25)


@pytest.mark.redis
def test_a_redis_that_never_answered_still_lets_requests_through(limited, own_redis):
    own_redis.stop()
    client = limited(RATE_LIMIT="2 per minute", REDIS_URL=own_redis.url).test_client()
    statuses = [client.get("/popular", headers=key("read")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
