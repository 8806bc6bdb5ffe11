"""Fold-in: every personal model scores a user from their products alone, as its maths says."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from recsys.models import MODELS
from recsys.models.als import ALSRecommender
from recsys.models.base import FOLD_IN
from recsys.models.ease import weighted_row_sum
from recsys.models.history import TrainingHistory
from recsys.models.profile import Profile
from recsys.models.state import ModelState
from recsys.models.svd import SVDRecommender
from tests.models.test_model_contract import random_feedback

FOLDING_MODELS = sorted(name for name, cls in MODELS.items() if FOLD_IN in cls.capabilities)
FEEDBACK = random_feedback(seed=11)


def profile_of(feedback: pd.DataFrame, user_id: int) -> Profile:
    return Profile.from_feedback(feedback[feedback["user_id"] == user_id])


def test_every_personal_model_folds_users_in():
    assert FOLDING_MODELS == ["als", "ease", "itemknn", "ranker", "svd"]


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_an_unchanged_user_gets_exactly_the_training_time_scores(name):
    model = MODELS[name]().fit(FEEDBACK)
    for inner, user in enumerate(model.user_ids.tolist()):
        items, engagement = model.profile_items(profile_of(FEEDBACK, user))
        trained = np.asarray(model._score(np.array([inner]))[0])
        assert np.array_equal(model._score_profile(items, engagement), trained), user


@pytest.mark.parametrize(
    ("n_items", "history"),
    [(1, 1), (2, 2), (20, 0), (20, 1), (20, 9), (200, 64), (200, 65), (200, 200)],
)
def test_eases_fold_in_sum_is_a_sparse_row_times_its_weights_bit_for_bit(n_items, history):
    rng = np.random.default_rng(n_items + history)
    # Rows of very different sizes: any other order of the additions rounds differently.
    scale = 10.0 ** rng.uniform(-4, 4, size=(n_items, 1))
    weights = (rng.standard_normal((n_items, n_items)) * scale).astype(np.float32)
    items = np.sort(rng.choice(n_items, size=history, replace=False))
    values = rng.uniform(0.5, 5, size=history).astype(np.float32)
    row = scipy.sparse.csr_matrix((values, items, [0, history]), shape=(1, n_items))
    expected = np.asarray(row @ weights)[0]
    assert weighted_row_sum(weights, items, values).tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_an_unchanged_user_gets_the_training_time_ranking(name):
    model = MODELS[name]().fit(FEEDBACK)
    user = int(model.user_ids[3])
    folded = model.rank_profile(profile_of(FEEDBACK, user), 10)
    trained = model.rank_user(user, 10)
    assert folded.product_ids.tolist() == trained.product_ids.tolist()
    np.testing.assert_array_equal(folded.scores, trained.scores)


def test_als_fold_in_solves_the_same_factors_as_implicits_recalculate_user():
    from implicit.cpu.als import AlternatingLeastSquares

    model = ALSRecommender(factors=8, iterations=5).fit(FEEDBACK)
    reference = AlternatingLeastSquares(factors=8, regularization=model.regularization)
    reference.item_factors = model.item_factors
    reference.user_factors = model.user_factors
    for user in model.user_ids[:20].tolist():
        items, engagement = model.profile_items(profile_of(FEEDBACK, user))
        confidence = (1.0 + model.alpha * engagement).astype(np.float32)
        row = scipy.sparse.csr_matrix(
            (confidence, items, [0, len(items)]), shape=(1, len(model.product_ids))
        )
        expected = reference.recalculate_user(0, row)
        # float32 (implicit) against float64 (ours): agree to 1e-4 of the factors' scale.
        np.testing.assert_allclose(
            model.fold_in(items, engagement), expected, atol=1e-4 * np.abs(expected).max()
        )


def test_als_fold_in_without_regularisation_falls_back_to_least_squares():
    # Five products cannot span eight factors: without lambda, W is singular
    # and the Cholesky solve refuses it.
    feedback = random_feedback(n_users=30, n_items=5, density=0.6, seed=3)
    model = ALSRecommender(factors=8, regularization=0.0, iterations=3).fit(feedback)
    items, engagement = model.profile_items(profile_of(feedback, int(model.user_ids[0])))
    gain = model.confidence_gain(engagement)
    mine = model._items64[items]
    expected = np.linalg.lstsq(model.user_weight(mine, gain), mine.T @ (gain + 1.0), rcond=None)[0]
    np.testing.assert_allclose(model.fold_in(items, engagement), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_factors": 0}, "n_factors must be a whole number of at least 1"),
        ({"n_factors": 2.5}, "n_factors must be a whole number of at least 1"),
        ({"n_epochs": 0}, "n_epochs must be a whole number of at least 1"),
        ({"n_epochs": True}, "n_epochs must be a whole number of at least 1"),
        ({"lr_all": 0.0}, "lr_all must be a positive number"),
        ({"lr_all": float("nan")}, "lr_all must be a positive number"),
        ({"reg_all": -0.1}, "reg_all and init_std_dev must be non-negative numbers"),
        ({"reg_all": float("inf")}, "reg_all and init_std_dev must be non-negative numbers"),
        ({"init_std_dev": -1.0}, "reg_all and init_std_dev must be non-negative numbers"),
    ],
)
def test_svd_refuses_settings_it_cannot_learn_with_by_their_name(params, message):
    with pytest.raises(ValueError, match=message):
        SVDRecommender(**params)


def test_svd_takes_numpy_whole_numbers_as_counts():
    model = SVDRecommender(n_factors=np.int64(3), n_epochs=np.int32(2))
    assert (model.n_factors, model.n_epochs) == (3, 2)
    assert type(model.n_factors) is int and type(model.n_epochs) is int


def test_svd_without_regularisation_folds_in_a_one_product_user_by_least_squares():
    # One rating cannot fix a bias and five factors: without reg_all the system
    # is singular, and the user still gets a list (the smallest-norm solution).
    model = SVDRecommender(reg_all=0.0, n_epochs=5).fit(FEEDBACK)
    product = int(model.product_ids[0])
    ranked = model.rank_profile(Profile.of({product: 4.0}), 5)
    assert len(ranked) == 5
    rows = model._fold_in_rows[[0]]
    target = np.array([4.0 - model.global_mean - model.item_bias[0]])
    expected = np.linalg.lstsq(rows.T @ rows, rows.T @ target, rcond=None)[0]
    bias, factors = model.fold_in(np.array([0]), np.array([4.0]))
    np.testing.assert_allclose([bias, *factors], expected, rtol=1e-9, atol=1e-12)


def test_als_fold_in_of_a_training_user_is_close_to_their_trained_factors():
    model = ALSRecommender(factors=8, iterations=15).fit(FEEDBACK)
    user = int(model.user_ids[0])
    items, engagement = model.profile_items(profile_of(FEEDBACK, user))
    folded = model.fold_in(items, engagement)
    trained = model.user_factors[0].astype(np.float64)
    assert np.corrcoef(folded, trained)[0, 1] > 0.99


def test_svd_fold_in_minimises_the_users_regularised_loss():
    model = SVDRecommender().fit(FEEDBACK)
    items, engagement = model.profile_items(profile_of(FEEDBACK, int(model.user_ids[2])))
    bias, factors = model.fold_in(items, engagement)
    ratings = np.clip(engagement, *model.rating_scale)

    def loss(b: float, p: np.ndarray) -> float:
        predicted = model.global_mean + model.item_bias[items] + b + model.item_factors[items] @ p
        return float(((ratings - predicted) ** 2).sum() + model.reg_all * (b * b + p @ p))

    best = loss(bias, factors)
    rng = np.random.default_rng(0)
    for _ in range(50):
        step = rng.normal(scale=1e-3, size=len(factors) + 1)
        assert loss(bias + step[0], factors + step[1:]) >= best


@pytest.mark.parametrize("name", FOLDING_MODELS)
def test_a_user_the_model_never_saw_gets_a_list_from_one_product(name):
    model = MODELS[name]().fit(FEEDBACK)
    product = int(model.product_ids[0])
    ranked = model.rank_profile(Profile.of({product: 1.0}), 5, exclude={product})
    assert len(ranked) == 5
    assert product not in ranked.product_ids.tolist()


@pytest.mark.parametrize("name", FOLDING_MODELS)
def test_a_second_product_changes_the_list(name):
    model = MODELS[name]().fit(FEEDBACK)
    first, second = (int(p) for p in model.product_ids[:2])
    one = model.rank_profile(Profile.of({first: 1.0}), 10)
    two = model.rank_profile(Profile.of({first: 1.0, second: 3.0}), 10)
    assert not np.array_equal(one.scores, two.scores)


@pytest.mark.parametrize("name", FOLDING_MODELS)
def test_a_profile_of_only_unknown_products_has_nothing_to_fold_in(name):
    model = MODELS[name]().fit(FEEDBACK)
    assert model.rank_profile(Profile.of({999_999: 2.0}), 5) is None
    assert model.rank_profile(Profile.empty(), 5) is None


def test_popularity_cannot_fold_in():
    model = MODELS["popular"]().fit(FEEDBACK)
    with pytest.raises(NotImplementedError, match="cannot fold"):
        model.rank_profile(Profile.of({int(model.product_ids[0]): 1.0}), 5)


def test_a_profile_needs_one_engagement_per_product():
    with pytest.raises(ValueError, match="one engagement per product"):
        Profile(np.array([1, 2]), np.array([1.0]))


def test_an_als_state_holds_the_factors_and_not_the_training_history():
    state = ALSRecommender(factors=8, iterations=3).fit(FEEDBACK).get_state()
    assert set(state.arrays) == {"user_ids", "product_ids", "user_factors", "item_factors"}


def test_an_als_artifact_of_an_earlier_release_with_its_training_history_still_loads():
    model = ALSRecommender(factors=8, iterations=3).fit(FEEDBACK)
    state = model.get_state()
    users = np.searchsorted(model.user_ids, FEEDBACK["user_id"].to_numpy())
    items = np.searchsorted(model.product_ids, FEEDBACK["product_id"].to_numpy())
    history = TrainingHistory.from_rows(
        users, items, 1.0 + FEEDBACK["engagement"].to_numpy(), len(model.user_ids)
    )
    earlier = ModelState(arrays={**state.arrays, **history.arrays()}, params=state.params)
    loaded = ALSRecommender.from_state(earlier)
    user = int(model.user_ids[0])
    assert (
        loaded.rank_user(user, 5).product_ids.tolist()
        == model.rank_user(user, 5).product_ids.tolist()
    )
    explained = loaded.explain(
        profile_of(FEEDBACK, user), int(loaded.rank_user(user, 1).product_ids[0])
    )
    assert len(explained) > 0


@pytest.mark.parametrize("name", FOLDING_MODELS)
def test_a_profile_resolved_once_ranks_as_the_profile_itself(name):
    model = MODELS[name]().fit(FEEDBACK)
    allowed = np.arange(len(model.product_ids)) % 2 == 0
    for user in model.user_ids.tolist()[:5]:
        profile = profile_of(FEEDBACK, user)
        banned = set(profile.product_ids.tolist()[:2])
        whole = model.rank_profile(profile, 7, exclude=banned, allowed=allowed)
        resolved = model.rank_resolved(*model.profile_items(profile), 7, banned, allowed)
        assert whole is not None and resolved is not None
        np.testing.assert_array_equal(resolved.product_ids, whole.product_ids)
        np.testing.assert_array_equal(resolved.scores, whole.scores)
