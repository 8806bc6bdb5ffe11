"""BoosterScorer: the trees compiled and scored at once, the same numbers as Booster.predict."""

import lightgbm
import numpy as np
import pytest

from recsys.models.booster_scoring import BoosterScorer


@pytest.fixture(scope="module")
def booster() -> lightgbm.Booster:
    """A small lambdarank booster, loaded from its text as the ranker loads one."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, 6))
    labels = (rows[:, 0] + rows[:, 1] > 0).astype(float)
    data = lightgbm.Dataset(rows, label=labels, group=[30] * 20)
    trained = lightgbm.train(
        {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1},
        data,
        num_boost_round=20,
    )
    return lightgbm.Booster(model_str=trained.model_to_string())


def test_scores_are_exactly_booster_predicts_for_every_row(booster):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(75, 6))
    rows[3, 2] = 0.0  # LightGBM reads zeros and missing values specially
    rows[4, 1] = np.nan
    scores = BoosterScorer(booster).scores(rows)
    assert scores.dtype == np.float64
    assert scores.tobytes() == booster.predict(rows, num_threads=1).tobytes()


def test_rows_in_any_memory_layout_score_as_their_values(booster):
    rows = np.random.default_rng(2).normal(size=(6, 10))[:, :6]  # a strided view
    scorer = BoosterScorer(booster)
    expected = booster.predict(np.ascontiguousarray(rows), num_threads=1)
    np.testing.assert_array_equal(scorer.scores(rows), expected)
    np.testing.assert_array_equal(scorer.scores(np.asfortranarray(rows)), expected)


def test_read_only_and_float32_rows_score_as_their_values(booster):
    rows = np.random.default_rng(3).normal(size=(8, 6))
    expected = booster.predict(rows, num_threads=1)
    read_only = rows.copy()
    read_only.flags.writeable = False
    scorer = BoosterScorer(booster)
    assert scorer.scores(read_only).tobytes() == expected.tobytes()
    narrow = rows.astype(np.float32)
    assert scorer.scores(narrow).tobytes() == booster.predict(narrow, num_threads=1).tobytes()


def test_no_rows_score_nothing(booster):
    assert BoosterScorer(booster).scores(np.empty((0, 6))).shape == (0,)


def test_rows_of_another_width_are_refused(booster):
    with pytest.raises(ValueError, match="the booster scores 6"):
        BoosterScorer(booster).scores(np.zeros((2, 5)))


def _trained(rows, labels, **params):
    """A booster trained on rows with LightGBM's defaults but the given settings."""
    settings = {"objective": "regression", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1}
    data = lightgbm.Dataset(rows, label=labels, params={"verbose": -1})
    return lightgbm.train({**settings, **params}, data, num_boost_round=15)


@pytest.mark.parametrize(
    "missing",
    [
        pytest.param({}, id="missing values read as 0 (no NaN in training)"),
        pytest.param({"nan_in_training": True}, id="NaN sent the default way"),
        pytest.param({"zero_as_missing": True}, id="zeros sent the default way"),
    ],
)
def test_every_missing_value_rule_scores_as_booster_predict(missing):
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(800, 4))
    rows[rng.random(800) < 0.2, 1] = 0.0
    if missing.pop("nan_in_training", False):
        rows[rng.random(800) < 0.2, 2] = np.nan
    booster = _trained(rows, np.nan_to_num(rows[:, 1] + 2 * rows[:, 2]) + rows[:, 0], **missing)
    asked = rng.normal(size=(60, 4))
    asked[::3, 1] = 0.0
    asked[1::4, 2] = np.nan
    asked[2::5, 0] = 1e-40  # LightGBM reads a value this close to 0 as 0
    asked[3::7, 1] = -0.0
    expected = booster.predict(asked, num_threads=1)
    assert BoosterScorer(booster).scores(asked).tobytes() == expected.tobytes()


def test_a_tree_without_a_split_adds_its_one_leaf():
    rows = np.random.default_rng(5).normal(size=(40, 3))
    booster = _trained(rows, rows[:, 0], min_data_in_leaf=100)  # too few rows to split
    assert booster.dump_model()["tree_info"][0]["num_leaves"] == 1
    asked = rows[:7]
    assert BoosterScorer(booster).scores(asked).tobytes() == booster.predict(asked).tobytes()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "binary"}, "objective 'binary' transforms its scores"),
        ({"linear_tree": True}, "linear leaves"),
        ({"num_leaves": 80, "min_data_in_leaf": 2}, "leaves; at most 64"),
    ],
)
def test_trees_it_cannot_score_as_lightgbm_does_are_refused(params, message):
    rng = np.random.default_rng(6)
    rows = rng.normal(size=(2000, 3))
    labels = (rng.random(2000) < 0.5 + 0.1 * rows[:, 0]).astype(float)  # noisy: trees grow deep
    booster = _trained(rows, labels, **params)
    with pytest.raises(ValueError, match=message):
        BoosterScorer(booster)


def test_a_categorical_split_is_refused():
    rng = np.random.default_rng(7)
    rows = np.column_stack([rng.integers(0, 6, 600), rng.normal(size=600)]).astype(float)
    data = lightgbm.Dataset(rows, label=(rows[:, 0] % 2), categorical_feature=[0])
    booster = lightgbm.train(
        {"objective": "regression", "min_data_in_leaf": 5, "verbose": -1}, data, 3
    )
    with pytest.raises(ValueError, match="categorical"):
        BoosterScorer(booster)
