"""EASE's recency through the API: a visitor's latest events steer their list."""

import numpy as np
import pytest

from recsys.store.bulk import read_interactions
from recsys.training import train as train_module
from recsys.training.gate import GatePolicy
from recsys.training.train import TrainingSettings, live_reads_times, train_and_publish
from tests.builders import listed, runtime_of


def visit(client, user_id: int, products: list[int]) -> None:
    """Record one click on each product, a minute apart, in the order given."""
    events = [
        {
            "user_id": user_id,
            "product_id": p,
            "purchased": 0,
            "timestamp": f"2026-11-29T10:{m:02d}:00Z",
        }
        for m, p in enumerate(products)
    ]
    assert client.post("/interactions", json=events).status_code == 201


@pytest.mark.parametrize(("recency", "same_lists"), [(0.5, False), (0.0, True)])
def test_two_visitors_with_the_same_clicks_in_opposite_orders_differ_only_with_recency(
    app_factory, tmp_path, recency, same_lists
):
    params = tmp_path / "params.json"
    params.write_text(f'{{"ease": {{"l2": 50, "recency": {recency}}}}}')
    client = app_factory(MODEL="ease", MODEL_PARAMS_PATH=str(params)).test_client()
    products = [1, 7, 15]
    visit(client, 900_001, products)
    visit(client, 900_002, products[::-1])
    first, second = (client.get(f"/recommend?user_id={u}&n=5") for u in (900_001, 900_002))
    assert first.status_code == second.status_code == 200
    assert first.get_json()["strategy"] == "ease"
    assert (listed(first) == listed(second)) is same_lists


def test_the_latest_click_is_the_strongest_reason_when_recency_is_short(app_factory, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"ease": {"l2": 50, "recency": 0.25}}')
    client = app_factory(MODEL="ease", MODEL_PARAMS_PATH=str(params)).test_client()
    visit(client, 900_003, [1, 7, 15])
    body = client.get("/recommend?user_id=900003&n=3&explain=true").get_json()
    assert [item["because"][0]["product_id"] for item in body["recommendations"]] == [15, 15, 15]


def test_a_retrained_ease_with_recency_scores_an_unchanged_user_as_their_training_row(
    app_factory, tmp_path
):
    params = tmp_path / "params.json"
    params.write_text('{"ease": {"l2": 50, "recency": 0.5}}')
    app = app_factory(MODEL="ease", MODEL_PARAMS_PATH=str(params))
    client = app.test_client()
    visit(client, 900_004, [1, 7, 15, 3])
    runtime = runtime_of(app)
    settings = TrainingSettings(model="ease", model_params={"l2": 50.0, "recency": 0.5})
    train_and_publish(runtime.store, runtime.registry, settings)
    assert runtime.refresh()
    version = runtime.service.live.current()
    model = version.model
    (inner,) = np.flatnonzero(model.user_ids == 900_004)
    folded = model._score_profile(
        *model.profile_items(version.profile(runtime.store.user_history(900_004)))
    )
    assert np.array_equal(folded, model._score(np.array([inner]))[0])


def test_the_gate_reads_the_times_when_the_live_version_weighs_recency(
    app_factory, tmp_path, monkeypatch
):
    params = tmp_path / "params.json"
    params.write_text('{"ease": {"l2": 50, "recency": 0.5}}')
    runtime = runtime_of(app_factory(MODEL="ease", MODEL_PARAMS_PATH=str(params)))
    assert live_reads_times(runtime.registry, "ease")
    assert not live_reads_times(runtime.registry, "als")
    read = []

    def reading(engine, **kwargs):
        read.append(kwargs["times"])
        return read_interactions(engine, **kwargs)

    monkeypatch.setattr(train_module, "read_interactions", reading)
    # Recency turned off: the candidate needs no times, the live version it is judged against does.
    plain = TrainingSettings(model="ease", model_params={"l2": 50.0})
    train_and_publish(runtime.store, runtime.registry, plain, gate=GatePolicy(min_users=1))
    train_and_publish(runtime.store, runtime.registry, plain)
    assert read == [True, False]
