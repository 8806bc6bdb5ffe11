"""GET /similar: the live model's neighbours, never the product itself, the category fallback."""

from __future__ import annotations

import numpy as np
import pytest

MAX_ID = 2**63 - 1


def categories(client) -> dict[int, str]:
    products = client.get("/products").get_json()["products"]
    return {p["product_id"]: p["category"] for p in products}


def test_neighbours_come_from_the_live_svd_model_best_first(bundled_app, bundled_client):
    body = bundled_client.get("/similar?product_id=3&n=4").get_json()
    assert body["product_id"] == 3 and body["strategy"] == "svd"
    assert "fallback_reason" not in body
    assert body["model_version"] == bundled_client.get("/model").get_json()["version"]
    model = bundled_app.extensions["recsys.runtime"].service.live.current().model
    ranked = model.similar_items(3, 4)
    assert [i["product_id"] for i in body["recommendations"]] == ranked.product_ids.tolist()
    assert [i["score"] for i in body["recommendations"]] == np.round(ranked.scores, 4).tolist()
    assert set(body["recommendations"][0]) == {"product_id", "name", "category", "score"}


@pytest.mark.parametrize("model", ["svd", "als", "popular"])
def test_a_product_is_never_its_own_neighbour(app_factory, model):
    client = app_factory(MODEL=model).test_client()
    for product_id in range(1, 21):
        body = client.get(f"/similar?product_id={product_id}&n=100").get_json()
        listed = [i["product_id"] for i in body["recommendations"]]
        assert product_id not in listed
        assert len(listed) == len(set(listed))


def test_als_compares_products_by_its_item_factors(app_factory):
    body = app_factory(MODEL="als").test_client().get("/similar?product_id=5&n=19").get_json()
    assert body["strategy"] == "als" and "fallback_reason" not in body
    assert len(body["recommendations"]) == 19


def test_a_model_that_cannot_compare_answers_the_categorys_best_sellers(app_factory):
    client = app_factory(MODEL="popular").test_client()
    of = categories(client)
    body = client.get("/similar?product_id=13&n=100").get_json()
    assert body["strategy"] == "popular"
    assert body["fallback_reason"] == "no_item_similarity"
    listed = [i["product_id"] for i in body["recommendations"]]
    assert listed and {of[p] for p in listed} == {of[13]}
    assert sorted(listed) == sorted(p for p, c in of.items() if c == of[13] and p != 13)
    scores = [i["score"] for i in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)


def test_a_product_the_model_lacks_gets_its_categorys_most_clicked(client):
    client.put(
        "/products",
        json=[{"product_id": 50, "name": "Teal Atlas", "category": "Books", "price": 12}],
    )
    popular = client.get("/popular?n=100").get_json()["recommendations"]
    books = [i for i in popular if i["category"] == "Books"][:3]
    body = client.get("/similar?product_id=50&n=3").get_json()
    assert body["strategy"] == "popular" and body["fallback_reason"] == "not_in_model"
    assert body["recommendations"] == books


def test_an_unknown_product_is_404_unknown_product(bundled_client):
    response = bundled_client.get("/similar?product_id=999")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "unknown_product", "message": "product_id 999 is not in the catalog"}
    }


ACCEPTS_PRODUCT = f"product_id must be an integer from 1 to {MAX_ID}"
ACCEPTS_N = "n must be an integer from 1 to 100"


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("", "missing_parameter", "product_id is required"),
        ("n=3", "missing_parameter", "product_id is required"),
        ("product_id=", "invalid_parameter", "product_id must not be empty"),
        ("product_id=abc", "invalid_parameter", f"{ACCEPTS_PRODUCT}, got 'abc'"),
        ("product_id=0", "invalid_parameter", f"{ACCEPTS_PRODUCT}, got '0'"),
        ("product_id=-3", "invalid_parameter", f"{ACCEPTS_PRODUCT}, got '-3'"),
        ("product_id=%EF%BC%93", "invalid_parameter", f"{ACCEPTS_PRODUCT}, got '\uff13'"),
        (f"product_id={MAX_ID + 1}", "invalid_parameter", f"{ACCEPTS_PRODUCT}, got '{MAX_ID + 1}'"),
        ("product_id=3&product_id=4", "duplicate_parameter",
         "product_id must be given once, got 2"),
        ("product_id=3&n=0", "invalid_parameter", f"{ACCEPTS_N}, got '0'"),
        ("product_id=3&n=101", "invalid_parameter", f"{ACCEPTS_N}, got '101'"),
        ("product_id=3&n=1e2", "invalid_parameter", f"{ACCEPTS_N}, got '1e2'"),
        ("product_id=3&n=", "invalid_parameter", "n must not be empty"),
        ("product_id=3&n=2&n=2", "duplicate_parameter", "n must be given once, got 2"),
    ],
)  # fmt: skip
def test_bad_parameters_are_400_naming_what_is_accepted(bundled_client, query, code, message):
    response = bundled_client.get(f"/similar?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"error": {"code": code, "message": message}}
