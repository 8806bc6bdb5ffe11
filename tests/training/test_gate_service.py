"""The quality gate as a running service shows it: the job, /model, the dashboard, metrics, the CLI.

The service starts on a simulated shop's first events (its first model goes
live without comparison), then the shop's later events arrive and the service
retrains a deliberately worse model: the same one fitted on shuffled events.
"""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.training import GatePolicy
from recsys.training.train import train_and_publish
from tests.builders import fit_on_shuffled_events, generate_shop_log, runtime_of


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    """The shop's first 2,250 events (with the catalog beside them), and the 750 after."""
    folder = tmp_path_factory.mktemp("shop")
    generate_shop_log(folder / "shop.csv")
    log = pd.read_csv(folder / "shop.csv")
    log.iloc[:6750].to_csv(folder / "first.csv", index=False)
    log.iloc[6750:].to_csv(folder / "later.csv", index=False)
    (folder / "first.products.csv").write_bytes((folder / "shop.products.csv").read_bytes())
    return folder / "first.csv", folder / "later.csv"


@pytest.fixture
def shop_app(any_app_factory, shop_files):
    """A service over the shop's first events whose later events have arrived, on each back-end."""
    first, later = shop_files
    app = any_app_factory(DATA_PATH=str(first), MODEL="itemknn")
    runtime_of(app).store.import_interactions(later)
    return app


def train_worse(app, monkeypatch) -> None:
    """Make the app's training fit its model on shuffled events, through the real gate."""
    runtime = runtime_of(app)

    def train(progress=False, force=False, **engine):
        policy = GatePolicy(runtime.settings.jobs.gate_tolerance, force=force)
        return train_and_publish(
            runtime.store,
            runtime.registry,
            runtime.training,
            progress,
            fitter=fit_on_shuffled_events,
            gate=policy,
        )

    monkeypatch.setattr(runtime, "train", train)


def retrain(client) -> dict:
    response = client.post("/admin/retrain")
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["job_id"]
    runtime_of(client.application).jobs.wait(job_id, timeout=60)
    return client.get(f"/admin/jobs/{job_id}").get_json()


def test_a_rejected_retrain_ends_rejected_with_both_figures(shop_app, monkeypatch):
    live = shop_app.test_client().get("/model").get_json()["version"]
    train_worse(shop_app, monkeypatch)
    job = retrain(shop_app.test_client())
    assert job["state"] == "rejected"
    assert job["error"] is None
    assert job["version"] != live
    assert job["gate"]["decision"] == "rejected"
    assert job["gate"]["live_version"] == live
    assert job["gate"]["candidate"] < job["gate"]["least"] <= job["gate"]["live"]
    assert job["gate"]["tolerance"] == 0.02
    assert job["gate"]["split"]["test_fraction"] == 0.2


def test_the_live_version_keeps_serving_after_a_rejection(shop_app, any_app_factory, monkeypatch):
    client = shop_app.test_client()
    live = client.get("/model").get_json()["version"]
    train_worse(shop_app, monkeypatch)
    retrain(client)

    assert client.get("/recommend?user_id=1").get_json()["model_version"] == live
    assert runtime_of(shop_app).refresh() is False
    restarted = any_app_factory(MODEL="itemknn").test_client()
    assert restarted.get("/recommend?user_id=1").get_json()["model_version"] == live


def test_model_shows_the_gates_last_decision(shop_app, monkeypatch):
    client = shop_app.test_client()
    train_worse(shop_app, monkeypatch)
    job = retrain(client)
    body = client.get("/model").get_json()
    assert body["gate"]["decision"] == "accepted"  # the live version's own record
    assert body["last_gate_decision"]["decision"] == "rejected"
    assert body["last_gate_decision"]["version"] == job["version"]
    assert body["last_gate_decision"]["candidate"] == job["gate"]["candidate"]
    assert body["last_gate_decision"]["live"] == job["gate"]["live"]


def test_the_dashboard_and_stats_show_the_rejection(shop_app, monkeypatch):
    client = shop_app.test_client()
    train_worse(shop_app, monkeypatch)
    job = retrain(client)
    page = client.get("/").get_data(as_text=True)
    assert "Last decision: <strong>rejected</strong>" in page
    assert job["version"] in page
    assert client.get("/stats").get_json()["gate"]["decision"] == "rejected"


def test_metrics_count_rejected_versions(shop_app, monkeypatch):
    def rejected_total(client) -> float:
        text = client.get("/metrics").get_data(as_text=True)
        line = next(
            x for x in text.splitlines() if x.startswith("recsys_model_versions_rejected_total")
        )
        return float(line.split()[-1])

    client = shop_app.test_client()
    before = rejected_total(client)
    train_worse(shop_app, monkeypatch)
    retrain(client)
    assert rejected_total(client) == before + 1


def test_cli_train_exits_1_and_names_both_figures_when_rejected(shop_app, monkeypatch):
    live = shop_app.test_client().get("/model").get_json()["version"]
    train_worse(shop_app, monkeypatch)
    result = shop_app.test_cli_runner().invoke(args=["train"])
    assert result.exit_code == 1, result.output
    assert "kept as rejected" in result.output
    assert "quality gate rejected: ndcg@10 " in result.output
    assert "`flask --app app train --force` publishes it anyway" in result.output
    assert runtime_of(shop_app).registry.versions()[0] == live


def test_cli_train_force_publishes_anyway(shop_app, monkeypatch):
    train_worse(shop_app, monkeypatch)
    result = shop_app.test_cli_runner().invoke(args=["train", "--force"])
    assert result.exit_code == 0, result.output
    assert "quality gate forced: ndcg@10 " in result.output
    newest = runtime_of(shop_app).registry.versions()[0]
    assert f"published {newest}" in result.output
    assert runtime_of(shop_app).refresh() is True
    assert shop_app.test_client().get("/model").get_json()["version"] == newest
