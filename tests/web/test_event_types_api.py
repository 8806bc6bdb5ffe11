"""POST /interactions with event types and event ids: answers, errors, and a dislike's effect."""

from __future__ import annotations

import pytest

from tests.builders import listed, runtime_of, wait_for_announcements

USER = 17


def interaction_count(app) -> int:
    return runtime_of(app).store.counts().interactions


def post(client, body):
    response = client.post("/interactions", json=body)
    return response.status_code, response.get_json()


def test_every_type_is_accepted_and_the_answer_counts_new_and_known(any_app_factory):
    app = any_app_factory()
    client = app.test_client()
    before = interaction_count(app)
    batch = [
        {"user_id": 5, "product_id": 1, "type": "view", "event_id": "s1-view"},
        {"user_id": 5, "product_id": 1, "type": "click", "event_id": "s1-click"},
        {"user_id": 5, "product_id": 1, "type": "cart", "event_id": "s1-cart"},
        {"user_id": 5, "product_id": 1, "type": "purchase", "event_id": "s1-buy"},
        {"user_id": 5, "product_id": 2, "type": "rating", "value": 2, "event_id": "s1-rate"},
        {"user_id": 5, "product_id": 3, "type": "dislike", "event_id": "s1-no"},
        {"user_id": 5, "product_id": 4, "purchased": 1},  # an old client, unchanged
    ]
    assert post(client, batch) == (201, {"accepted": 7, "new": 7, "known": 0})
    # Sent again (a client whose request timed out): nothing is stored twice.
    assert post(client, batch) == (201, {"accepted": 7, "new": 1, "known": 6})
    assert interaction_count(app) == before + 8


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "like"}, "event 1: type must be one of view, click, cart, purchase, rating"),
        ({"type": "rating", "value": 9}, "event 1: value must be an integer from 1 to 5"),
        ({"type": "rating"}, "event 1: value must be an integer from 1 to 5 on a rating, got none"),
        ({"type": "cart", "value": 3}, "event 1: value is only for a rating; type 'cart'"),
        ({"type": "view", "purchased": 1}, "event 1: purchased 1 contradicts type 'view'"),
        ({"type": "view", "event_id": ""}, "event 1: event_id is empty"),
        ({"type": "view", "event_id": "e" * 65}, "event 1: event_id is 65 characters long"),
        ({"type": "view", "event_id": ["a"]}, "event 1: event_id must be a string"),
    ],
)
def test_a_bad_typed_event_is_a_json_400_and_nothing_is_written(any_app_factory, event, message):
    app = any_app_factory()
    before = interaction_count(app)
    good = {"user_id": 5, "product_id": 1, "type": "view", "event_id": "fine"}
    status, body = post(app.test_client(), [good, {"user_id": 5, "product_id": 2, **event}])
    assert status == 400
    assert body["error"]["code"] == "invalid_event"
    assert message in body["error"]["message"]
    assert interaction_count(app) == before


def test_an_event_id_reused_for_another_event_is_a_409_naming_it(any_app_factory):
    app = any_app_factory()
    client = app.test_client()
    post(client, {"user_id": 5, "product_id": 1, "type": "view", "event_id": "order-77"})
    before = interaction_count(app)
    status, body = post(
        client,
        [
            {"user_id": 5, "product_id": 2, "type": "view", "event_id": "other"},
            {"user_id": 5, "product_id": 1, "type": "purchase", "event_id": "order-77"},
        ],
    )
    assert status == 409
    assert body["error"]["code"] == "event_id_conflict"
    assert body["error"]["message"].startswith(
        "event 1: event_id 'order-77' already names another event "
        "(type 'purchase', where 'view' is recorded)"
    )
    assert interaction_count(app) == before


# -- a dislike takes the product out of the user's lists at once --------------------------


def test_a_dislike_removes_the_product_from_the_users_next_list(any_app_factory):
    app = any_app_factory()
    client = app.test_client()
    path = f"/recommend?user_id={USER}&n=5"
    top = listed(client.get(path))
    assert listed(client.get(path)) == top  # the second answer is the cached one
    post(client, {"user_id": USER, "product_id": top[0], "type": "dislike"})
    after = listed(client.get(path))
    assert top[0] not in after
    assert top[0] not in listed(client.get(f"{path}&include_purchased=true"))
    assert len(after) == 5


def test_a_dislike_sent_to_one_server_leaves_the_others_next_answer_without_the_product(
    any_app_factory,
):
    answering = any_app_factory().test_client()
    receiving = any_app_factory(init=False).test_client()
    path = f"/recommend?user_id={USER}&n=5"
    top = listed(answering.get(path))
    listed(answering.get(path))  # cached there
    post(receiving, {"user_id": USER, "product_id": top[1], "type": "dislike"})
    assert top[1] not in listed(answering.get(path))


def test_a_dislike_reaches_every_server_sharing_redis_before_it_is_acknowledged(
    app_factory, redis_url, cache_prefix
):
    def server():
        app = app_factory(REDIS_URL=redis_url.url, CACHE_KEY_PREFIX=cache_prefix)
        wait_for_announcements(app)
        return app.test_client()

    answering, receiving = server(), server()
    path = f"/recommend?user_id={USER}&n=5"
    top = listed(answering.get(path))
    assert listed(answering.get(path)) == top  # cached, trusted through the bus
    post(receiving, {"user_id": USER, "product_id": top[0], "type": "dislike"})
    assert top[0] not in listed(answering.get(path))
    assert top[0] not in listed(receiving.get(path))


# -- the document says all of it --------------------------------------------------------


def test_the_openapi_document_describes_the_event_fields_and_the_answer(bundled_client):
    spec = bundled_client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    event = schemas["EventIn"]
    properties = event["properties"]
    types = next(s for s in properties["type"]["anyOf"] if "enum" in s)["enum"]
    assert types == ["view", "click", "cart", "purchase", "rating", "dislike"]
    assert next(s for s in properties["value"]["anyOf"] if "minimum" in s) == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
    }
    event_id = next(s for s in properties["event_id"]["anyOf"] if s.get("type") == "string")
    assert (event_id["minLength"], event_id["maxLength"]) == (1, 64)
    assert event["required"] == ["user_id", "product_id"]
    assert event["anyOf"] == [{"required": ["type"]}, {"required": ["purchased"]}]
    assert set(schemas["EventsAccepted"]["required"]) == {"accepted", "new", "known"}
    responses = spec["paths"]["/interactions"]["post"]["responses"]
    assert "409" in responses
