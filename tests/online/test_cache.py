"""The answer cache: same answers as without it, purchases left out at once, Redis outages.

Rankings are cached in each process per model version; histories only in
Redis, which every app of a test shares under the test's own key prefix.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
import redis
from prometheus_client import REGISTRY

from app import create_app
from recsys.online import answer_cache as answer_cache_module
from recsys.online import history_cache as cache_module
from recsys.online.history_cache import HistoryCache
from recsys.online.service import ListFilter, RecommendRequest
from recsys.store.events import UserHistory
from recsys.web import query_params
from recsys.web.recommend import MEMO_KEY, QueryMemo
from tests.builders import buy, listed, runtime_of, uncached_list, wait_for_announcements


def lookups(cache: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "recsys_cache_lookups_total", {"cache": cache, "result": result}
    )
    return value or 0.0


@pytest.fixture
def heard_app(redis_apps):
    """Return an app over the test's Redis whose listener already vouches for cached answers."""
    app = redis_apps()
    wait_for_announcements(app)
    return app


def unheard(app):
    """Return the app with its invalidation listener stopped: every answer reads the history.

    (As when Redis stops answering the listener; what the Redis history cache
    tests need, whatever the moment the listener would have proved itself.)
    """
    runtime_of(app).start()
    runtime_of(app).service.cache.stop()
    return app


def forbid_history_reads(monkeypatch, app, why: str) -> None:
    """Make every read of a user's history, from Redis or the store, fail the test."""
    service = runtime_of(app).service

    def no_history_read(user_id):
        raise AssertionError(why)

    monkeypatch.setattr(service.cache.histories, "lookup", no_history_read)
    monkeypatch.setattr(service.store, "user_history", no_history_read)
    monkeypatch.setattr(service.store, "user_history_rows", no_history_read)


@pytest.fixture
def redis_apps(app_factory, redis_url, cache_prefix):
    """Make apps over one store, one artifact directory and one Redis key prefix."""

    def make(**overrides):
        return app_factory(REDIS_URL=redis_url.url, CACHE_KEY_PREFIX=cache_prefix, **overrides)

    return make


# -- without Redis: rankings cached, histories read from the store ---------------------


def test_without_redis_an_event_stored_through_another_app_makes_a_cached_answer_stale(
    any_app_factory,
):
    client = any_app_factory().test_client()
    other = any_app_factory(init=False).test_client()
    first = listed(client.get("/recommend?user_id=17&n=3"))
    assert listed(client.get("/recommend?user_id=17&n=3")) == first  # cached
    buy(other, 17, first[0])  # another worker: nothing tells this one
    hits = lookups("answer", "hit")
    assert first[0] not in listed(client.get("/recommend?user_id=17&n=3"))
    assert lookups("answer", "hit") == hits


def test_without_redis_a_cached_answer_found_in_unchanged_rows_counts_them_no_more(
    client, monkeypatch
):
    first = client.get("/recommend?user_id=17").get_data()
    counted = []
    count_events = UserHistory.of_events

    def counting(cls, rows):
        counted.append(rows)
        return count_events(rows)

    monkeypatch.setattr(UserHistory, "of_events", classmethod(counting))
    hits = lookups("answer", "hit")
    assert client.get("/recommend?user_id=17").get_data() == first
    assert lookups("answer", "hit") == hits + 1 and counted == []


def test_cached_answers_equal_uncached_ones_for_every_user_and_length(app_factory):
    uncached = app_factory(CACHE="0").test_client()
    cached = app_factory(init=False).test_client()
    for user in [*range(1, 101), 501, 10**12]:
        for n in (1, 5, 20, 100):
            path = f"/recommend?user_id={user}&n={n}"
            expected = uncached.get(path).get_json()
            assert cached.get(path).get_json() == expected  # a miss
            assert cached.get(path).get_json() == expected  # a hit
    assert cached.get("/popular?n=7").get_json() == uncached.get("/popular?n=7").get_json()


