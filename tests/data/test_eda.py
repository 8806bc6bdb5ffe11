"""EDA tables computed on a log whose answers are known."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.eda import (
    clicks_by_product,
    conversion_by_product,
    eda_report,
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


def test_clicks_by_product_ranks_the_most_clicked_first_and_ties_by_product_id():
    log = pd.DataFrame(
        [(1, 9, 0), (2, 9, 0), (1, 4, 0), (2, 4, 1), (3, 7, 0), (1, 2, 0), (3, 3, 0)],
        columns=["user_id", "product_clicked", "purchased"],
    )
    ranked = clicks_by_product(log)
    assert ranked.values.tolist() == [[4, 2, 1], [9, 2, 0], [2, 1, 0], [3, 1, 0], [7, 1, 0]]
    assert list(ranked.columns) == ["product_id", "clicks", "purchases"]


def test_conversion_lists_names_clicks_and_conversion_most_clicked_first():
    table = conversion_by_product(LOG, CATALOG)
    assert table[["product_id", "name", "clicks", "purchases"]].values.tolist() == [
        [1, "Lamp", 3, 1],
        [2, "Novel", 2, 2],
        [3, "Kettle", 1, 0],
    ]
    assert table["conversion"].tolist() == pytest.approx([1 / 3, 1.0, 0.0])


def test_without_a_catalog_products_are_listed_by_id_only():
    table = conversion_by_product(LOG)
    assert list(table.columns) == ["product_id", "clicks", "purchases", "conversion"]


def test_the_report_without_a_catalog_says_so_instead_of_naming_products():
    report = eda_report(LOG)
    assert "no catalog" in report
    assert "Lamp" not in report and "NaN" not in report


def test_the_report_shows_products_missing_from_the_catalog_by_id():
    report = eda_report(LOG, CATALOG[CATALOG["product_id"] != 3])
    assert "Lamp" in report
    assert "NaN" not in report and "None" not in report


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
