"""The content model: products alike by name, category and price band; a user by their products."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.content import ContentModel

CATALOG = pd.DataFrame(
    {
        "product_id": [4, 1, 2, 3, 5],
        "name": ["Navy Cushion", "Gray Headphones", "Black Headphones", "Olive Perfume", None],
        "category": ["Home", "Electronics", "Electronics", "Beauty", None],
        "price": [36.0, 105.0, 99.0, 11.7, None],
    }
)


@pytest.fixture(scope="module")
def model():
    return ContentModel.fit(CATALOG)


def scores(model: ContentModel, history: list[int]) -> dict[int, float]:
    values = model.similarity(np.array(history), np.ones(len(history)))
    return dict(zip(model.product_ids.tolist(), values.tolist(), strict=True))


def test_products_are_kept_in_ascending_id_order(model):
    assert model.product_ids.tolist() == [1, 2, 3, 4, 5]


def test_a_product_of_the_same_category_and_kind_is_the_most_similar(model):
    similar = scores(model, [1])
    assert similar[2] > 0.5
    assert similar[2] > similar[3] and similar[2] > similar[4]


def test_a_product_is_perfectly_similar_to_itself(model):
    assert scores(model, [3])[3] == pytest.approx(1.0)


def test_a_product_the_catalog_knows_nothing_of_is_similar_to_nothing(model):
    assert scores(model, [1, 3, 4])[5] == 0.0


@pytest.mark.parametrize("history", [[], [99]], ids=["no products", "products not in the catalog"])
def test_a_user_without_catalog_products_is_similar_to_nothing(model, history):
    assert set(scores(model, history).values()) == {0.0}


def test_heavier_engagement_pulls_the_user_toward_its_product(model):
    toward_home = model.similarity(np.array([1, 4]), np.array([1.0, 5.0]))
    toward_tech = model.similarity(np.array([1, 4]), np.array([5.0, 1.0]))
    assert toward_home[3] > toward_tech[3] and toward_tech[1] > toward_home[1]


def test_only_the_asked_rows_are_scored(model):
    whole = model.similarity(np.array([1]), np.ones(1))
    assert model.similarity(np.array([1]), np.ones(1), np.array([1, 3])).tolist() == [
        whole[1],
        whole[3],
    ]


@pytest.mark.parametrize(
    "catalog",
    [
        CATALOG.assign(name=None, category=None, price=None),
        CATALOG[["product_id", "name", "category"]],
        CATALOG.iloc[:0],
    ],
    ids=["nothing known", "no price column", "empty catalog"],
)
def test_sparse_catalogs_fit_and_score_without_error(catalog):
    fitted = ContentModel.fit(catalog)
    assert len(fitted.similarity(np.array([1]), np.ones(1))) == len(catalog)


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        (CATALOG.drop(columns="product_id"), "lacks the product_id column"),
        (pd.concat([CATALOG, CATALOG.iloc[:1]]), "repeats a product_id"),
    ],
)
def test_a_catalog_without_usable_ids_is_refused(catalog, message):
    with pytest.raises(ValueError, match=message):
        ContentModel.fit(catalog)


@pytest.mark.parametrize("products", [20, 3000])
def test_a_users_taste_from_padded_rows_is_the_sparse_sums_bits(products):
    rng = np.random.default_rng(products)
    words = ["Navy", "Gray", "Cushion", "Lamp", "Mug", "Deluxe", "Travel", "Set"]
    names = [" ".join(rng.choice(words, rng.integers(1, 5))) for _ in range(products)]
    # One name far longer than the rest: with 3,000 products, padding to it is refused.
    names[0] = " ".join(f"word{i}" for i in range(60))
    catalog = pd.DataFrame(
        {
            "product_id": np.arange(1, products + 1),
            "name": names,
            "category": [f"Category {i % 4}" for i in range(products)],
            "price": rng.uniform(1, 100, products),
        }
    )
    model = ContentModel.fit(catalog)
    assert (model.row_features is None) == (products == 3000)
    history = rng.choice(np.arange(1, products + 3), 12, replace=False)  # two ids unknown
    weights = rng.uniform(-5, 6, 12)
    positions = np.searchsorted(model.product_ids, history)
    found = positions < products
    sparse = np.asarray(model.vectors[positions[found]].T @ weights[found]).ravel()
    taste = model.taste(history, weights)
    assert np.allclose(taste * np.linalg.norm(sparse), sparse)
    rows = positions[found]
    summed = model._summed_rows(rows, weights[found], model.vectors.shape[1])
    norm = np.sqrt(summed.dot(summed))
    assert np.array_equal(taste, summed / norm)
