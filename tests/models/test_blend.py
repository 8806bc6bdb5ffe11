"""The blend of rating models: better than SVD, weights from training rows only, arrays only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from surprise import KNNBaseline

from recsys.evaluation import metrics
from recsys.evaluation.splits import holdout_split
from recsys.models import MODELS
from recsys.models.blend import (
    CROSS_FIT_FOLDS,
    MEMBERS,
    BlendRecommender,
    prior_weights,
    validation_parts,
)
from recsys.models.surprise_trainset import trainset_from_arrays
from recsys.models.svd import SVDRecommender
from recsys.store.artifacts import ModelRegistry
from tests.models.test_model_contract import random_feedback

# The test RMSE of the blend and of SVD with Surprise's default settings on
# ``structured_ratings()``'s holdout split, as measured when the blend was
# written; a change that moves either past the tolerance should be a conscious one.
REFERENCE_BLEND_RMSE = 0.7071
REFERENCE_SVD_RMSE = 0.7766
TOLERANCE = 0.01
SURPRISE_DEFAULT_SVD = {"n_factors": 100, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02}


def structured_ratings(n_users=300, n_items=150, density=0.15, seed=0) -> pd.DataFrame:
    """Return ratings made of biases, three latent tastes and noise, on MovieLens' half stars."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    user_bias = rng.normal(0, 0.4, n_users)
    item_bias = rng.normal(0, 0.5, n_items)
    user_taste = rng.normal(0, 0.6, (n_users, 3))
    item_taste = rng.normal(0, 0.6, (n_items, 3))
    true = (
        3.5
        + user_bias[users]
        + item_bias[items]
        + np.einsum("ij,ij->i", user_taste[users], item_taste[items])
    )
    ratings = np.clip(np.round((true + rng.normal(0, 0.5, len(users))) * 2) / 2, 0.5, 5.0)
    return pd.DataFrame(
        {
            "user_id": users + 1,
            "product_id": items + 1,
            "clicks": 1,
            "engagement": ratings,
            "rating": ratings,
        }
    )


def pairs_of(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_id"].tolist(), frame["product_id"].tolist(), strict=True))


@pytest.fixture(scope="module")
def structured_split():
    return holdout_split(structured_ratings())


@pytest.fixture(scope="module")
def structured_blend(structured_split):
    return BlendRecommender(rating_scale=(0.5, 5.0)).fit(structured_split.train)


def test_the_blend_is_registered_as_a_model():
    assert MODELS["blend"] is BlendRecommender


def test_the_blend_predicts_the_known_structure_better_than_surprises_default_svd(
    structured_split, structured_blend
):
    test = structured_split.test
    actual = test["rating"].to_numpy()
    svd = SVDRecommender(**SURPRISE_DEFAULT_SVD, rating_scale=(0.5, 5.0))
    svd.fit(structured_split.train)
    svd_rmse = metrics.rmse(svd.predict(test["user_id"], test["product_id"]), actual)
    blend_rmse = metrics.rmse(structured_blend.predict(test["user_id"], test["product_id"]), actual)
    assert blend_rmse == pytest.approx(REFERENCE_BLEND_RMSE, abs=TOLERANCE)
    assert svd_rmse == pytest.approx(REFERENCE_SVD_RMSE, abs=TOLERANCE)
    assert blend_rmse < svd_rmse - 0.05


def test_the_blend_predicts_better_than_each_of_its_members(structured_split, structured_blend):
    test = structured_split.test
    actual = test["rating"].to_numpy()
    members, _ = structured_blend.member_predictions(test["user_id"], test["product_id"])
    blend_rmse = metrics.rmse(structured_blend.predict(test["user_id"], test["product_id"]), actual)
    for column, member in enumerate(MEMBERS):
        assert blend_rmse < metrics.rmse(members[:, column], actual), member


def test_the_weights_see_only_validation_rows_carved_from_the_training_frame(
    structured_split, monkeypatch
):
    """Every pair the members predict while the weights are fitted is a training row."""
    asked: list[tuple[int, int]] = []
    original = BlendRecommender.member_predictions

    def recording(self, user_ids, product_ids):
        asked.extend(
            zip(np.asarray(user_ids).tolist(), np.asarray(product_ids).tolist(), strict=True)
        )
        return original(self, user_ids, product_ids)

    monkeypatch.setattr(BlendRecommender, "member_predictions", recording)
    model = BlendRecommender(rating_scale=(0.5, 5.0)).fit(structured_split.train)

    train, test = pairs_of(structured_split.train), pairs_of(structured_split.test)
    assert len(asked) == model.validation_rows == round(0.1 * len(train))
    assert set(asked) <= train
    assert not set(asked) & test


@pytest.mark.parametrize(
    ("rows", "parts", "validation_rows"),
    [
        (5_000, 1, 500),  # a tenth of the rows is enough: one validation part
        (600, CROSS_FIT_FOLDS, 600),  # a tenth is too few: every row validates once
        (99, 0, 0),  # too few rows to fit weights on at all: the plain mean
    ],
)
def test_validation_parts_partition_the_training_frame(rows, parts, validation_rows):
    frame = pd.DataFrame({"row": np.arange(rows)})
    carved = validation_parts(frame, 0.1, 100, seed=0)
    assert len(carved) == parts
    assert sum(len(validation) for _, validation in carved) == validation_rows
    for fit_part, validation in carved:
        assert set(fit_part["row"]).isdisjoint(validation["row"])
        assert sorted([*fit_part["row"], *validation["row"]]) == list(range(rows))


def test_a_log_too_small_to_validate_on_gets_the_plain_mean_of_the_members():
    few = random_feedback(n_users=10, n_items=12, density=0.5)
    assert len(few) < 100
    model = BlendRecommender().fit(few)
    assert model.validation_rows == 0
    np.testing.assert_array_equal(model.blend_weights, prior_weights())
    users, products = few["user_id"].to_numpy(), few["product_id"].to_numpy()
    members, _ = model.member_predictions(users, products)
    np.testing.assert_allclose(model.predict(users, products), members.mean(axis=1))


def test_ratings_all_alike_predict_that_rating_instead_of_failing():
    # Surprise's Pearson-baseline similarity divides by zero on such data.
    alike = random_feedback(n_users=30, n_items=20, density=0.5).assign(rating=3.0)
    model = BlendRecommender().fit(alike)
    users, products = alike["user_id"].to_numpy(), alike["product_id"].to_numpy()
    np.testing.assert_allclose(model.predict(users, products), 3.0)
    assert len(model.recommend(users[:1], 3).lists[int(users[0])]) == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
        ({"validation_fraction": -0.1}, "validation_fraction must be in"),
        ({"k": 0}, "k and max_neighbours must be at least 1"),
        ({"max_neighbours": 0}, "k and max_neighbours must be at least 1"),
        ({"min_validation_rows": 0}, "min_validation_rows must be at least 1"),
    ],
)
def test_bad_settings_are_refused_with_their_name(params, message):
    with pytest.raises(ValueError, match=message):
        BlendRecommender(**params)


