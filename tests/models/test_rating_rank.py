"""The ranking score of rating models: support shrinkage, the liked-count prior, its limit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.models.blend import BlendRecommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.rating_rank import RankingScore
from recsys.models.svd import SVDRecommender
from tests.models.test_model_contract import random_feedback

RATING_MODELS = [SVDRecommender, BlendRecommender]
FEEDBACK = random_feedback(n_users=40, n_items=30, density=0.3, seed=5)


def rows_counted(feedback: pd.DataFrame, liked_rating: float | None) -> pd.DataFrame:
    """Return the rows the prior counts, each one click: popularity then counts the same."""
    if liked_rating is not None:
        feedback = feedback[feedback["rating"] >= liked_rating]
    return feedback.assign(clicks=1)


@pytest.mark.parametrize("model_class", RATING_MODELS, ids=lambda c: c.name)
@pytest.mark.parametrize("liked_rating", [4.0, None])
def test_at_an_infinite_popularity_weight_the_ranking_is_popularitys(model_class, liked_rating):
    model = model_class(popularity_weight=math.inf, liked_rating=liked_rating).fit(FEEDBACK)
    popular = PopularityRecommender().fit(rows_counted(FEEDBACK, liked_rating))
    counted = len(popular.product_ids)
    for user in model.user_ids[:5].tolist():
        ours = model.rank_user(user, len(model.product_ids))
        theirs = popular.top(counted)
        np.testing.assert_array_equal(ours.product_ids[:counted], theirs.product_ids)


def one_enthusiast_and_a_crowd() -> pd.DataFrame:
    """Return 30 users: product 1 rated 5 by one user, product 2 rated 4 by twenty, others 2-4."""
    rng = np.random.default_rng(0)
    rows = [(1, 1, 5.0)] + [(user, 2, 4.0) for user in range(2, 22)]
    for user in range(1, 31):
        for product in rng.choice(np.arange(3, 15), 6, replace=False):
            rows.append((user, int(product), float(rng.integers(2, 5))))
    frame = pd.DataFrame(rows, columns=["user_id", "product_id", "rating"])
    return frame.assign(clicks=1, engagement=frame["rating"])


@pytest.mark.parametrize("model_class", RATING_MODELS, ids=lambda c: c.name)
@pytest.mark.parametrize("popularity_weight", [0.0, 1.0])
def test_a_product_with_one_high_rating_does_not_outrank_a_well_supported_one(
    model_class, popularity_weight
):
    feedback = one_enthusiast_and_a_crowd()
    model = model_class(popularity_weight=popularity_weight).fit(feedback)
    # Users who rated neither product: 22-30.
    for user in range(22, 31):
        ranked = model.rank_user(user, len(model.product_ids)).product_ids.tolist()
        assert ranked.index(2) < ranked.index(1)


@pytest.mark.parametrize("model_class", RATING_MODELS, ids=lambda c: c.name)
def test_the_support_shrinks_a_products_deviation_from_the_users_baseline(model_class):
    whole = model_class(popularity_weight=0.0, support_shrinkage=0.0).fit(FEEDBACK)
    shrunk = model_class(popularity_weight=0.0, support_shrinkage=7.0).fit(FEEDBACK)
    counts = FEEDBACK.groupby("product_id").size().reindex(whole.product_ids).to_numpy()
    user = int(whole.user_ids[2])
    full = whole.rank_user(user, len(whole.product_ids))
    partial = shrunk.rank_user(user, len(shrunk.product_ids))
    by_product = dict(zip(partial.product_ids.tolist(), partial.scores, strict=True))
    baseline = (
        whole.global_mean
        + (whole.user_bias if model_class is SVDRecommender else whole.baseline_user_bias)[2]
    )
    for product, score in zip(full.product_ids.tolist(), full.scores, strict=True):
        n = counts[np.searchsorted(whole.product_ids, product)]
        expected = baseline + n / (n + 7.0) * (score - baseline)
        assert by_product[product] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("model_class", RATING_MODELS, ids=lambda c: c.name)
def test_ranking_parameters_changed_after_the_fit_rank_as_a_fresh_fit(model_class):
    ranking = {"popularity_weight": 2.0, "support_shrinkage": 20.0, "liked_rating": 4.0}
    fresh = model_class(**ranking).fit(FEEDBACK)
    users = fresh.user_ids[:6].tolist()
    changed = model_class().fit(FEEDBACK).rank_with(popularity_weight=0.0)
    changed.recommend(users, 10)  # scored once with other ranking parameters
    changed.rank_with(**ranking)
    assert changed.params() == fresh.params()
    for user, ranked in fresh.recommend(users, 10).lists.items():
        again = changed.recommend(users, 10).lists[user]
        np.testing.assert_array_equal(again.product_ids, ranked.product_ids)
        np.testing.assert_allclose(again.scores, ranked.scores, rtol=1e-12)


@pytest.mark.parametrize(
    ("liked_rating", "expected"),
    [(4.0, [0, 2, 1, 0]), (3.0, [1, 2, 2, 0]), (None, [2, 2, 2, 1])],
)
def test_liked_counts_count_ratings_from_the_liked_rating(liked_rating, expected):
    items = np.array([0, 0, 1, 1, 2, 2, 3])
    ratings = np.array([1.0, 3.0, 4.0, 5.0, 3.0, 4.5, 2.0])
    counts = RankingScore(liked_rating=liked_rating).liked_counts(items, ratings, 4)
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"popularity_weight": -1.0}, "popularity_weight must be non-negative"),
        ({"popularity_weight": math.nan}, "popularity_weight must be non-negative"),
        ({"support_shrinkage": -1.0}, "support_shrinkage must be a non-negative number"),
        ({"support_shrinkage": math.inf}, "support_shrinkage must be a non-negative number"),
    ],
)
@pytest.mark.parametrize("model_class", RATING_MODELS, ids=lambda c: c.name)
def test_bad_ranking_settings_are_refused_with_their_name(model_class, params, message):
    with pytest.raises(ValueError, match=message):
        model_class(**params)
