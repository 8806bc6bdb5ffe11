"""MODEL=auto: the champion is the best candidate by NDCG@k, a tie goes to the cheaper."""

import inspect

import pandas as pd
import pytest

from recsys.config import Settings, SettingsError
from recsys.evaluation.champion import choose_champion, choose_on_validation
from recsys.models import AUTO_CANDIDATES
from recsys.training.train import TrainingSettings, train_and_publish
from tests.builders import runtime_of

COST = ("popular", "itemknn", "svd", "als", "ease")


def test_the_candidate_with_the_highest_ndcg_wins():
    candidates = {"popular": {"ndcg@10": 0.15}, "als": {"ndcg@10": 0.27}, "ease": {"ndcg@10": 0.31}}
    choice = choose_champion(candidates, "ndcg@10", COST)
    assert choice.champion == "ease"
    assert "0.3100 against 0.2700 for als" in choice.reason


def test_a_tie_goes_to_the_cheaper_model():
    candidates = {"ease": {"ndcg@10": 0.5}, "svd": {"ndcg@10": 0.5}, "popular": {"ndcg@10": 0.1}}
    choice = choose_champion(candidates, "ndcg@10", COST)
    assert choice.champion == "svd"
    assert "tied ease" in choice.reason


def test_figures_equal_once_rounded_as_reported_count_as_a_tie():
    candidates = {"ease": {"ndcg@10": 0.50004}, "als": {"ndcg@10": 0.50001}}
    assert choose_champion(candidates, "ndcg@10", COST).champion == "als"


def test_a_candidate_without_the_metric_cannot_win():
    candidates = {"ease": {}, "popular": {"ndcg@10": 0.1}}
    assert choose_champion(candidates, "ndcg@10", COST).champion == "popular"


def test_no_candidate_with_the_metric_is_an_error():
    with pytest.raises(ValueError, match="no candidate has the metric 'ndcg@10'"):
        choose_champion({"ease": {}}, "ndcg@10", COST)


def test_auto_candidates_are_every_registered_model_cheapest_first():
    assert AUTO_CANDIDATES[0] == "popular"
    assert sorted(AUTO_CANDIDATES) == sorted(COST)


def test_the_model_setting_accepts_auto_and_names_it_when_refusing():
    assert Settings.load({}, {"MODEL": "auto"}, "instance").training.model == "auto"
    with pytest.raises(SettingsError, match="ease, itemknn, popular, popularity, ranker, svd"):
        Settings.load({}, {"MODEL": "best"}, "instance")


def test_auto_training_serves_the_best_candidate_on_validation_and_records_all(app_factory):
    app = app_factory(MODEL="auto")
    runtime = runtime_of(app)
    meta = runtime.registry.load_latest(model_type="auto").metadata
    candidates = meta.selection["candidates"]
    assert meta.selected_by == "auto"
    assert sorted(candidates) == sorted(AUTO_CANDIDATES)
    best = max(candidates.values(), key=lambda m: m["ndcg@10"])["ndcg@10"]
    assert candidates[meta.model_type]["ndcg@10"] == best
    assert meta.selection["measured_on"].startswith("validation rows")
    # The published figures are the champion's on the holdout's test rows, which
    # the choice never read: fewer training rows made the candidates' figures.
    assert meta.metrics["train_rows"] > candidates[meta.model_type]["ranked_users"] >= 1
    assert "ndcg@10" in meta.metrics
    body = app.test_client().get("/model").get_json()
    assert body["model_type"] == meta.model_type
    assert body["selected_by"] == "auto"
    assert body["selection"]["reason"].startswith(meta.model_type)


def test_the_champion_choice_reads_the_training_rows_only():
    train = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 3, 3, 3],
            "product_id": [1, 2, 3, 1, 2, 4, 2, 3, 4],
            "rating": [5.0] * 9,
        }
    )
    seen: list[pd.DataFrame] = []

    def measure(name, part):
        seen.extend([part.train, part.test])
        return {"ndcg@10": {"popular": 0.1, "svd": 0.2}[name]}

    choice = choose_on_validation(train, ["popular", "svd"], measure, "ndcg@10")
    assert choice.champion == "svd" and choice.reason.endswith("(on validation)")
    pairs = {tuple(row) for frame in seen for row in frame[["user_id", "product_id"]].values}
    assert pairs <= {tuple(row) for row in train[["user_id", "product_id"]].values}
    assert "test" not in inspect.signature(choose_on_validation).parameters


def test_on_the_global_cut_each_candidate_is_measured_on_three_windows_and_averaged():
    train = pd.DataFrame(
        {
            "user_id": [1, 2, 3] * 20,
            "product_id": [p % 7 + 1 for p in range(60)],
            "rating": [5.0] * 60,
            "timestamp": range(60),
        }
    )
    windows: list[int] = []

    def measure(name, part):
        windows.append(part.facts["window"])
        figure = {"popular": [0.3, 0.1, 0.1], "svd": [0.2, 0.2, 0.2]}[name][part.facts["window"]]
        return {"ndcg@10": figure, "model": name}

    choice = choose_on_validation(train, ["popular", "svd"], measure, "ndcg@10", "time-global")
    assert windows == [0, 1, 2, 0, 1, 2]
    # popular wins the latest window alone, svd the mean.
    assert choice.champion == "svd"
    assert choice.candidates["popular"] == {"ndcg@10": pytest.approx(0.5 / 3), "model": "popular"}


def test_a_retrain_can_change_the_champion(app_factory):
    app = app_factory(MODEL="auto")
    runtime = runtime_of(app)
    first = runtime.registry.load_latest(model_type="auto").metadata
    # The same data with popularity made the only candidate: the champion changes.
    settings = TrainingSettings(model="auto", candidates=("popular",))
    second = train_and_publish(runtime.store, runtime.registry, settings)
    assert second.model_type == "popular" != first.model_type
    assert runtime.refresh()
    assert app.test_client().get("/model").get_json()["model_type"] == "popular"


def test_auto_artifacts_are_not_served_for_a_configured_model_and_back(app_factory):
    runtime = runtime_of(app_factory(MODEL="auto"))
    auto_version = runtime.registry.load_latest(model_type="auto").metadata.version
    svd = train_and_publish(runtime.store, runtime.registry, TrainingSettings(model="svd"))
    assert runtime.registry.load_latest(model_type="svd").metadata.version == svd.version
    assert runtime.registry.load_latest(model_type="auto").metadata.version == auto_version
