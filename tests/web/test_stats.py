"""GET /stats: the dashboard's numbers as JSON, equal to the EDA report's summary."""

from __future__ import annotations

from recsys.data.catalog import load_catalog
from recsys.data.eda import eda_summary
from recsys.data.interactions import load_interactions
from recsys.store.migrate import upgrade_to_head
from recsys.web.schemas import Stats
from tests.builders import BUNDLED_LOG, ROOT, runtime_of


def test_stats_data_equals_the_eda_summary_of_the_same_log(bundled_client):
    body = bundled_client.get("/stats").get_json()
    expected = eda_summary(load_interactions(BUNDLED_LOG), load_catalog(ROOT / "products.csv"))
    assert body["data"] == expected


def test_stats_matches_its_documented_shape(bundled_client):
    response = bundled_client.get("/stats")
    assert response.status_code == 200
    Stats.model_validate(response.get_json())


def test_stats_names_the_live_model_and_its_offline_metrics(bundled_client):
    model = bundled_client.get("/stats").get_json()["model"]
    live = bundled_client.get("/model").get_json()
    assert model["version"] == live["version"]
    assert model["model_type"] == live["model_type"] == "svd"
    assert model["trained_at"] == live["trained_at"]
    assert model["metrics"] == live["metrics"]
    assert model["candidates"] is None  # a configured model, not an automatic selection


def test_stats_lists_the_candidates_of_an_automatic_selection(app_factory):
    client = app_factory(MODEL="auto").test_client()
    model = client.get("/stats").get_json()["model"]
    assert model["selected_by"] == "auto"
    assert set(model["candidates"]) == {"popular", "itemknn", "svd", "als", "ease"}
    assert model["model_type"] in model["candidates"]
    assert model["selection_reason"].startswith(f"{model['model_type']} had the highest")


def test_stats_of_an_empty_store_without_a_model(app_factory):
    app = app_factory(init=False, DATA_PATH="")
    upgrade_to_head(runtime_of(app).store.engine)
    body = app.test_client().get("/stats").get_json()
    assert body["model"] is None
    assert body["data"]["interactions"] == 0
    assert body["data"]["conversion"] is None
    assert body["data"]["most_clicked"] == []
    Stats.model_validate(body)


def test_stats_needs_the_read_role(app_factory):
    from tests.web.test_auth import API_KEYS, KEYS

    client = app_factory(API_KEYS=API_KEYS).test_client()
    assert client.get("/stats").status_code == 401
    assert client.get("/stats", headers={"X-API-Key": KEYS["ingest"]}).status_code == 403
    assert client.get("/stats", headers={"X-API-Key": KEYS["read"]}).status_code == 200