def test_the_first_request_of_a_user_misses_the_ranking_cache_and_the_next_hits(client):
    misses, hits = lookups("ranking", "miss"), lookups("ranking", "hit")
    client.get("/recommend?user_id=17")
    assert (lookups("ranking", "miss"), lookups("ranking", "hit")) == (misses + 1, hits)
    client.get("/recommend?user_id=17&n=3")
    assert (lookups("ranking", "miss"), lookups("ranking", "hit")) == (misses + 1, hits + 1)


def test_a_repeated_request_is_answered_from_its_cached_answer_until_the_history_changes(client):
    first = client.get("/recommend?user_id=17&n=3").get_data()
    hits, misses = lookups("answer", "hit"), lookups("answer", "miss")
    assert client.get("/recommend?user_id=17&n=3").get_data() == first
    assert (lookups("answer", "hit"), lookups("answer", "miss")) == (hits + 1, misses)
    buy(client, 17, listed(client.get("/recommend?user_id=17&n=3"))[0])
    hits = lookups("answer", "hit")
    after = client.get("/recommend?user_id=17&n=3").get_data()
    assert after != first and lookups("answer", "hit") == hits  # a new history: made anew


def test_an_answer_to_the_same_exclusion_list_in_another_order_is_found_again(client):
    first = client.get("/recommend?user_id=17&exclude=3,5,8").get_json()
    hits = lookups("answer", "hit")
    again = client.get("/recommend?user_id=17&exclude=8,3,5").get_json()
    assert lookups("answer", "hit") == hits + 1
    assert again == first


def test_answers_to_different_exclusion_lists_are_kept_apart(client):
    top = listed(client.get("/recommend?user_id=17&n=3"))
    without_first = listed(client.get(f"/recommend?user_id=17&n=3&exclude={top[0]}"))
    without_second = listed(client.get(f"/recommend?user_id=17&n=3&exclude={top[1]}"))
    assert without_first[:2] == top[1:]
    assert without_second[:2] == [top[0], top[2]]
    ranking_hits = lookups("ranking", "hit")
    client.get(f"/recommend?user_id=17&n=3&exclude={top[2]}")
    assert lookups("ranking", "hit") == ranking_hits + 1  # a new list: from the candidates


def test_answers_to_ever_new_exclusion_lists_never_push_out_the_cached_plain_answers(app_factory):
    client = app_factory(CACHE_MAX_ENTRIES="2").test_client()
    client.get("/recommend?user_id=17")
    client.get("/recommend?user_id=18")
    for excluded in range(1, 8):  # a basket that changes on every request
        client.get(f"/recommend?user_id=17&exclude={excluded}")
    hits = lookups("answer", "hit")
    client.get("/recommend?user_id=17")
    client.get("/recommend?user_id=18")
    assert lookups("answer", "hit") == hits + 2


def test_a_periodic_catalog_refresh_without_changes_keeps_the_cached_answers(app):
    client = app.test_client()
    client.get("/recommend?user_id=17")
    live = runtime_of(app).service.live.current()
    runtime_of(app).service.refresh_names()  # what the refresh thread does every few seconds
    assert runtime_of(app).service.live.current() is live
    hits = lookups("answer", "hit")
    client.get("/recommend?user_id=17")
    assert lookups("answer", "hit") == hits + 1


def test_a_purchase_is_left_out_at_once_when_the_ranking_is_cached(client):
    before = listed(client.get("/recommend?user_id=17&n=3"))
    buy(client, 17, before[0])
    after = listed(client.get("/recommend?user_id=17&n=3"))
    assert before[0] not in after
    assert after == uncached_list(client.application, 17, 3)