@pytest.mark.parametrize("user_based", [True, False], ids=["user_knn", "item_knn"])
def test_the_neighbourhood_members_predict_what_surprises_knnbaseline_predicts(user_based):
    feedback = random_feedback(n_users=40, n_items=50, density=0.4, seed=3)
    model = BlendRecommender(max_neighbours=1_000, validation_fraction=0.0).fit(feedback)
    rng = np.random.default_rng(0)
    seen = pairs_of(feedback)
    pairs = [
        (int(u), int(i))
        for u, i in zip(
            rng.choice(feedback["user_id"].unique(), 300),
            rng.choice(feedback["product_id"].unique(), 300),
            strict=True,
        )
        if (u, i) not in seen
    ]
    users, products = np.array(pairs).T
    ours, _ = model.member_predictions(users, products)
    trainset = trainset_from_arrays(
        feedback["user_id"], feedback["product_id"], feedback["rating"], (1.0, 5.0)
    )
    algo = KNNBaseline(
        sim_options={"name": "pearson_baseline", "user_based": user_based}, verbose=False
    ).fit(trainset)
    theirs = [algo.predict(u, i).est for u, i in pairs]
    column = MEMBERS.index("user_knn" if user_based else "item_knn")
    np.testing.assert_allclose(ours[:, column], theirs, atol=1e-9)


def test_a_users_ranking_scores_are_the_shrunk_predicted_ratings_plus_the_popularity_term(
    structured_split, structured_blend
):
    model = structured_blend
    user = int(model.user_ids[3])
    ranked = model.rank_user(user, len(model.product_ids))
    assert ranked is not None
    predicted = model.predict(np.full(len(ranked), user), ranked.product_ids)
    inner = np.searchsorted(model.product_ids, ranked.product_ids)
    train = structured_split.train
    liked_rating = model.ranking.liked_rating
    liked = (
        (train if liked_rating is None else train[train["rating"] >= liked_rating])
        .groupby("product_id")
        .size()
        .reindex(ranked.product_ids, fill_value=0)
        .to_numpy()
    )
    counts = model.item_counts[inner]
    baseline = model.global_mean + model.baseline_user_bias[3]
    k, weight = model.ranking.support_shrinkage, model.ranking.popularity_weight
    shrunk = baseline + counts / (counts + k) * (predicted - baseline)
    np.testing.assert_allclose(ranked.scores, shrunk + weight * np.log1p(liked))


def test_a_published_blend_loads_with_the_same_predictions_and_lists(
    structured_split, structured_blend, tmp_path
):
    registry = ModelRegistry(tmp_path / "models")
    published = registry.publish(structured_blend.get_state(), data_fingerprint="structured")
    loaded = registry.load(published.version).model
    assert isinstance(loaded, BlendRecommender)
    test = structured_split.test
    np.testing.assert_array_equal(
        loaded.predict(test["user_id"], test["product_id"]),
        structured_blend.predict(test["user_id"], test["product_id"]),
    )
    users = structured_blend.user_ids[:20].tolist()
    for user, ranked in structured_blend.recommend(users, 10).lists.items():
        again = loaded.recommend(users, 10).lists[user]
        np.testing.assert_array_equal(again.product_ids, ranked.product_ids)
        np.testing.assert_array_equal(again.scores, ranked.scores)
    with np.load(tmp_path / "models" / published.version / "arrays.npz") as stored:
        assert all(stored[name].dtype.kind in "iuf" for name in stored.files)  # no pickle
