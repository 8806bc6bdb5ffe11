"""EDA tables computed on a log whose answers are known."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.eda import (
    conversion_by_product,
    most_clicked,
    overall_conversion,
    top_category_per_user,
    user_category_affinity,
)

CATALOG = pd.DataFrame(
    {
        "product_id": [1, 2, 3],
        "name": ["Lamp", "Novel", "Kettle"],
        "category": ["Home", "Books", "Home"],
    }
)
LOG = pd.DataFrame(
    [(1, 1, 1), (1, 1, 0), (1, 3, 0), (2, 2, 1), (2, 2, 1), (2, 1, 0)],
    columns=["user_id", "product_clicked", "purchased"],
)


def test_most_clicked_lists_names_clicks_and_conversion():
    table = most_clicked(LOG, CATALOG, n=2)
    assert table[["product_id", "name", "clicks", "purchases"]].values.tolist() == [
        [1, "Lamp", 3, 1],
        [2, "Novel", 2, 2],
    ]
    assert table["conversion"].tolist() == pytest.approx([1 / 3, 1.0])


def test_conversion_covers_every_clicked_product():
    assert set(conversion_by_product(LOG, CATALOG)["product_id"]) == {1, 2, 3}


def test_overall_conversion_is_the_share_of_clicks_bought():
    assert overall_conversion(LOG) == pytest.approx(3 / 6)


def test_affinity_rows_are_click_shares_per_category():
    affinity = user_category_affinity(LOG, CATALOG)
    assert affinity.loc[1, "Home"] == 1.0
    assert affinity.loc[2].to_dict() == pytest.approx({"Books": 2 / 3, "Home": 1 / 3})


def test_each_user_has_a_top_category():
    top = top_category_per_user(user_category_affinity(LOG, CATALOG)).set_index("user_id")
    assert top["top_category"].to_dict() == {1: "Home", 2: "Books"}


def test_conversion_of_an_empty_log_is_an_error():
    with pytest.raises(ValueError, match="no interactions"):
        overall_conversion(LOG.iloc[:0])