def test_purchases_beyond_the_cached_candidates_still_leave_a_full_answer(client, monkeypatch):
    # Few spare candidates: buying them all forces the uncached path.
    monkeypatch.setattr("recsys.online.answer_cache.CANDIDATES", 3)
    before = listed(client.get("/recommend?user_id=17&n=3"))
    for product in before:
        buy(client, 17, product)
    after = listed(client.get("/recommend?user_id=17&n=3"))
    assert len(after) == 3 and not set(after) & set(before)


def test_a_new_model_version_is_never_answered_from_the_old_versions_entries(app_factory):
    app = app_factory()
    client = app.test_client()
    before = client.get("/recommend?user_id=501").get_json()
    assert before["fallback_reason"] == "unknown_user"
    events = [{"user_id": 501, "product_id": p, "purchased": 0} for p in (2, 7, 7, 13)]
    assert client.post("/interactions", json=events).status_code == 201
    runtime = runtime_of(app)
    published = runtime.train_exclusively()
    assert runtime.refresh()

    after = client.get("/recommend?user_id=501").get_json()
    assert after["model_version"] == published.version != before["model_version"]
    assert after["strategy"] == "svd"
    uncached = app_factory(CACHE="0", init=False).test_client()
    assert after == uncached.get("/recommend?user_id=501").get_json()


# -- with Redis: histories cached where every worker and server sees them -------------


@pytest.mark.redis
def test_a_users_history_comes_from_redis_after_the_first_request(redis_apps, monkeypatch):
    app = unheard(redis_apps())
    client = app.test_client()
    first = client.get("/recommend?user_id=17&n=5").get_json()

    def no_store_read(user_id):
        raise AssertionError("the history should have come from Redis")

    monkeypatch.setattr(runtime_of(app).store, "user_history", no_store_read)
    monkeypatch.setattr(runtime_of(app).store, "user_history_rows", no_store_read)
    hits = lookups("history", "hit")
    # Another length: not a cached answer, so the history is read (from Redis).
    again = client.get("/recommend?user_id=17&n=4").get_json()
    assert again["recommendations"] == first["recommendations"][:4]
    assert lookups("history", "hit") == hits + 1


@pytest.mark.redis
def test_a_cached_answer_is_served_without_reading_the_history_while_announcements_are_heard(
    heard_app, monkeypatch
):
    app = heard_app
    client = app.test_client()
    first = client.get("/recommend?user_id=17").get_data()
    forbid_history_reads(monkeypatch, app, "a cached answer should need no history")
    assert client.get("/recommend?user_id=17").get_data() == first


@pytest.mark.redis
def test_a_history_read_once_serves_the_users_other_requests_until_their_next_event(
    heard_app, monkeypatch
):
    app = heard_app
    client = app.test_client()
    first = listed(client.get("/recommend?user_id=17&n=5"))
    with monkeypatch.context() as patched:
        forbid_history_reads(patched, app, "the history kept in the process should have served")
        assert listed(client.get(f"/recommend?user_id=17&n=4&exclude={first[4]}")) == first[:4]
    buy(client, 17, first[0])
    after = listed(client.get("/recommend?user_id=17&n=3"))
    assert first[0] not in after and after == uncached_list(app, 17, 3)


@pytest.mark.redis
def test_a_repeated_query_string_finds_its_cached_answer_without_parsing_it_again(
    heard_app, monkeypatch
):
    app = heard_app
    client = app.test_client()
    path = "/recommend?user_id=17&n=3&category=Home&category=Sports&exclude=2,9"
    first = client.get(path).get_data()
    with monkeypatch.context() as patched:

        def no_parsing(*args, **kwargs):
            raise AssertionError("a repeated query string should not be parsed again")

        patched.setattr(query_params, "product_id_list", no_parsing)
        patched.setattr(query_params, "categories", no_parsing)
        assert client.get(path).get_data() == first
    bought = listed(client.get(path))[0]
    buy(client, 17, bought)
    assert bought not in listed(client.get(path))  # the same string, a new answer


