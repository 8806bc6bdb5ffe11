"""GET /recommend with explain=true and diversity=0..1; MMR on its own."""

import numpy as np
import pytest

from recsys.models.rerank import mmr_order


def test_mmr_at_diversity_zero_is_the_plain_ranking():
    scores = np.array([5.0, 4.0, 4.0, 3.0, 1.0])
    similarity = np.random.default_rng(0).random((5, 5))
    assert mmr_order(scores, similarity, 4, 0.0).tolist() == [0, 1, 2, 3]


def test_mmr_passes_over_a_near_duplicate_of_a_chosen_item():
    scores = np.array([1.0, 0.9, 0.8])
    # Candidate 1 is a copy of candidate 0; candidate 2 is unlike both.
    similarity = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mmr_order(scores, similarity, 2, 0.5).tolist() == [0, 2]


def test_mmr_refuses_a_diversity_outside_zero_to_one():
    with pytest.raises(ValueError, match="from 0 to 1"):
        mmr_order(np.ones(2), np.eye(2), 2, 1.5)


def recommend(client, **query):
    return client.get("/recommend", query_string={"user_id": 17, "n": 5, **query})


def test_explain_adds_the_users_own_past_products_to_each_item(bundled_client, bundled_app):
    from tests.builders import runtime_of

    body = recommend(bundled_client, explain="true").get_json()
    model = runtime_of(bundled_app).service.live.current().model
    lists = model.history.of(int(np.searchsorted(model.user_ids, 17)))[0]
    own = set(model.product_ids[lists].tolist())
    for item in body["recommendations"]:
        weights = [reason["weight"] for reason in item["because"]]
        assert {reason["product_id"] for reason in item["because"]} <= own
        assert weights == sorted(weights, reverse=True)
        assert len(item["because"]) <= 3
        assert all(set(reason) == {"product_id", "name", "weight"} for reason in item["because"])
    assert any(item["because"] for item in body["recommendations"])


def test_without_explain_items_have_no_because(bundled_client):
    body = recommend(bundled_client).get_json()
    assert all("because" not in item for item in body["recommendations"])


def test_diversity_zero_equals_the_plain_ranking(bundled_client):
    assert (
        recommend(bundled_client, diversity="0").get_json() == recommend(bundled_client).get_json()
    )


def test_full_diversity_spreads_the_list_over_categories(bundled_client):
    plain = recommend(bundled_client).get_json()["recommendations"]
    diverse = recommend(bundled_client, diversity="1").get_json()["recommendations"]
    assert len(diverse) == len(plain)
    assert len({i["category"] for i in diverse}) >= len({i["category"] for i in plain})
    assert diverse[0] == plain[0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"explain": "yes"}, "explain must be true, false, 1 or 0, got 'yes'"),
        ({"diversity": "1.5"}, "diversity must be a number from 0 to 1"),
        ({"diversity": "-0"}, "diversity must be a number from 0 to 1"),
        ({"diversity": "nan"}, "diversity must be a number from 0 to 1"),
        ({"diversity": "."}, "diversity must be a number from 0 to 1"),
    ],
)
def test_bad_explain_or_diversity_is_an_invalid_parameter(bundled_client, query, message):
    response = recommend(bundled_client, **query)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"].startswith(message)
