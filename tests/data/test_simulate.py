"""The simulated shop is deterministic and behaves like a learnable shop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.interactions import write_interactions
from recsys.data.simulate import CATEGORIES, SimulationConfig, simulate_shop
from tests.builders import BUNDLED_LOG


@pytest.fixture(scope="module")
def shop():
    return simulate_shop()


def test_the_bundled_log_is_exactly_the_default_seed_output(tmp_path):
    out = tmp_path / "regenerated.csv"
    write_interactions(simulate_shop().interactions, out)
    assert out.read_bytes() == BUNDLED_LOG.read_bytes()


def test_the_same_seed_gives_identical_output():
    first, second = simulate_shop(SimulationConfig(seed=7)), simulate_shop(SimulationConfig(seed=7))
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.catalog, second.catalog)
    pd.testing.assert_frame_equal(first.users, second.users)


def test_different_seeds_give_different_logs():
    first, second = simulate_shop(SimulationConfig(seed=1)), simulate_shop(SimulationConfig(seed=2))
    assert not first.interactions.equals(second.interactions)


def test_the_default_shop_has_100_users_and_20_products(shop):
    assert len(shop.users) == 100 and len(shop.catalog) == 20
    assert set(shop.interactions["user_id"]) <= set(range(1, 101))
    assert set(shop.interactions["product_clicked"]) <= set(range(1, 21))
    assert set(shop.interactions["purchased"]) == {0, 1}


def test_the_catalog_has_unique_names_known_categories_and_positive_prices(shop):
    assert shop.catalog["name"].is_unique
    assert set(shop.catalog["category"]) <= set(CATEGORIES)
    assert (shop.catalog["price"] > 0).all()


def test_users_have_faker_profiles(shop):
    assert shop.users["email"].str.contains("@").all()
    assert shop.users["name"].str.len().gt(3).all()
    assert shop.users["city"].str.len().gt(1).all()


def test_product_popularity_is_long_tailed(shop):
    clicks = np.sort(shop.interactions["product_clicked"].value_counts().to_numpy())[::-1]
    top_fifth_share = clicks[: len(clicks) // 5].sum() / clicks.sum()
    # A flat catalog would give the top fifth 20% of the clicks.
    assert top_fifth_share > 0.27
    assert clicks[0] > 2 * clicks[-1]


def _category_of_clicks(shop):
    categories = shop.catalog.set_index("product_id")["category"]
    return shop.interactions["product_clicked"].map(categories)


def test_users_click_mostly_in_their_favourite_category(shop):
    favourite = pd.Series(np.array(CATEGORIES)[shop.taste.argmax(axis=1)], index=range(1, 101))
    in_favourite = _category_of_clicks(shop) == shop.interactions["user_id"].map(favourite)
    # With five categories, taste-blind clicking would put about 20% there.
    assert in_favourite.mean() > 0.5


def test_purchase_rate_rises_with_taste(shop):
    category_index = {c: i for i, c in enumerate(CATEGORIES)}
    columns = _category_of_clicks(shop).map(category_index).to_numpy()
    taste = shop.taste[shop.interactions["user_id"].to_numpy() - 1, columns]
    purchased = shop.interactions["purchased"].to_numpy()
    low, high = taste < np.quantile(taste, 0.33), taste > np.quantile(taste, 0.67)
    assert purchased[high].mean() > purchased[low].mean() + 0.15


def test_dearer_products_convert_less_within_a_category():
    shop = simulate_shop(SimulationConfig(users=2000, seed=3))
    clicks = shop.interactions.merge(shop.catalog, left_on="product_clicked", right_on="product_id")
    per_product = clicks.groupby(["category", "product_id"]).agg(
        price=("price", "first"), conversion=("purchased", "mean")
    )
    correlations = per_product.groupby("category").apply(
        lambda g: g["price"].corr(g["conversion"], method="spearman")
    )
    assert correlations.dropna().mean() < 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("users", 0, "users must be at least 1"),
        ("products", 0, "products must be at least 1"),
        ("seed", -1, "seed must be a non-negative integer"),
    ],
)
def test_an_impossible_config_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**{field: value})
