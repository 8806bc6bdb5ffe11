"""POST /recommend/session: an anonymous visitor's list from the products of their session."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.online import RecommendRequest
from recsys.online.pipeline import Pipeline
from recsys.store.tables import interactions
from tests.builders import runtime_of

SESSION = "/recommend/session"


def listed_ids(body: dict) -> list[int]:
    return [item["product_id"] for item in body["recommendations"]]


def test_a_session_gets_a_personal_list_from_its_products_alone(bundled_client):
    response = bundled_client.post(SESSION, json={"items": [3, 7, 7], "n": 4})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["strategy"] == bundled_client.get("/model").get_json()["model_type"]
    assert "user_id" not in body and "fallback_reason" not in body
    assert body["history_events"] == 3
    assert len(body["recommendations"]) == 4


def test_a_session_is_ranked_as_a_user_with_the_same_clicks_would_be(app):
    client = app.test_client()
    clicks = [{"user_id": 777_001, "product_id": p, "purchased": 0} for p in (3, 7, 7, 12)]
    assert client.post("/interactions", json=clicks).status_code == 201
    user = client.get("/recommend?user_id=777001&n=8").get_json()
    session = client.post(SESSION, json={"items": [3, 7, 7, 12], "n": 8}).get_json()
    assert session["recommendations"] == user["recommendations"]


def test_a_sessions_later_product_changes_its_list(bundled_client):
    one = bundled_client.post(SESSION, json={"items": [3], "n": 10}).get_json()
    two = bundled_client.post(SESSION, json={"items": [3, 15], "n": 10}).get_json()
    assert [i["score"] for i in one["recommendations"]] != [
        i["score"] for i in two["recommendations"]
    ]


def test_a_sessions_profile_orders_its_products_by_their_last_position(app, monkeypatch):
    answer = Pipeline.answer
    folded = []

    def answer_and_keep_profile(pipeline, version, request, history, *rest):
        folded.append(version.profile(history))
        return answer(pipeline, version, request, history, *rest)

    monkeypatch.setattr(Pipeline, "answer", answer_and_keep_profile)
    runtime_of(app).start()
    runtime_of(app).service.recommend_session([12, 3, 7, 3], RecommendRequest(None, 5))
    [profile] = folded
    assert profile.product_ids.tolist() == [3, 7, 12]
    assert profile.latest is not None and profile.latest.tolist() == [3, 2, 0]
    assert profile.product_ids[np.argsort(profile.latest)].tolist() == [12, 7, 3]


def test_a_session_writes_nothing(app):
    client = app.test_client()
    store = runtime_of(app).store
    before = store.counts()
    assert client.post(SESSION, json={"items": [1, 2, 3]}).status_code == 200
    assert store.counts() == before
    with store.engine.connect() as conn:
        assert conn.execute(interactions.select().where(interactions.c.user_id == 0)).all() == []


def test_a_session_takes_the_filters_of_recommend(bundled_client):
    plain = listed_ids(bundled_client.post(SESSION, json={"items": [3], "n": 6}).get_json())
    body = {"items": [3], "n": 3, "offset": 1, "exclude": [plain[1]]}
    paged = listed_ids(bundled_client.post(SESSION, json=body).get_json())
    assert paged == [p for p in plain if p != plain[1]][1:4]
    category = bundled_client.get(f"/products/{plain[0]}").get_json()["category"]
    only = bundled_client.post(SESSION, json={"items": [3], "category": [category]}).get_json()
    assert {i["category"] for i in only["recommendations"]} == {category}


def test_an_explained_session_names_its_own_products(bundled_client):
    body = bundled_client.post(SESSION, json={"items": [3, 7], "explain": True}).get_json()
    named = {r["product_id"] for item in body["recommendations"] for r in item["because"]}
    assert named <= {3, 7}


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ([3, 7], 400, "invalid_body", 'send one object: {"items"'),
        ({}, 400, "invalid_parameter", "items: Field required"),
        ({"items": []}, 400, "invalid_parameter", "items: List should have at least 1 item"),
        ({"items": [1] * 1001}, 400, "invalid_parameter", "items: List should have at most 1000"),
        ({"items": ["3"]}, 400, "invalid_parameter", "items.0: Input should be a valid integer"),
        ({"items": [0]}, 400, "invalid_parameter", "items.0: Input should be greater than"),
        ({"items": [3], "n": 0}, 400, "invalid_parameter", "n: Input should be greater than"),
        ({"items": [3], "n": 101}, 400, "invalid_parameter", "n: Input should be less than"),
        ({"items": [3], "n": True}, 400, "invalid_parameter", "n: Input should be a valid integer"),
        ({"items": [3], "n": 100, "offset": 901}, 400, "invalid_parameter", "offset + n must"),
        ({"items": [3], "diversity": 2}, 400, "invalid_parameter", "diversity: Input should be"),
        ({"items": [3], "explain": "yes"}, 400, "invalid_parameter", "explain: Input should be"),
        ({"items": [3], "user_id": 7}, 400, "invalid_parameter", "user_id: Extra inputs"),
        ({"items": [3], "category": ["a" * 101]}, 400, "invalid_parameter", "category.0: String"),
        ({"items": [3, 999, 998]}, 422, "unknown_product", "items[1]: product_id 999 is not in"),
    ],
)
def test_a_bad_session_is_a_clear_json_error(bundled_client, body, status, code, message):
    response = bundled_client.post(SESSION, json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(message), error["message"]


def test_a_session_body_that_is_not_json_is_refused(bundled_client):
    response = bundled_client.post(SESSION, data="items=3", content_type="text/plain")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
