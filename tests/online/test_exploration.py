"""Exploration: a share of first pages for new or rarely shown products, stable per user.

The services run over the bundled log (20 products, 100 users) on SQLite and
PostgreSQL; each test turns exploration on (tests/conftest.py turns it off
for the others).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.ratings import derive_ratings
from recsys.models.content import cosine
from recsys.models.popularity import PopularityRecommender
from recsys.online.exploration import POOL_SIZE, CatalogContent, ExplorationPool
from tests.builders import AppFactory, runtime_of
from tests.web.test_observability import metrics, value

NEW_PRODUCT = {"product_id": 21, "name": "Coral Perfume", "category": "Beauty", "price": 9.5}
USERS = range(1, 41)


@pytest.fixture
def factory(database_url, tmp_path):
    """Yield a factory of services over one store (either back-end) with exploration on."""
    apps = AppFactory(database_url, tmp_path / "models", EXPLORATION="0.1")
    yield apps
    apps.close()


def recommendations(client, user_id: int, query: str = "n=10") -> list[dict]:
    response = client.get(f"/recommend?user_id={user_id}&{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["recommendations"]


def explored(items: list[dict]) -> list[int]:
    return [item["product_id"] for item in items if item.get("explored")]


def add_new_product(client) -> None:
    response = client.put("/products", json=[NEW_PRODUCT])
    assert response.status_code == 200, response.get_data(as_text=True)


def test_identical_requests_get_the_same_list_from_every_process(factory):
    first = factory().test_client()
    # Another process over the same store, without cached answers: it ranks anew.
    second = factory(init=False, CACHE="0").test_client()
    for user_id in USERS:
        shown = recommendations(first, user_id)
        assert recommendations(first, user_id) == shown
        assert recommendations(second, user_id) == shown


def test_one_slot_in_ten_goes_to_exploration_at_a_share_of_0_1(factory):
    client = factory().test_client()
    for user_id in USERS:
        items = recommendations(client, user_id)
        assert len(items) == 10 and len(explored(items)) == 1, user_id


def test_half_of_five_slot_lists_explore_one_slot_at_a_share_of_0_1(factory):
    client = factory().test_client()
    counts = [len(explored(recommendations(client, user_id, "n=5"))) for user_id in range(1, 101)]
    assert set(counts) == {0, 1}
    assert 35 <= sum(counts) <= 65


def test_explored_products_fill_the_lower_half_and_keep_scores_falling(factory):
    client = factory().test_client()
    for user_id in USERS:
        items = recommendations(client, user_id)
        places = [i for i, item in enumerate(items) if item.get("explored")]
        scores = [item["score"] for item in items]
        assert all(place >= 5 for place in places)
        assert scores == sorted(scores, reverse=True)


def test_a_share_of_0_turns_exploration_off(factory):
    app = factory(EXPLORATION="0")
    client = app.test_client()
    for user_id in USERS:
        assert explored(recommendations(client, user_id)) == []
    runtime_of(app).refresher.sync_impressions()
    assert runtime_of(app).service.exploration.impressions.store.totals() == {}


def test_a_new_product_is_shown_to_every_user_without_a_retrain(factory):
    app = factory()
    client = app.test_client()
    version = client.get("/recommend?user_id=1").get_json()["model_version"]
    add_new_product(client)
    for user_id in USERS:
        items = recommendations(client, user_id)
        assert explored(items) == [21], user_id
    assert client.get("/recommend?user_id=1").get_json()["model_version"] == version


def test_a_product_shown_as_often_as_the_target_is_explored_no_more(factory):
    app = factory(EXPLORATION_IMPRESSIONS="5")
    client = app.test_client()
    add_new_product(client)
    shown_to = [u for u in range(1, 6) if 21 in explored(recommendations(client, u))]
    assert shown_to == [1, 2, 3, 4, 5]
    runtime_of(app).refresher.sync_impressions()  # what the sync thread does every period
    assert all(21 not in explored(recommendations(client, u)) for u in range(6, 41))


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("n=10&category=Beauty&category=Books", {"Beauty", "Books"}),
        ("n=10&category=Home", {"Home"}),
    ],
)
def test_explored_products_keep_to_the_asked_categories(factory, query, allowed):
    client = factory().test_client()
    add_new_product(client)
    for user_id in USERS:
        items = recommendations(client, user_id, query)
        assert {item["category"] for item in items} <= allowed


def test_explored_products_leave_out_exclusions_and_purchases(factory):
    client = factory().test_client()
    add_new_product(client)
    assert 21 not in [i["product_id"] for i in recommendations(client, 3, "n=10&exclude=21")]
    response = client.post("/interactions", json={"user_id": 3, "product_id": 21, "purchased": 1})
    assert response.status_code == 201
    assert 21 not in [i["product_id"] for i in recommendations(client, 3)]


def test_an_explained_list_names_no_past_products_behind_an_explored_one(factory):
    client = factory().test_client()
    add_new_product(client)
    items = recommendations(client, 1, "n=10&explain=1")
    assert [item["because"] for item in items if item.get("explored")] == [[]]
    assert any(item["because"] for item in items if not item.get("explored"))


def test_later_pages_are_not_explored(factory):
    client = factory().test_client()
    add_new_product(client)
    assert all(explored(recommendations(client, u, "n=10&offset=10")) == [] for u in USERS)


def test_metrics_count_explored_slots_and_impressions(factory):
    client = factory().test_client()
    before = metrics(client)
    for user_id in range(1, 11):
        recommendations(client, user_id)
    after = metrics(client)
    slots = "recsys_explored_slots_total"
    impressions = "recsys_impressions_total"
    assert value(after, slots) - value(before, slots) == 10
    assert value(after, impressions) - value(before, impressions) == 100


def test_a_cached_answer_counts_its_explored_slots_and_impressions_each_time_it_is_served(factory):
    client = factory().test_client()
    for user_id in range(1, 11):
        recommendations(client, user_id)
    before = metrics(client)
    for _ in range(2):
        for user_id in range(1, 11):
            recommendations(client, user_id)  # cached answers
    after = metrics(client)
    slots = "recsys_explored_slots_total"
    impressions = "recsys_impressions_total"
    assert value(after, slots) - value(before, slots) == 20
    assert value(after, impressions) - value(before, impressions) == 200


def test_a_new_product_like_what_the_user_clicked_comes_first(factory):
    client = factory().test_client()
    book = {"product_id": 22, "name": "Coral Atlas", "category": "Books", "price": 12.0}
    assert client.put("/products", json=[NEW_PRODUCT, book]).status_code == 200
    clicks = [
        {"user_id": user, "product_id": product, "purchased": 0}
        for user, products in ((777_001, (2, 3, 8)), (777_002, (7, 11, 13)))
        for product in products
    ]
    assert client.post("/interactions", json=clicks).status_code == 201
    assert explored(recommendations(client, 777_001)) == [21]  # a Beauty shopper
    assert explored(recommendations(client, 777_002)) == [22]  # a reader


def test_an_anonymous_session_gets_the_same_explored_list_each_time(factory):
    client = factory().test_client()
    add_new_product(client)
    session = {"items": [3, 7], "n": 10}
    first, second = (client.post("/recommend/session", json=session).get_json() for _ in "ab")
    assert first["recommendations"] == second["recommendations"]
    assert explored(first["recommendations"]) == [21]


def test_a_large_catalogs_pool_is_bounded_with_new_products_first():
    catalog = pd.DataFrame(
        {
            "product_id": np.arange(1, 1501),
            "name": [f"Item {i}" for i in range(1, 1501)],
            "category": ["Home"] * 1500,
            "price": np.linspace(5, 50, 1500),
        }
    )
    log = pd.DataFrame(
        {"user_id": 1, "product_clicked": np.arange(1, 1496), "purchased": 0}
    )  # the model knows every product but the last 5
    model = PopularityRecommender().fit(derive_ratings(log))
    impressions = np.arange(1500) % 7  # every product under the target
    pool = ExplorationPool.of(CatalogContent.fit(catalog), impressions, 100, model)
    assert len(pool.product_ids) == POOL_SIZE
    assert sorted(pool.product_ids[:5].tolist()) == [1496, 1497, 1498, 1499, 1500]
    assert pool.new.tolist() == [True] * 5 + [False] * (POOL_SIZE - 5)
    shown = impressions[pool.product_ids[5:] - 1]
    assert (np.diff(shown) >= 0).all()  # then the least shown first


def shop_catalog(size: int) -> pd.DataFrame:
    """Return a catalog with names of one to nine words, some products without a category."""
    rng = np.random.default_rng(size)
    words = ["Coral", "Olive", "Atlas", "Lamp", "Perfume", "Cushion", "Silver", "Desk", "Mug"]
    return pd.DataFrame(
        {
            "product_id": np.arange(1, size + 1) * 3,
            "name": [" ".join(rng.choice(words, size=rng.integers(1, 10))) for _ in range(size)],
            "category": [None if i % 7 == 0 else f"Category {i % 5}" for i in range(size)],
            "price": rng.uniform(1, 50, size=size),
        }
    )


def shop_pool(size: int, hidden: frozenset[int] = frozenset()) -> ExplorationPool:
    """Return the pool of a shop whose model knows its first half, shown 0 to 9 times each."""
    catalog = shop_catalog(size)
    known = catalog["product_id"][: max(1, size // 2)]
    log = pd.DataFrame({"user_id": 1, "product_clicked": known, "purchased": 0})
    model = PopularityRecommender().fit(derive_ratings(log))
    impressions = np.arange(size) % 10
    return ExplorationPool.of(CatalogContent.fit(catalog), impressions, 10, model, hidden)


@pytest.mark.parametrize("size", [1, 40, 1500])
def test_a_pools_similarity_is_the_sparse_cosine_to_the_last_bit(size):
    pool = shop_pool(size)
    rng = np.random.default_rng(0)
    for _ in range(20):
        taste = rng.random(pool.vectors.shape[1]) * (rng.random(pool.vectors.shape[1]) < 0.3)
        assert np.array_equal(pool.similarity(taste), cosine(pool.vectors, taste))


def test_a_pool_of_products_with_no_content_is_similar_to_nothing():
    catalog = pd.DataFrame(
        {"product_id": [1, 2, 3], "name": [None] * 3, "category": [None] * 3, "price": [None] * 3}
    )
    log = pd.DataFrame({"user_id": 1, "product_clicked": [1], "purchased": 0})
    model = PopularityRecommender().fit(derive_ratings(log))
    pool = ExplorationPool.of(CatalogContent.fit(catalog), np.zeros(3, int), 10, model)
    assert pool.similarity(np.zeros(0)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "seen",
    [
        [],
        [[3, 6, 999_999]],  # an id outside the pool is no matter
        [[9, 12], frozenset({9, 30, 33}), (45,)],  # groups may overlap
        [range(3, 3000, 3)],  # the whole catalog
    ],
)
def test_a_pool_leaves_out_the_seen_products_as_a_search_of_its_ids_would(seen):
    pool = shop_pool(1500)
    everything = [p for group in seen for p in group]
    expected = ~np.isin(pool.product_ids, np.array(everything, dtype=np.int64))
    assert pool.unseen(*seen).tolist() == expected.tolist()


@pytest.mark.parametrize(
    "categories",
    [frozenset({"Category 1"}), frozenset({"Category 0", "Category 4"}), frozenset({"Other"})],
)
def test_a_pools_category_mask_is_each_products_own_category(categories):
    pool = shop_pool(300)
    expected = [category in categories for category in pool.categories.tolist()]
    assert pool.in_categories(categories).tolist() == expected
    assert None in pool.categories.tolist()  # a product without a category is in none


def test_a_pool_made_without_the_hidden_products_is_the_pool_they_were_masked_from():
    everything = shop_pool(1500)
    hidden = frozenset(everything.product_ids[::7].tolist()) | {999_999}
    pool = shop_pool(1500, hidden)
    kept = ~np.isin(everything.product_ids, np.fromiter(hidden, np.int64))
    assert pool.product_ids.tolist() == everything.product_ids[kept].tolist()
    assert pool.new.tolist() == everything.new[kept].tolist()
    assert pool.fresh.tolist() == everything.fresh[kept].tolist()
    assert (pool.vectors != everything.vectors[kept]).nnz == 0
    assert pool.hidden == hidden
