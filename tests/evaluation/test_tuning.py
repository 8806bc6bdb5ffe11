"""Hyper-parameter search and the parameter files the service trains with."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from recsys.data.loaders import simulated_dataset
from recsys.errors import DataFileError
from recsys.evaluation import tuning
from recsys.evaluation.evaluate import evaluate, score_split
from recsys.evaluation.model_params import (
    load_model_params,
    model_factory,
    save_model_params,
)
from recsys.evaluation.splits import (
    holdout_split,
    make_splits,
    validation_split,
    validation_splits,
)
from recsys.evaluation.tuning import SEARCH_SPACES, rank_trials, tune
from recsys.models import MODELS, canonical_model_name
from recsys.models.als import ALSRecommender
from recsys.models.popularity import PopularityRecommender
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


SEARCHES = [("svd", "rmse"), ("als", "ndcg@5")]


@pytest.mark.parametrize(("model", "metric"), SEARCHES)
def test_the_same_seed_gives_the_same_search(model, metric):
    first = tune(DATASET, model, metric, n_trials=4, seed=3)
    again = tune(DATASET, model, metric, n_trials=4, seed=3)
    assert first.to_dict() == again.to_dict()


@pytest.mark.parametrize(("model", "metric"), SEARCHES)
def test_the_models_defaults_are_always_a_candidate(model, metric):
    defaults = MODELS[model]()
    expected = {key: getattr(defaults, key) for key in SEARCH_SPACES[model]}
    result = tune(DATASET, model, metric, n_trials=3)
    marked = [trial for trial in result.trials if trial["defaults"]]
    assert [trial["params"] for trial in marked] == [expected]
    assert marked[0]["score"] == result.defaults_score


def _on_validation(model, metric, params=None, seed=0, protocol="holdout"):
    """Return a model's figure on the validation split tune carves (fit and scored there)."""
    outer = make_splits(DATASET.feedback, protocol, seed)[0]
    validation = validation_split(outer.train, protocol, seed)
    fitted = model_factory(model, params, DATASET.rating_scale)().fit(validation.train)
    return score_split(fitted, validation, 5, 4.0)[metric]


@pytest.mark.parametrize(("model", "metric"), SEARCHES)
@pytest.mark.parametrize("seed", [0, 4])
def test_the_best_score_is_the_best_parameters_figure_on_validation(model, metric, seed):
    result = tune(DATASET, model, metric, n_trials=4, seed=seed)
    assert result.best_score == _on_validation(model, metric, {model: result.best_params}, seed)
    assert result.defaults_score == _on_validation(model, metric, seed=seed)


@pytest.mark.parametrize(("model", "metric"), SEARCHES)
def test_the_best_is_never_worse_than_the_defaults_on_validation(model, metric):
    result = tune(DATASET, model, metric, n_trials=6)
    tuned, defaults = (
        _on_validation(model, metric, {model: result.best_params}),
        _on_validation(model, metric),
    )
    assert tuned <= defaults if metric == "rmse" else tuned >= defaults


def timed(feedback):
    """Return the feedback with distinct seeded timestamps, so the time protocols apply."""
    order = np.random.default_rng(5).permutation(len(feedback))
    return feedback.assign(timestamp=order * 60)


@pytest.mark.parametrize("protocol", ["holdout", "time", "time-global"])
def test_tuning_never_reads_a_test_row(protocol, monkeypatch):
    """Every frame a candidate is fitted or scored on holds training rows of the outer split only.

    The search is spied on where it fits and scores; a test pair (user,
    product) of evaluate's split in any of those frames fails the test.
    """
    dataset = simulated_dataset(timed(taste_feedback()), name="two groups")
    outer = make_splits(dataset.feedback, protocol, 0)[0]
    seen = []
    real_score = tuning.score_split

    def spying_score(model, split, k, threshold):
        seen.extend([split.train, split.test])
        return real_score(model, split, k, threshold)

    monkeypatch.setattr(tuning, "score_split", spying_score)
    tune(dataset, "als", "ndcg@5", n_trials=3, space=SMALL_ALS_SPACE, protocol=protocol)
    test_pairs = set(zip(outer.test["user_id"], outer.test["product_id"], strict=True))
    read = {
        pair for frame in seen for pair in zip(frame["user_id"], frame["product_id"], strict=True)
    }
    assert seen and test_pairs and not read & test_pairs


