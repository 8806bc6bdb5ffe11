"""BoosterScorer: LightGBM's scores by one prepared C call, the same numbers as Booster.predict."""

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