def counted_lookups(monkeypatch, app) -> list[str]:
    """Record the pipeline of every lookup of the app's cache layer, as it happens."""
    cache = runtime_of(app).service.cache
    lookup = cache.lookup
    seen: list[str] = []

    def counting(pipeline, version, request):
        seen.append(pipeline)
        return lookup(pipeline, version, request)

    monkeypatch.setattr(cache, "lookup", counting)
    return seen


@pytest.mark.parametrize(
    "query",
    [
        "user_id=17",  # a miss, then a cached answer
        "user_id=17&n=3&offset=2&category=Home&exclude=2,9",
        "user_id=17&explain=true",  # never cached
        "user_id=17&diversity=0.5",
        "user_id=999999",  # the fallback
    ],
)
def test_each_request_looks_the_cache_up_once(client, monkeypatch, query):
    seen = counted_lookups(monkeypatch, client.application)
    for _ in range(2):
        assert client.get(f"/recommend?{query}").status_code == 200
    assert seen == ["champion", "champion"]


@pytest.mark.redis
def test_each_request_looks_the_cache_up_once_with_redis(heard_app, monkeypatch):
    seen = counted_lookups(monkeypatch, heard_app)
    client = heard_app.test_client()
    for _ in range(2):
        assert client.get("/recommend?user_id=17").status_code == 200
    buy(client, 17, 1)
    assert client.get("/recommend?user_id=17").status_code == 200
    assert seen == ["champion"] * 3


def test_each_request_in_an_experiment_looks_the_cache_up_once_in_its_variants_pipeline(
    client, monkeypatch
):
    spec = {
        "name": "pop",
        "baseline_rate": 0.3,
        "mde": 0.1,
        "variants": [
            {"name": "control", "strategy": "champion"},
            {"name": "popular", "strategy": "popular"},
        ],
    }
    assert client.post("/experiments", json=spec).status_code == 201
    assert client.post("/experiments/pop/start").status_code == 200
    seen = counted_lookups(monkeypatch, client.application)
    variants = [client.get(f"/recommend?user_id={u}").get_json()["variant"] for u in range(1, 21)]
    expected = ["champion" if variant == "control" else "popular" for variant in variants]
    assert seen == expected and set(seen) == {"champion", "popular"}


def test_the_popular_variant_caches_its_answers_apart_from_the_live_models(client):
    # Both pipelines answer user 17 from the same version: their answers must not mix.
    personal = client.get("/recommend?user_id=17").get_json()
    spec = {
        "name": "pop",
        "baseline_rate": 0.3,
        "mde": 0.1,
        "variants": [
            {"name": "a", "strategy": "popular", "weight": 1},
            {"name": "b", "strategy": "popular", "weight": 1},
        ],
    }
    assert client.post("/experiments", json=spec).status_code == 201
    assert client.post("/experiments/pop/start").status_code == 200
    for _ in range(2):
        assert client.get("/recommend?user_id=17").get_json()["strategy"] == "popular"
    assert client.post("/experiments/pop/stop").status_code == 200
    assert client.get("/recommend?user_id=17").get_json() == personal


def test_the_query_memo_forgets_the_least_recently_used_string_past_its_bound():
    memo = QueryMemo(2)
    keys = [RecommendRequest(user, 10) for user in (1, 2, 3)]
    first, second, third = (QueryMemo.digest(f"user_id={u}".encode()) for u in (1, 2, 3))
    memo.put(first, keys[0])
    memo.put(second, keys[1])
    assert memo.get(first) == keys[0]  # now the most recently used
    memo.put(third, keys[2])
    assert memo.get(second) is None
    assert (memo.get(first), memo.get(third)) == (keys[0], keys[2])


def test_the_query_memo_names_strings_by_digests_of_a_fixed_size():
    # A standing list of 1,000 ids costs the memo no more than a plain request.
    long_query = ("user_id=1&exclude=" + ",".join(map(str, range(1, 1001)))).encode()
    assert len(QueryMemo.digest(long_query)) == len(QueryMemo.digest(b"user_id=1")) == 16
    assert QueryMemo.digest(long_query) != QueryMemo.digest(long_query + b"1")