def test_on_the_global_cut_a_candidates_figure_is_its_mean_over_the_validation_windows():
    dataset = simulated_dataset(timed(taste_feedback()), name="two groups")
    result = tune(dataset, "ease", "ndcg@5", n_trials=3, protocol="time-global")
    outer = make_splits(dataset.feedback, "time-global", 0)[0]
    windows = validation_splits(outer.train, "time-global", 0)
    assert len(windows) == 3
    for trial in result.trials:
        factory = model_factory("ease", {"ease": trial["params"]})
        figures = [score_split(factory().fit(w.train), w, 5, 4.0)["ndcg@5"] for w in windows]
        assert trial["score"] == pytest.approx(np.mean(figures))
    assert "the mean over 3 validation windows" in result.method


@pytest.mark.parametrize("protocol", ["holdout", "time", "time-global"])
def test_rewriting_every_test_row_changes_nothing_in_the_search(protocol):
    feedback = timed(taste_feedback())
    outer = make_splits(feedback, protocol, 0)[0]
    flipped = feedback.copy()
    # Every test rating turned upside down (5 -> 1): relevance flips for every test row.
    flipped.loc[outer.test.index, "rating"] = 6.0 - flipped.loc[outer.test.index, "rating"]
    flipped["engagement"] = flipped["rating"]
    results = [
        tune(simulated_dataset(frame), "als", "ndcg@5", n_trials=4, protocol=protocol)
        for frame in (feedback, flipped)
    ]
    assert results[0].trials == results[1].trials
    assert evaluate(
        {"als": model_factory("als")}, simulated_dataset(flipped), protocol, k=5
    ) != evaluate({"als": model_factory("als")}, simulated_dataset(feedback), protocol, k=5)


@pytest.mark.parametrize(
    ("metric", "scores", "best_index"),
    [
        ("rmse", [1.0, 0.9, 0.9], 1),
        ("rmse", [0.9, 0.9, 1.0], 0),
        ("ndcg@5", [0.5, 0.7, 0.7], 1),
        ("ndcg@5", [0.7, 0.7, 0.5], 0),
    ],
)
def test_ties_go_to_the_earlier_candidate_so_the_defaults_win_ties(metric, scores, best_index):
    trials = [{"params": {"n": i}, "score": score} for i, score in enumerate(scores)]
    assert rank_trials(trials, metric)[0]["params"] == {"n": best_index}


def test_svd_rmse_search_scores_the_whole_space_when_it_is_smaller_than_asked():
    space = {"n_factors": [2, 10], "n_epochs": [5], "lr_all": [0.01], "reg_all": [0.1]}
    result = tune(DATASET, "svd", "rmse", n_trials=5, space=space)
    assert len(result.trials) == 3  # the defaults, then the two points of the space
    assert result.best_score == min(trial["score"] for trial in result.trials)
    assert SVDRecommender(**result.best_params).n_epochs in (5, SVDRecommender().n_epochs)


@pytest.mark.parametrize("seed", [0, 7])
def test_the_search_fits_and_scores_inside_evaluates_training_part(seed):
    result = tune(DATASET, "als", "ndcg@5", n_trials=1, seed=seed)
    split = holdout_split(DATASET.feedback, seed=seed)
    assert result.train_rows + result.validation_rows == len(split.train)
    assert "the test rows are never read" in result.method


def test_svd_can_be_tuned_on_ndcg():
    space = {"n_factors": [2], "n_epochs": [5, 10], "lr_all": [0.01], "reg_all": [0.1]}
    result = tune(DATASET, "svd", "ndcg@5", n_trials=2, space=space)
    assert result.metric == "ndcg@5"
    assert 0 <= result.best_score <= 1


RANKING_SPACE = {
    "popularity_weight": [0.0, 2.0, math.inf],
    "support_shrinkage": [0.0, 5.0],
    "liked_rating": [4.0],
}


