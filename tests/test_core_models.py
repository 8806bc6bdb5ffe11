"""Popularity ranking, and SVD: better than the mean, faithful to Surprise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from surprise import Dataset, Reader

from recsys.data.ratings import derive_ratings
from recsys.data.simulate import SimulationConfig, simulate_shop
from recsys.evaluation.pipeline import (
    evaluate_svd_rmse,
    rating_accuracy,
    run_pipeline,
    split_ratings,
)
from recsys.models.popularity import PopularityRecommender, top_popular
from recsys.models.svd import SVDRecommender


def _log(rows):
    return pd.DataFrame(rows, columns=["user_id", "product_clicked", "purchased"])


def test_top_popular_ranks_by_clicks_and_breaks_ties_by_product_id():
    log = _log([(1, 9, 0), (2, 9, 0), (1, 4, 0), (2, 4, 1), (3, 7, 0), (1, 2, 0), (3, 3, 0)])
    ranked = top_popular(log, n=4)
    assert ranked["product_id"].tolist() == [4, 9, 2, 3]
    assert ranked["clicks"].tolist() == [2, 2, 1, 1]


def test_the_popularity_model_agrees_with_top_popular_on_the_simulated_log():
    log = simulate_shop().interactions
    model = PopularityRecommender().fit(derive_ratings(log))
    assert model.top(5).product_ids.tolist() == top_popular(log, 5)["product_id"].tolist()


def test_popular_products_skip_what_is_excluded():
    model = PopularityRecommender().fit(derive_ratings(_log([(1, 1, 0), (1, 1, 0), (2, 2, 0)])))
    assert model.top(5, exclude={1}).product_ids.tolist() == [2]


def test_svd_beats_the_global_mean_on_the_default_data():
    evaluation = run_pipeline().evaluation
    assert evaluation.svd.rmse < evaluation.baseline.rmse * 0.9
    assert evaluation.svd.mae < evaluation.baseline.mae


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_svd_beats_the_global_mean_for_other_seeds(seed):
    feedback = derive_ratings(simulate_shop(SimulationConfig(seed=seed)).interactions)
    evaluation = evaluate_svd_rmse(feedback, SVDRecommender(), seed=seed)
    assert evaluation.svd.rmse < evaluation.baseline.rmse * 0.9


def test_svd_predicts_exactly_what_surprise_predicts():
    feedback = derive_ratings(simulate_shop().interactions)
    train, test = split_ratings(feedback, seed=0)
    ours = SVDRecommender(random_state=3).fit(train)
    reader = Reader(rating_scale=ours.rating_scale)
    trainset = Dataset.load_from_df(train[["user_id", "product_id", "rating"]], reader)
    algo = SVDRecommender(random_state=3).surprise_algorithm()
    algo.fit(trainset.build_full_trainset())
    # Unknown users and products included: Surprise falls back to the known parts.
    users = np.append(test["user_id"].to_numpy(), [10_000, 1])
    products = np.append(test["product_id"].to_numpy(), [1, 10_000])
    expected = [algo.predict(u, i).est for u, i in zip(users, products, strict=True)]
    np.testing.assert_allclose(ours.predict(users, products), expected, rtol=1e-12)


def test_svd_ranks_unseen_products_of_the_users_taste_first():
    # Two taste groups: users 1-20 love products 1-3, users 21-40 love 4-6.
    rows = []
    for user in range(1, 41):
        liked = (1, 2, 3) if user <= 20 else (4, 5, 6)
        other = (4, 5, 6) if user <= 20 else (1, 2, 3)
        hidden = liked[user % 3]
        rows += [(user, p, 1) for p in liked if p != hidden for _ in range(2)]
        rows += [(user, other[user % 3], 0)]
    feedback = derive_ratings(_log(rows))
    model = SVDRecommender(n_factors=2, random_state=0).fit(feedback)
    seen = feedback.groupby("user_id")["product_id"].apply(set).to_dict()
    batch = model.recommend(range(1, 41), n=1, exclude=seen)
    hits = sum(
        batch.lists[u].product_ids[0] in ((1, 2, 3) if u <= 20 else (4, 5, 6)) for u in range(1, 41)
    )
    assert hits >= 36


def test_rating_accuracy_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="zero predictions"):
        rating_accuracy(np.array([]), np.array([]))


def test_split_puts_every_pair_in_exactly_one_side():
    feedback = derive_ratings(simulate_shop().interactions)
    train, test = split_ratings(feedback, seed=5)
    assert len(train) + len(test) == len(feedback)
    assert len(test) == round(0.2 * len(feedback))
    pairs = lambda f: set(zip(f["user_id"], f["product_id"], strict=True))  # noqa: E731
    assert not pairs(train) & pairs(test)