def test_the_query_memo_weighs_a_request_by_its_exclusion_list():
    # A list of 1,000 ids costs the memo what eleven plain requests do.
    memo = QueryMemo(200)
    many = RecommendRequest(1, 10, filters=ListFilter(exclude=frozenset(range(1, 1001))))
    plain = [QueryMemo.digest(f"user_id={u}".encode()) for u in range(1, 201)]
    for digest in plain:
        memo.put(digest, RecommendRequest(1, 10))
    memo.put(QueryMemo.digest(b"many"), many)
    assert memo.get(QueryMemo.digest(b"many")) == many
    assert sum(memo.get(digest) is not None for digest in plain) == 200 - 11


def test_a_request_heavier_than_the_whole_query_memo_is_not_kept_and_pushes_nothing_out():
    memo = QueryMemo(5)
    plain = QueryMemo.digest(b"user_id=1")
    memo.put(plain, RecommendRequest(1, 10))
    many = RecommendRequest(1, 10, filters=ListFilter(exclude=frozenset(range(1, 1001))))
    memo.put(QueryMemo.digest(b"many"), many)
    assert memo.get(QueryMemo.digest(b"many")) is None
    assert memo.get(plain) == RecommendRequest(1, 10)


def test_the_query_memo_holds_every_users_standing_list_beside_their_plain_request():
    users = 100
    memo = QueryMemo(3 * users)  # two entries a user with CACHE_MAX_ENTRIES at 1.5 users
    standing = ListFilter(exclude=frozenset(range(1, 101)))
    for user in range(1, users + 1):
        memo.put(QueryMemo.digest(f"user_id={user}".encode()), RecommendRequest(user, 10))
        listed = RecommendRequest(user, 10, filters=standing)
        memo.put(QueryMemo.digest(f"user_id={user}&exclude=1-100".encode()), listed)
    assert all(
        memo.get(QueryMemo.digest(f"user_id={user}&exclude=1-100".encode())) is not None
        for user in range(1, users + 1)
    )


def test_the_query_memo_holds_an_entry_for_every_cached_answer_of_either_kind(tmp_path):
    # Plain answers and answers with an exclusion list are kept apart, each
    # up to CACHE_MAX_ENTRIES: a memo any smaller would thrash between them.
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}", "CACHE_MAX_ENTRIES": "300"}
    )
    assert app.extensions[MEMO_KEY]._max_weight == 600


@pytest.mark.redis
def test_without_announcements_heard_a_cached_answer_is_checked_against_the_history(
    heard_app, monkeypatch
):
    client = unheard(heard_app).test_client()
    first = client.get("/recommend?user_id=17").get_data()
    reads = lookups("history", "hit")
    assert client.get("/recommend?user_id=17").get_data() == first
    assert lookups("history", "hit") == reads + 1


@pytest.mark.redis
def test_a_purchase_is_left_out_at_once_even_when_the_history_is_cached(redis_apps):
    client = redis_apps().test_client()
    before = listed(client.get("/recommend?user_id=17&n=3"))
    assert listed(client.get("/recommend?user_id=17&n=3")) == before  # history cached
    buy(client, 17, before[0])
    after = listed(client.get("/recommend?user_id=17&n=3"))
    assert before[0] not in after
    assert after == uncached_list(client.application, 17, 3)


@pytest.mark.redis
def test_an_event_posted_through_one_app_is_left_out_by_another_sharing_redis(redis_apps):
    posting = redis_apps().test_client()
    answering = unheard(redis_apps(init=False)).test_client()
    before = listed(answering.get("/recommend?user_id=17&n=4"))
    hits = lookups("history", "hit")
    assert listed(answering.get("/recommend?user_id=17&n=3")) == before[:3]
    assert lookups("history", "hit") == hits + 1  # app B answers from the cached history
    buy(posting, 17, before[0])
    assert before[0] not in listed(answering.get("/recommend?user_id=17&n=3"))


