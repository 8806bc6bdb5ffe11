"""Large logs at a small size: the vectorised simulator, chunked files, streaming import."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.cli.main import main
from recsys.data.interactions import INTERACTION_COLUMNS
from recsys.data.log_files import iter_log, write_log
from recsys.data.simulate import CATEGORIES, SimulationConfig, simulate_shop
from recsys.data.simulate_large import make_large_catalog, simulate_large
from recsys.errors import DataFileError
from recsys.store.bulk import import_log, read_interactions
from tests.builders import SMALL_CATALOG, generate_small_log, runtime_of


@pytest.fixture(scope="module")
def shop():
    return simulate_large(SimulationConfig(users=3000, products=400, seed=3), events=60_000)


def favourite_share(simulated, catalog: pd.DataFrame, log: pd.DataFrame) -> float:
    """Return the share of clicks on products of the clicking user's favourite category."""
    category = catalog["category"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    favourite = simulated.taste.argmax(axis=1)
    users = log["user_id"].to_numpy() - 1
    return float((category[log["product_clicked"].to_numpy() - 1] == favourite[users]).mean())


# -- the large simulator ------------------------------------------------------


def test_the_large_simulator_makes_exactly_the_events_asked_for_with_ids_in_range(shop):
    log = shop.interactions
    assert len(log) == 60_000
    assert log["user_id"].between(1, 3000).all()
    assert log["product_clicked"].between(1, 400).all()
    assert set(log["purchased"].unique()) <= {0, 1}
    assert log["user_id"].is_monotonic_increasing, "rows stay grouped by user"


def test_the_same_seed_gives_the_same_log_and_another_seed_another():
    config = SimulationConfig(users=500, products=50, seed=11)
    first = simulate_large(config, events=5000).interactions
    again = simulate_large(config, events=5000).interactions
    other = simulate_large(SimulationConfig(users=500, products=50, seed=12), events=5000)
    assert first.equals(again)
    assert not first.equals(other.interactions)


def test_the_large_catalog_has_unique_faker_names_beyond_colour_noun_pairs():
    catalog = make_large_catalog(6000, seed=1)
    assert catalog["name"].is_unique
    assert catalog["product_id"].tolist() == list(range(1, 6001))
    assert set(catalog["category"]) == set(CATEGORIES)
    assert (catalog["price"] > 0).all()


def test_users_click_mostly_their_favourite_category_as_in_the_small_simulator(shop):
    config = SimulationConfig(users=3000, products=400, seed=3)
    small = simulate_shop(config)
    large_share = favourite_share(shop, shop.catalog, shop.interactions)
    small_share = favourite_share(small, small.catalog, small.interactions)
    assert large_share > 0.5
    assert abs(large_share - small_share) < 0.05


def test_purchases_rise_with_taste(shop):
    category = shop.catalog["category"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    log = shop.interactions
    users = log["user_id"].to_numpy() - 1
    in_favourite = category[log["product_clicked"].to_numpy() - 1] == shop.taste.argmax(1)[users]
    bought = log["purchased"].to_numpy()
    assert bought[in_favourite].mean() > 2 * bought[~in_favourite].mean()


def test_popularity_is_long_tailed(shop):
    clicks = np.sort(np.bincount(shop.interactions["product_clicked"], minlength=401)[1:])[::-1]
    assert clicks[:40].sum() > 0.5 * clicks.sum(), "the top 10% of products get most clicks"


def test_generate_with_events_writes_a_parquet_log_and_its_catalog(tmp_path, capsys):
    out = tmp_path / "big.parquet"
    status = main(
        ["generate", "--users", "300", "--products", "40", "--events", "2500", "--out", str(out)]
    )
    assert status == 0, capsys.readouterr().err
    chunks = list(iter_log(out, chunk_rows=1000))
    assert [len(c.frame) for c in chunks] == [1000, 1000, 500]
    catalog = pd.read_csv(tmp_path / "big.products.csv")
    assert len(catalog) == 40
    assert "wrote 2500 interactions of 300 users" in capsys.readouterr().out


# -- chunked files ------------------------------------------------------------


def test_a_bad_line_past_the_first_chunk_is_named_by_its_file_line(tmp_path):
    path = tmp_path / "log.csv"
    lines = ["user_id,product_clicked,purchased"] + ["1,2,0"] * 25 + ["1,2,7"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"line 27: purchased must be 0 or 1, got '7'"):
        list(iter_log(path, chunk_rows=10))


def test_a_bad_parquet_value_is_named_by_its_row(tmp_path):
    path = tmp_path / "log.parquet"
    write_log(
        pd.DataFrame({"user_id": [1, 0], "product_clicked": [1, 1], "purchased": [0, 1]}), path
    )
    with pytest.raises(DataFileError, match="row 2: user_id must be an integer from 1"):
        list(iter_log(path))


# -- streaming import ---------------------------------------------------------


def small_log(rows: int = 2500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 300, rows),
            "product_clicked": rng.integers(1, 6, rows),
            "purchased": rng.integers(0, 2, rows),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_streamed_import_writes_every_row_in_file_order(catalog_store, tmp_path, suffix):
    log = small_log()
    path = tmp_path / f"log{suffix}"
    write_log(log, path)
    assert import_log(catalog_store.engine, path, chunk_rows=700) == len(log)
    stored = catalog_store.interactions_frame()
    assert stored[list(INTERACTION_COLUMNS)].equals(log.astype("int64"))
    assert stored["type"].tolist() == ["purchase" if p else "click" for p in log["purchased"]]
    assert catalog_store.counts().users == log["user_id"].nunique()


def test_a_streamed_import_adds_to_what_the_store_has(catalog_store, tmp_path):
    path = tmp_path / "log.parquet"
    write_log(small_log(), path)
    import_log(catalog_store.engine, path)
    import_log(catalog_store.engine, path, append=True)
    assert catalog_store.counts().interactions == 5000


def test_a_streamed_file_imported_before_is_refused_without_append(catalog_store, tmp_path):
    path = tmp_path / "log.parquet"
    write_log(small_log(), path)
    import_log(catalog_store.engine, path)
    with pytest.raises(DataFileError, match=r"imported on .* pass --append"):
        import_log(catalog_store.engine, path)
    assert catalog_store.counts().interactions == 2500


def test_an_unknown_product_in_a_late_chunk_writes_nothing(catalog_store, tmp_path):
    log = small_log()
    log.loc[2000, "product_clicked"] = 99
    path = tmp_path / "log.csv"
    write_log(log, path)
    with pytest.raises(DataFileError, match=r"line 2002: unknown product_id 99"):
        import_log(catalog_store.engine, path, chunk_rows=500)
    assert catalog_store.counts().interactions == 0
    assert catalog_store.counts().users == 0


def test_timestamps_of_a_file_become_the_interactions_times(catalog_store, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,product_clicked,purchased,timestamp\n1,2,0,2026-01-02T03:04:05Z\n1,3,1,\n"
    )
    import_log(catalog_store.engine, path)
    history = catalog_store.user_interactions(1, limit=10)
    times = {entry.product_id: entry.created_at for entry in history}
    assert times[2] == pd.Timestamp("2026-01-02 03:04:05").to_pydatetime()
    assert times[3] > times[2], "a missing time is the time of the import"


def test_paged_reads_return_the_log_as_the_store_holds_it(catalog_store, tmp_path):
    path = tmp_path / "log.parquet"
    write_log(small_log(3000), path)
    import_log(catalog_store.engine, path)
    paged = read_interactions(catalog_store.engine, page_rows=1000)
    assert paged.equals(catalog_store.interactions_frame())


def test_the_import_command_streams_a_parquet_file(app_factory, tmp_path):
    app = app_factory()
    runtime_store = app.extensions["recsys.runtime"].store
    before = runtime_store.counts().interactions
    path = tmp_path / "more.parquet"
    log = small_log(1000)
    log["product_clicked"] = log["product_clicked"].clip(upper=SMALL_CATALOG["product_id"].max())
    write_log(log, path)
    result = app.test_cli_runner().invoke(args=["import-interactions", str(path)])
    assert result.exit_code == 0, result.output
    assert f"imported {len(log)} interactions" in result.output
    assert runtime_store.counts().interactions == before + len(log)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"user_id,product_clicked,purchased\n1,2,0\n", "not a Parquet file: "),
        (b"PAR1 a footer that lies PAR1", "not a Parquet file: "),
        (None, "file not found"),
    ],
    ids=["a CSV named .parquet", "a damaged footer", "no file"],
)
def test_the_import_command_names_a_parquet_file_it_cannot_read_in_one_line(
    app_factory, tmp_path, content, problem
):
    path = tmp_path / "log.parquet"
    if content is not None:
        path.write_bytes(content)
    result = app_factory().test_cli_runner().invoke(args=["import-interactions", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {path}: {problem}")
    assert result.output.endswith(" (nothing was imported)\n")


# -- training from a log file -----------------------------------------------------


def test_train_publishes_a_log_files_model_that_a_server_serves(tmp_path, capsys, app_factory):
    log = tmp_path / "log.parquet"
    generate_small_log(log)
    models = tmp_path / "models"
    assert main(["train", "--data", str(log), "--model-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "(als, local engine)" in out and "trained on 3000 interactions" in out
    server = app_factory(init=False, MODEL="als", MODEL_DIR=str(models))
    assert runtime_of(server).load_live_model()
    answer = server.test_client().get("/recommend?user_id=1").get_json()
    assert answer["strategy"] == "als"
    assert answer["recommendations"][0]["name"], "the catalog beside the log names products"
