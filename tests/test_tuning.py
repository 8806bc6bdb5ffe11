"""Hyper-parameter search and the parameter files the service trains with."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys.data.loaders import simulated_dataset
from recsys.errors import DataFileError
from recsys.evaluation.params import (
    load_model_params,
    model_factory,
    save_model_params,
)
from recsys.evaluation.splits import holdout_split
from recsys.evaluation.tuning import tune
from recsys.models import canonical_model_name
from recsys.models.als import ALSRecommender
from recsys.models.svd import SVDRecommender


def taste_feedback(seed=0):
    """Return 60 users in two taste groups over 12 products, with 1-5 ratings."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, 61):
        own = range(1, 7) if user <= 30 else range(7, 13)
        other = range(7, 13) if user <= 30 else range(1, 7)
        rows += [(user, int(p), float(rng.integers(4, 6))) for p in rng.choice(own, 4, False)]
        rows += [(user, int(p), float(rng.integers(1, 3))) for p in rng.choice(other, 2, False)]
    frame = pd.DataFrame(rows, columns=["user_id", "product_id", "rating"])
    return frame.assign(clicks=1, engagement=frame["rating"])


DATASET = simulated_dataset(taste_feedback(), name="two groups")
SMALL_ALS_SPACE = {"factors": [4, 8], "regularization": [0.1, 1000.0], "alpha": [1.0]}


def test_als_search_tries_distinct_candidates_and_returns_the_best():
    result = tune(DATASET, "als", "ndcg@5", n_trials=4, space=SMALL_ALS_SPACE)
    scores = [trial["score"] for trial in result.trials]
    assert len({json.dumps(t["params"], sort_keys=True) for t in result.trials}) == 4
    assert scores == sorted(scores, reverse=True)
    assert result.best_score == scores[0]
    assert result.best_params == result.trials[0]["params"]


def test_each_candidate_is_trained_with_its_own_parameters():
    result = tune(DATASET, "als", "ndcg@5", n_trials=4, space=SMALL_ALS_SPACE)
    assert len({trial["score"] for trial in result.trials}) > 1


def test_the_same_seed_gives_the_same_search():
    first = tune(DATASET, "als", "ndcg@5", n_trials=2, space=SMALL_ALS_SPACE, seed=3)
    again = tune(DATASET, "als", "ndcg@5", n_trials=2, space=SMALL_ALS_SPACE, seed=3)
    assert first.trials == again.trials


def test_svd_rmse_search_uses_surprise_and_returns_svd_parameters():
    space = {"n_factors": [2, 10], "n_epochs": [5], "lr_all": [0.01], "reg_all": [0.1]}
    result = tune(DATASET, "svd", "rmse", n_trials=5, folds=2, space=space)
    assert len(result.trials) == 2  # the whole space, though 5 were asked for
    assert result.best_score == min(trial["score"] for trial in result.trials)
    assert SVDRecommender(**result.best_params).n_epochs == 5


@pytest.mark.parametrize(("model", "metric"), [("als", "ndcg@5"), ("svd", "rmse")])
def test_searches_never_see_the_rows_evaluate_tests_on_for_the_same_seed(model, metric):
    result = tune(DATASET, model, metric, n_trials=1, folds=2, seed=7)
    assert result.rows == len(holdout_split(DATASET.feedback, seed=7).train)
    assert result.rows < len(DATASET.feedback)


def test_svd_can_be_tuned_on_ndcg():
    space = {"n_factors": [2], "n_epochs": [5, 10], "lr_all": [0.01], "reg_all": [0.1]}
    result = tune(DATASET, "svd", "ndcg@5", n_trials=2, space=space)
    assert result.metric == "ndcg@5"
    assert 0 <= result.best_score <= 1


@pytest.mark.parametrize(
    ("model", "metric", "message"),
    [
        ("als", "rmse", "als predicts no ratings"),
        ("svd", "ndcg@0", "unknown metric 'ndcg@0'"),
        ("popular", "ndcg@10", "no search space for 'popular'"),
        ("knn", "rmse", "unknown model 'knn'"),
    ],
)
def test_impossible_searches_are_refused(model, metric, message):
    with pytest.raises(ValueError, match=message):
        tune(DATASET, model, metric)


def test_saved_parameters_round_trip_and_keep_other_models(tmp_path):
    path = tmp_path / "instance" / "model_params.json"
    save_model_params(path, "als", {"factors": 8, "regularization": 2.0})
    save_model_params(path, "svd", {"n_factors": 3})
    assert load_model_params(path) == {
        "als": {"factors": 8, "regularization": 2.0},
        "svd": {"n_factors": 3},
    }


def test_model_factory_builds_models_with_the_files_parameters(tmp_path):
    path = tmp_path / "params.json"
    save_model_params(path, "als", {"factors": 8})
    model = model_factory("als", load_model_params(path))()
    assert isinstance(model, ALSRecommender)
    assert model.factors == 8
    assert model_factory("svd", load_model_params(path))().n_factors == SVDRecommender().n_factors


def test_model_factory_gives_the_datas_rating_scale_only_to_models_that_take_one():
    assert model_factory("svd", rating_scale=(0.5, 5.0))().rating_scale == (0.5, 5.0)
    # popularity takes no rating_scale: passing it would raise TypeError
    assert model_factory("popularity", rating_scale=(0.5, 5.0))().name == "popular"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{"als": {"factors": 8,}}', 1, "not valid JSON"),
        ('["als"]', None, "expected an object mapping model names"),
        ('{"knn": {}}', None, "unknown model 'knn'"),
        ('{"als": {"depth": 3}}', None, "bad parameters for 'als'"),
        ('{"als": {"factors": 0}}', None, "bad parameters for 'als'"),
    ],
)
def test_bad_parameter_files_name_the_file_and_problem(tmp_path, text, line, problem):
    path = tmp_path / "params.json"
    path.write_text(text)
    with pytest.raises(DataFileError) as raised:
        load_model_params(path)
    assert raised.value.path == str(path)
    assert raised.value.line == line
    assert problem in raised.value.problem


@pytest.mark.parametrize(("name", "canonical"), [("popularity", "popular"), (" als ", "als")])
def test_model_aliases_resolve_to_registry_names(name, canonical):
    assert canonical_model_name(name) == canonical