@pytest.mark.redis
def test_an_event_posted_through_one_app_makes_anothers_cached_answer_stale_at_once(redis_apps):
    posting_app, answering_app = redis_apps(), redis_apps(init=False)
    wait_for_announcements(posting_app)
    wait_for_announcements(answering_app)
    posting, answering = posting_app.test_client(), answering_app.test_client()
    before = listed(answering.get("/recommend?user_id=17&n=3"))
    hits = lookups("answer", "hit")
    assert listed(answering.get("/recommend?user_id=17&n=3")) == before
    assert lookups("answer", "hit") == hits + 1  # cached, and trusted without a history read
    buy(posting, 17, before[0])
    after = listed(answering.get("/recommend?user_id=17&n=3"))
    assert before[0] not in after and after == uncached_list(answering_app, 17, 3)


@pytest.mark.redis
def test_a_history_read_before_a_purchase_is_never_saved_over_it(redis_url, cache_prefix):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    slow_reader = histories.lookup(7)  # a request reads the store just before a purchase...
    histories.invalidate([7])  # ... the purchase commits and invalidates ...
    read = UserHistory.of_events([(1, "click", 1, 0, 100)])
    histories.save(7, read, slow_reader.generation)  # ... then it saves what it read
    assert histories.lookup(7).history is None


@pytest.mark.redis
def test_a_history_the_previous_release_cached_is_read_again_from_the_store(
    redis_url, cache_prefix
):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    generation = histories.lookup(9).generation
    # What the previous release wrote: no per-product counts to fold in.
    old = {"stamp": list(generation), "events": True, "purchased": [3]}
    histories._cache.set("user:9", old)
    assert histories.lookup(9).history is None
    counted = UserHistory.of_events(
        [(3, "click", 1, 0, 100), (3, "purchase", 1, 0, 200), (5, "click", 1, 0, 50)]
    )
    histories.save(9, counted, generation)
    assert histories.lookup(9).history == counted


@pytest.mark.redis
def test_a_cached_history_keeps_each_event_type_and_a_release_before_types_is_a_miss(
    redis_url, cache_prefix
):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    generation = histories.lookup(9).generation
    typed = UserHistory.of_events(
        [(3, "dislike", 1, 0, 90), (3, "view", 2, 0, 80), (5, "rating", 2, 7, 70)]
    )
    histories.save(9, typed, generation)
    found = histories.lookup(9).history
    assert found == typed and found.disliked == frozenset({3})
    # What the release before event types wrote: counts, no dislikes.
    before_types = {
        "stamp": list(generation),
        "events": True,
        "purchased": [],
        "counts": [[3, 3, 0]],
    }
    histories._cache.set("user:9", before_types)
    assert histories.lookup(9).history is None


@pytest.mark.redis
def test_a_cached_history_keeps_each_products_latest_time(redis_url, cache_prefix):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    history = UserHistory.of_events(
        [(3, "view", 1, 0, 1_772_356_542), (3, "click", 1, 0, 7), (5, "cart", 1, 0, 9)]
    )
    histories.save(9, history, histories.lookup(9).generation)
    found = histories.lookup(9).history
    assert found == history and found.latest == (1_772_356_542, 9)


@pytest.mark.redis
def test_a_cached_history_without_latest_times_is_a_miss(redis_url, cache_prefix):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    generation = histories.lookup(9).generation
    # What the release before the times wrote: typed rows of four.
    untimed = UserHistory.of_events([(3, "view", 1, 0), (5, "cart", 1, 0)])
    previous = {
        "stamp": list(generation),
        "events": True,
        "purchased": [],
        "counts": untimed.counts(),
        "typed": untimed.event_rows(),
    }
    histories._cache.set("user:9", previous)
    assert histories.lookup(9).history is None