def test_candidates_differing_only_in_the_ranking_score_score_as_separate_fits():
    result = tune(DATASET, "svd", "ndcg@5", n_trials=7, space=RANKING_SPACE)
    assert len(result.trials) == 7
    for trial in result.trials:
        assert trial["score"] == _on_validation("svd", "ndcg@5", {"svd": trial["params"]})


ARRIVAL_SPACE = {
    "factors": [4],
    "arrival_days": [0.0, 3.0, 8.0],
    "arrival_lift": [0.5, 2.0],
    "uptake_lift": [0.0, 1.0],
}


def test_als_candidates_differing_only_in_their_arrivals_score_as_separate_fits():
    # An hour between rows, over 15 days; products 6 and 12 arrive in the last two.
    feedback = timed(taste_feedback())
    feedback = feedback.assign(timestamp=feedback["timestamp"] * 60)
    late = feedback["product_id"].isin([6, 12])
    feedback.loc[late, "timestamp"] = (
        feedback["timestamp"].max() - 2 * 86_400 + np.arange(late.sum()) * 3_000
    )
    dataset = simulated_dataset(feedback)
    result = tune(dataset, "als", "ndcg@5", n_trials=8, space=ARRIVAL_SPACE, protocol="time-global")
    outer = make_splits(dataset.feedback, "time-global", 0)[0]
    windows = validation_splits(outer.train, "time-global", 0)
    for trial in result.trials:
        factory = model_factory("als", {"als": trial["params"]})
        figures = [score_split(factory().fit(w.train), w, 5, 4.0)["ndcg@5"] for w in windows]
        assert trial["score"] == np.mean(figures)
    # The arrivals change the figures of one fit (factors=4) on validation.
    fours = {trial["score"] for trial in result.trials if trial["params"]["factors"] == 4}
    assert len(fours) > 2


def test_a_search_reaching_the_infinite_popularity_weight_never_ends_below_popularity():
    result = tune(DATASET, "svd", "ndcg@5", n_trials=7, space=RANKING_SPACE)
    outer = make_splits(DATASET.feedback, "holdout", 0)[0]
    validation = validation_split(outer.train, "holdout", 0)
    liked = validation.train[validation.train["rating"] >= 4].assign(clicks=1)
    popular = score_split(PopularityRecommender().fit(liked), validation, 5, 4.0)["ndcg@5"]
    assert result.best_score >= popular


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


def test_a_space_naming_a_parameter_the_model_lacks_is_refused():
    with pytest.raises(ValueError, match=r"svd takes no parameter\(s\) \['depth'\]"):
        tune(DATASET, "svd", "rmse", space={"depth": [1, 2]})


def test_one_trial_scores_only_the_defaults():
    result = tune(DATASET, "svd", "rmse", n_trials=1)
    assert [trial["defaults"] for trial in result.trials] == [True]
    assert result.best_score == result.defaults_score


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
        ('{"svd": {"reg_all": -0.1}}', None, "reg_all and init_std_dev must be non-negative"),
        # Python's json reads NaN and Infinity: a model would learn NaN from them.
        ('{"als": {"regularization": NaN}}', None, "must be non-negative numbers"),
        ('{"als": {"alpha": Infinity}}', None, "must be non-negative numbers"),
        ('{"itemknn": {"shrinkage": NaN}}', None, "shrinkage must be a non-negative number"),
        ('{"ease": {"l2": Infinity}}', None, "l2 must be a positive number"),
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


def test_a_global_cut_with_no_user_to_rank_leaves_the_choice_to_the_other_cuts():
    rows = pd.DataFrame(
        {
            "user_id": np.tile(np.arange(1, 11), 20),
            "product_id": [(i * 7) % 40 + 1 for i in range(200)],
        }
    ).drop_duplicates()
    rows = rows.assign(timestamp=np.arange(len(rows)), clicks=1, engagement=5.0, rating=5.0)
    # The second validation cut (80-90% of the rows in time) holds only ratings of 1.
    low = slice(int(len(rows) * 0.8), int(len(rows) * 0.9))
    rows.iloc[low, rows.columns.get_loc("rating")] = 1.0
    rows["engagement"] = rows["rating"]
    result = tuning.tune_on_training(rows, "ease", "ndcg@10", protocol="time-global", n_trials=2)
    assert all(np.isfinite(trial["score"]) for trial in result.trials)
