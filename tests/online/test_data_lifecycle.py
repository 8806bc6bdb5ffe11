"""Deleted users and hidden products on the answering path: gone from the next answer, everywhere.

Two apps over one store and one Redis key prefix stand for two servers.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from recsys.data.timestamps import utc_now
from recsys.online import NoAnswerCache, RecommendRequest, recommend_users
from recsys.store.events import UserHistory
from tests.builders import listed, runtime_of, wait_for_announcements

USER = 17


def product_of(client, product_id: int) -> dict:
    body = client.get(f"/products/{product_id}").get_json()
    return {k: body[k] for k in ("product_id", "name", "category", "price")}


def set_available(client, product_id: int, available: bool) -> None:
    response = client.put(
        "/products", json=[{**product_of(client, product_id), "available": available}]
    )
    assert response.status_code == 200, response.get_json()


# -- deleted users -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["svd", "ease", "als"])
def test_a_deleted_users_next_list_is_the_unknown_user_one_whatever_the_model(app_factory, model):
    client = app_factory(MODEL=model).test_client()
    assert client.get(f"/recommend?user_id={USER}").get_json().get("fallback_reason") is None
    assert client.delete(f"/users/{USER}").status_code == 200
    body = client.get(f"/recommend?user_id={USER}").get_json()
    assert (body["strategy"], body["fallback_reason"]) == ("popular", "unknown_user")


def test_a_deleted_user_is_not_ranked_from_their_training_row_when_the_store_is_down(app):
    runtime_of(app).start()
    service = runtime_of(app).service
    version = service.live.current()
    unread = UserHistory(unavailable=True)
    request = RecommendRequest(USER, 5)
    before = service.pipeline.answer(
        version, request, unread, "store_unavailable", NoAnswerCache(service.store)
    )
    assert before.fallback_reason is None  # the training-time row, as for any known user
    assert runtime_of(app).delete_user(USER, "test") is not None
    after = service.pipeline.answer(
        version, request, unread, "store_unavailable", NoAnswerCache(service.store)
    )
    assert (after.strategy, after.fallback_reason) == ("popular", "unknown_user")


def test_a_version_trained_after_the_deletion_ranks_the_returning_user_from_its_row(app):
    runtime_of(app).start()
    service = runtime_of(app).service
    version = service.live.current()
    service.erased.add([USER], utc_now() - timedelta(days=1))
    assert not service.erased.forgets(USER, version)
    service.erased.add([USER], utc_now())
    assert service.erased.forgets(USER, version)
    unrecorded = dataclasses.replace(version.metadata, training={})
    assert service.erased.forgets(USER, dataclasses.replace(version, metadata=unrecorded))


def test_a_server_started_after_a_deletion_learns_it_from_the_audit(app_factory):
    first = app_factory()
    assert first.test_client().delete(f"/users/{USER}").status_code == 200
    second = app_factory(init=False)
    runtime_of(second).start()
    assert runtime_of(second).service.erased.forgets(
        USER, runtime_of(second).service.live.current()
    )


def test_a_delete_on_one_server_makes_the_user_unknown_on_another_at_once(
    app_factory, redis_url, cache_prefix
):
    one, other = (
        app_factory(REDIS_URL=redis_url.url, CACHE_KEY_PREFIX=cache_prefix) for _ in range(2)
    )
    for app in (one, other):
        wait_for_announcements(app)
    before = other.test_client().get(f"/recommend?user_id={USER}").get_json()
    assert before.get("fallback_reason") is None  # now cached on the other server
    assert one.test_client().delete(f"/users/{USER}").status_code == 200
    after = other.test_client().get(f"/recommend?user_id={USER}").get_json()
    assert after["fallback_reason"] == "unknown_user"


# -- hidden products ---------------------------------------------------------------------------


def test_a_hidden_product_is_in_no_list_until_it_is_available_again(client):
    top = listed(client.get(f"/recommend?user_id={USER}&n=5"))[0]
    set_available(client, top, False)
    paths = [
        f"/recommend?user_id={USER}&n=20",
        f"/recommend?user_id={USER}&n=5&offset=5",
        f"/recommend?user_id={USER}&n=10&diversity=0.5",
        f"/recommend?user_id={USER}&n=10&explain=true",
        "/recommend?user_id=999999&n=20",
        f"/similar?product_id={top}&n=19",
        "/similar?product_id=3&n=19",
    ]
    for path in paths:
        assert top not in listed(client.get(path)), path
    explained = client.get(f"/recommend?user_id={USER}&n=20&explain=true").get_json()
    reasons = [
        r["product_id"] for item in explained["recommendations"] for r in item.get("because", [])
    ]
    assert top not in reasons
    set_available(client, top, True)
    assert listed(client.get(f"/recommend?user_id={USER}&n=5"))[0] == top


def test_a_hidden_product_is_never_explored(app_factory):
    client = app_factory(EXPLORATION="1").test_client()
    shown = {
        p for user in range(1, 40) for p in listed(client.get(f"/recommend?user_id={user}&n=10"))
    }
    hidden = sorted(shown)[:3]
    for product in hidden:
        set_available(client, product, False)
    for user in range(1, 40):
        assert not set(hidden) & set(listed(client.get(f"/recommend?user_id={user}&n=10")))


def test_a_product_hidden_on_one_server_vanishes_from_the_next_answer_of_another(
    app_factory, redis_url, cache_prefix
):
    one, other = (
        app_factory(
            REDIS_URL=redis_url.url, CACHE_KEY_PREFIX=cache_prefix, MODEL_REFRESH_SECONDS="0"
        )
        for _ in range(2)
    )
    for app in (one, other):
        wait_for_announcements(app)
    reader = other.test_client()
    top = listed(reader.get(f"/recommend?user_id={USER}&n=5"))[0]  # cached on the other server
    set_available(one.test_client(), top, False)
    assert top not in listed(reader.get(f"/recommend?user_id={USER}&n=5"))
    assert top not in listed(reader.get("/similar?product_id=3&n=19"))
    set_available(one.test_client(), top, True)
    assert listed(reader.get(f"/recommend?user_id={USER}&n=5"))[0] == top


# -- batch lists -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["svd", "ease", "als"])
def test_batch_lists_equal_the_answers_of_recommend_for_every_user(app_factory, model):
    app = app_factory(MODEL=model)
    client = app.test_client()
    runtime_of(app).start()
    set_available(client, listed(client.get("/popular?n=1"))[0], False)
    assert client.delete("/users/5").status_code == 200
    users = [*range(1, 60), 999_999]
    chunks = [users[i : i + 7] for i in range(0, len(users), 7)]
    batch = [a for answers in recommend_users(runtime_of(app).service, chunks, 10) for a in answers]
    for answer in batch:
        expected = client.get(f"/recommend?user_id={answer.user_id}&n=10").get_json()
        assert answer.to_dict() == expected
