"""The EDA report folder: every chart a real PNG, summary.json the EDA functions' figures."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest

from recsys.cli.main import main
from recsys.data.catalog import load_catalog
from recsys.data.charts import CHART_NAMES, render_chart
from recsys.data.eda import (
    clicks_by_product,
    clicks_per_user,
    eda_summary,
    load_eda_log,
    long_tail_summary,
    overall_conversion,
    popularity_curve,
    ratings_as_interactions,
)
from recsys.data.interactions import load_interactions
from tests.builders import BUNDLED_LOG, ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A blank or broken canvas compresses to a few hundred bytes; a drawn chart is kilobytes.
MIN_CHART_BYTES = 5_000
MOVIELENS_RATINGS = """userId,movieId,rating,timestamp
1,10,4.0,964982703
1,20,3.0,964981247
2,10,5.0,964982224
2,30,2.5,964983815
3,10,1.0,964982931
"""
MOVIELENS_MOVIES = """movieId,title,genres
10,Heat (1995),Action|Crime
20,Sabrina (1995),Comedy|Romance
30,Casino (1995),(no genres listed)
"""


def png_size(data: bytes) -> tuple[int, int]:
    """Return a PNG's width and height from its IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def shop_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "shop"
    assert main(["eda", "--data", str(BUNDLED_LOG), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", CHART_NAMES)
def test_each_chart_of_the_shop_is_a_png_of_non_trivial_size(shop_report, name):
    data = (shop_report / f"{name}.png").read_bytes()
    width, height = png_size(data)
    assert (width, height) == (800, 480)
    assert len(data) > MIN_CHART_BYTES


def test_summary_json_equals_the_eda_functions_results(shop_report):
    log = load_interactions(BUNDLED_LOG)
    catalog = load_catalog(ROOT / "products.csv")
    written = json.loads((shop_report / "summary.json").read_text())
    assert written == eda_summary(log, catalog)
    # ... and those are the figures of the EDA tables themselves.
    ranked = clicks_by_product(log)
    assert written["interactions"] == len(log) == 3223
    assert written["users"] == log["user_id"].nunique()
    assert written["conversion"] == pytest.approx(overall_conversion(log), abs=1e-6)
    assert [p["product_id"] for p in written["most_clicked"]] == ranked["product_id"][:10].tolist()
    assert [p["clicks"] for p in written["most_clicked"]] == ranked["clicks"][:10].tolist()
    assert written["clicks_per_user"]["mean"] == pytest.approx(clicks_per_user(log)["mean"])
    assert written["long_tail"] == pytest.approx(long_tail_summary(log), abs=1e-6)
    assert set(written["categories"]["mean_affinity"]) == set(catalog["category"])


def test_the_html_report_embeds_every_chart_and_the_key_numbers(shop_report):
    html = (shop_report / "report.html").read_text()
    for name in CHART_NAMES:
        assert f'<img src="{name}.png"' in html
    assert "3223" in html
    assert "25.3%" in html  # the bundled log's conversion
    assert "Silver Atlas" in html  # its most clicked product


def test_the_long_tail_curve_reaches_all_clicks_at_the_last_product():
    log = pd.DataFrame(
        [(1, 1, 0), (2, 1, 0), (3, 1, 1), (1, 2, 0), (2, 3, 0)],
        columns=["user_id", "product_clicked", "purchased"],
    )
    curve = popularity_curve(log)
    assert curve["click_share"].tolist() == pytest.approx([0.6, 0.8, 1.0])
    tail = long_tail_summary(log)
    assert tail["head_products"] == 1
    assert tail["head_click_share"] == pytest.approx(0.6)
    assert tail["products_for_click_share"] == 2


def test_movielens_ratings_are_read_as_interactions_with_liked_as_purchase(tmp_path):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(MOVIELENS_RATINGS)
    (tmp_path / "movies.csv").write_text(MOVIELENS_MOVIES)
    log, catalog, note = load_eda_log(ratings)
    assert log.values.tolist() == [[1, 10, 1], [1, 20, 0], [2, 10, 1], [2, 30, 0], [3, 10, 0]]
    assert note is not None and "4 or more" in note
    assert catalog is not None
    assert catalog["category"].tolist()[:2] == ["Action", "Comedy"]
    assert catalog["category"].isna().tolist() == [False, False, True]


def test_the_report_of_movielens_ratings_has_every_chart(tmp_path, capsys):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(MOVIELENS_RATINGS)
    (tmp_path / "movies.csv").write_text(MOVIELENS_MOVIES)
    out = tmp_path / "report"
    assert main(["eda", "--data", str(ratings), "--out", str(out)]) == 0
    assert "wrote 5 charts" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conversion"] == pytest.approx(2 / 5)
    assert summary["most_clicked"][0]["name"] == "Heat (1995)"
    for name in CHART_NAMES:
        png_size((out / f"{name}.png").read_bytes())
    assert "a rating of 4 or more counts as a purchase" in (out / "report.html").read_text()


def test_a_log_without_a_catalog_gets_no_heatmap_and_says_why(tmp_path, write_csv):
    log = write_csv("user_id,product_clicked,purchased\n1,1,0\n1,2,1\n2,1,1\n")
    out = tmp_path / "report"
    assert main(["eda", "--data", str(log), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [
        "clicks_per_user.png",
        "conversion.png",
        "long_tail.png",
        "most_clicked.png",
    ]
    assert "No catalog names the products' categories" in (out / "report.html").read_text()


def test_eda_without_out_still_prints_the_text_report(capsys):
    assert main(["eda", "--data", str(BUNDLED_LOG)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Interactions: 3223 clicks by 100 users on 20 products")


def test_an_out_path_that_is_a_file_is_refused(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["eda", "--data", str(BUNDLED_LOG), "--out", str(taken)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_an_empty_log_cannot_be_drawn():
    empty = pd.DataFrame(columns=["user_id", "product_clicked", "purchased"])
    with pytest.raises(ValueError, match="nothing to draw"):
        render_chart("most_clicked", empty, None)


def test_ratings_as_interactions_keeps_one_click_per_rating():
    feedback = pd.DataFrame({"user_id": [1, 2], "product_id": [5, 5], "rating": [3.5, 4.0]})
    assert ratings_as_interactions(feedback)["purchased"].tolist() == [0, 1]
