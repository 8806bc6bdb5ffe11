"""Popularity ranking, SVD (better than the mean, faithful to Surprise) and the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from surprise import Dataset, Reader

from recsys.data.eda import clicks_by_product
from recsys.data.loaders import simulated_dataset
from recsys.data.ratings import derive_ratings
from recsys.data.simulate import SimulationConfig, simulate_shop
from recsys.evaluation.default_pipeline import run_pipeline, svd_against_baseline
from recsys.evaluation.splits import holdout_split
from recsys.models.popularity import PopularityRecommender
from recsys.models.svd import SVDRecommender


def _log(rows):
    return pd.DataFrame(rows, columns=["user_id", "product_clicked", "purchased"])


@pytest.fixture(scope="module")
def pipeline():
    return run_pipeline()


def test_the_popularity_model_ranks_as_the_click_ranking_of_the_log():
    log = simulate_shop().interactions
    model = PopularityRecommender().fit(derive_ratings(log))
    ranked = clicks_by_product(log)
    assert model.top(20).product_ids.tolist() == ranked["product_id"].tolist()
    assert model.top(20).scores.tolist() == ranked["clicks"].tolist()


def test_the_pipelines_top5_is_the_head_of_the_click_ranking_with_names(pipeline):
    ranked = clicks_by_product(pipeline.shop.interactions).head(5)
    assert pipeline.top5["product_id"].tolist() == ranked["product_id"].tolist()
    assert pipeline.top5["clicks"].tolist() == ranked["clicks"].tolist()
    assert pipeline.top5["name"].notna().all()


def test_popular_products_skip_what_is_excluded():
    model = PopularityRecommender().fit(derive_ratings(_log([(1, 1, 0), (1, 1, 0), (2, 2, 0)])))
    assert model.top(5, exclude={1}).product_ids.tolist() == [2]


def test_svd_beats_the_global_mean_on_the_default_data(pipeline):
    evaluation = pipeline.evaluation
    assert evaluation.svd.rmse < evaluation.baseline.rmse * 0.9
    assert evaluation.svd.mae < evaluation.baseline.mae


def test_the_pipeline_measures_the_blend_beside_svd_on_the_same_split(pipeline):
    evaluation = pipeline.evaluation
    assert evaluation.blend.n_test == evaluation.svd.n_test
    assert evaluation.blend.rmse < evaluation.svd.rmse
    rows = {line[:24].strip(): line[24:].split() for line in evaluation.report().splitlines()}
    assert float(rows["SVD (Surprise)"][0]) == round(evaluation.svd.rmse, 4)
    assert float(rows["blend (SVD + kNN)"][0]) == round(evaluation.blend.rmse, 4)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_svd_beats_the_global_mean_for_other_seeds(seed):
    feedback = derive_ratings(simulate_shop(SimulationConfig(seed=seed)).interactions)
    evaluation = svd_against_baseline(simulated_dataset(feedback))
    assert evaluation.svd.rmse < evaluation.baseline.rmse * 0.9


def test_the_pipeline_measures_on_evaluates_holdout_split(pipeline):
    split = holdout_split(pipeline.feedback)
    assert (pipeline.evaluation.n_train, pipeline.evaluation.svd.n_test) == (
        len(split.train),
        len(split.test),
    )


def test_the_pipelines_model_clips_to_the_rating_scale_evaluate_gives_it(pipeline):
    assert pipeline.model.rating_scale == simulated_dataset(pipeline.feedback).rating_scale


def test_svd_predicts_exactly_what_surprise_predicts():
    feedback = derive_ratings(simulate_shop().interactions)
    split = holdout_split(feedback)
    train, test = split.train, split.test
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