@pytest.mark.redis
def test_a_cached_history_without_events_needs_no_times(redis_url, cache_prefix):
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    histories.save(9, UserHistory(), histories.lookup(9).generation)
    assert histories.lookup(9).history == UserHistory()


@pytest.mark.redis
def test_invalidations_lost_in_an_outage_drop_every_cached_history_when_redis_returns(
    redis_url, cache_prefix, monkeypatch, caplog
):
    monkeypatch.setattr(cache_module, "REDIS_RETRY_SECONDS", 0)
    histories = HistoryCache(redis_url.url, cache_prefix, ttl_seconds=60)
    stale = UserHistory.of_events([(3, "purchase", 1, 0, 100)])
    histories.save(8, stale, histories.lookup(8).generation)
    assert histories.lookup(8).history == stale

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("Redis is down (test)")

    monkeypatch.setattr(histories._cache, "set_many", unreachable)
    with caplog.at_level(logging.WARNING, logger="recsys"):
        histories.invalidate([8])  # user 8 buys: the invalidation is lost
        histories.invalidate([9])
    monkeypatch.undo()
    assert histories.lookup(8).history is None  # Redis is back: a new epoch
    assert [r.message for r in caplog.records].count(
        "Redis unavailable (ConnectionError: Redis is down (test)): reading histories "
        "from the store, retrying every 0 s"
    ) == 1


@pytest.mark.redis
def test_a_redis_outage_degrades_to_answers_from_the_store(
    app_factory, own_redis, cache_prefix, monkeypatch, caplog
):
    monkeypatch.setattr(cache_module, "REDIS_RETRY_SECONDS", 0.05)
    url = own_redis.url
    client = app_factory(REDIS_URL=url, CACHE_KEY_PREFIX=cache_prefix).test_client()
    before = listed(client.get("/recommend?user_id=17&n=3"))
    assert listed(client.get("/recommend?user_id=17&n=3")) == before  # history cached

    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="recsys"):
        buy(client, 17, before[0])
        for _ in range(3):
            after = listed(client.get("/recommend?user_id=17&n=3"))
            assert before[0] not in after and after == uncached_list(client.application, 17, 3)
            time.sleep(0.06)  # past the retry interval: Redis is tried (and fails) again
    warnings = [r.name for r in caplog.records if r.message.startswith("Redis unavailable")]
    # Once per outage by each user of Redis: the history cache and the announcements.
    assert sorted(warnings) == ["recsys.online.history_cache", "recsys.online.invalidation"]


# -- the process's bounded caches -------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """Return a settable clock that the answer cache's entries are timed by."""
    now = [1000.0]
    monkeypatch.setattr(answer_cache_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_a_full_cache_lets_the_least_recently_used_entry_go_first(clock):
    entries = answer_cache_module._BoundedTTLCache(max_entries=2, ttl_seconds=60)
    entries.set("a", 1)
    entries.set("b", 2)
    assert entries.get("a") == 1  # "b" is now the least recently used
    entries.set("c", 3)
    assert [entries.get(key) for key in "abc"] == [1, None, 3]


def test_an_entry_is_gone_once_its_ttl_has_passed(clock):
    entries = answer_cache_module._BoundedTTLCache(max_entries=10, ttl_seconds=60)
    entries.set("a", 1)
    clock[0] += 30
    entries.set("b", 2)
    clock[0] += 29.9
    assert (entries.get("a"), entries.get("b")) == (1, 2)
    clock[0] += 0.1
    assert (entries.get("a"), entries.get("b")) == (None, 2)
    clock[0] += 30
    assert entries.get("b") is None


def test_setting_an_entry_drops_the_expired_ones_at_the_old_end(clock):
    entries = answer_cache_module._BoundedTTLCache(max_entries=10, ttl_seconds=60)
    entries.set("a", 1)
    entries.set("b", 2)
    clock[0] += 60
    entries.set("c", 3)
    assert list(entries._entries) == ["c"]
