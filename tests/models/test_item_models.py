"""EASE and item-kNN against references computed by hand; SVD's ranking score; explanations."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from recsys.data.loaders import load_dataset
from recsys.models import MODELS
from recsys.models.als import ALSRecommender, seeded_factors
from recsys.models.base import EXPLAIN
from recsys.models.ease import EASERecommender, ease_weights
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.profile import Profile
from recsys.models.svd import SVDRecommender
from tests.builders import BUNDLED_LOG
from tests.models.test_model_contract import FEEDBACK, random_feedback

EXPLAINING_MODELS = sorted(name for name, cls in MODELS.items() if EXPLAIN in cls.capabilities)


def feedback_from_matrix(matrix: np.ndarray) -> pd.DataFrame:
    """Return a feedback frame whose engagement matrix (users 1.., products 1..) is ``matrix``."""
    users, items = np.nonzero(matrix)
    values = matrix[users, items].astype(float)
    return pd.DataFrame(
        {
            "user_id": users + 1,
            "product_id": items + 1,
            "clicks": 1,
            "engagement": values,
            "rating": values,
        }
    )


def steck_closed_form(matrix: np.ndarray, l2: float) -> np.ndarray:
    """EASE as the paper writes it: P = (X^T X + lambda I)^-1, B = I - P diag(1/diag(P))."""
    precision = np.linalg.inv(matrix.T @ matrix + l2 * np.eye(matrix.shape[1]))
    weights = np.eye(matrix.shape[1]) - precision @ np.diag(1.0 / np.diag(precision))
    np.fill_diagonal(weights, 0.0)  # zero already, up to rounding
    return weights


# Three users, four products: fewer users than products (the Woodbury route).
WIDE = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=float)
# Five users, three products (the direct inversion).
TALL = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1], [2, 0, 1]], dtype=float)


def test_ease_weights_for_a_hand_sized_matrix():
    # By hand: X^T X + I for TALL is [[8,2,4],[2,4,2],[4,2,5]]; B's columns are -P[:, j] / P[j, j].
    gram = TALL.T @ TALL + np.eye(3)
    np.testing.assert_array_equal(gram, [[8, 2, 4], [2, 4, 2], [4, 2, 5]])
    precision = np.linalg.inv(gram)
    expected_b01 = -precision[0, 1] / precision[1, 1]
    weights = ease_weights(TALL, 1.0)
    assert weights[0, 1] == pytest.approx(expected_b01)
    np.testing.assert_allclose(np.diag(weights), 0.0)


@pytest.mark.parametrize("matrix", [WIDE, TALL], ids=["fewer-users", "fewer-products"])
def test_ease_weights_equal_the_papers_closed_form(matrix):
    np.testing.assert_allclose(
        ease_weights(matrix, 2.0), steck_closed_form(matrix, 2.0), atol=1e-12
    )


def test_ease_scores_are_the_users_row_times_the_weights():
    model = EASERecommender(l2=2.0).fit(feedback_from_matrix(TALL))
    expected = TALL @ steck_closed_form(TALL, 2.0)
    np.testing.assert_allclose(model._score(np.arange(5)), expected, rtol=1e-5, atol=1e-6)


def brute_force_knn_scores(matrix: np.ndarray, neighbours: int, shrinkage: float) -> np.ndarray:
    """Item-kNN by loops: cosine with shrinkage, each target's k best, summed over history."""
    binary = (matrix > 0).astype(float)
    n_items = matrix.shape[1]
    similarity = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i != j:
                shared = binary[:, i] @ binary[:, j]
                norm = np.sqrt(binary[:, i].sum() * binary[:, j].sum())
                similarity[i, j] = shared / (norm + shrinkage)
    scores = np.zeros(matrix.shape)
    for j in range(n_items):
        others = [i for i in range(n_items) if i != j]
        # Best first, ties by ascending index.
        kept = sorted(others, key=lambda i: (-similarity[j, i], i))[:neighbours]
        for u in range(matrix.shape[0]):
            scores[u, j] = sum(similarity[i, j] * matrix[u, i] for i in kept)
    return scores


@pytest.mark.parametrize(("neighbours", "shrinkage"), [(3, 0.0), (5, 2.0), (100, 10.0)])
def test_itemknn_scores_equal_a_brute_force_reference(neighbours, shrinkage):
    rng = np.random.default_rng(1)
    matrix = (rng.random((12, 9)) < 0.4) * rng.integers(1, 6, (12, 9))
    matrix[0, :] = 1  # every user and product appears
    matrix[:, 0] = 1
    model = ItemKNNRecommender(neighbours=neighbours, shrinkage=shrinkage)
    model.fit(feedback_from_matrix(matrix.astype(float)))
    expected = brute_force_knn_scores(matrix.astype(float), neighbours, shrinkage)
    np.testing.assert_allclose(model._score(np.arange(12)), expected, atol=1e-12)


def test_svd_ranks_by_shrunk_predicted_rating_plus_log_liked_count():
    model = SVDRecommender(popularity_weight=0.5, support_shrinkage=3.0, liked_rating=4.0)
    model.fit(FEEDBACK)
    user = int(model.user_ids[0])
    scores = model._score(np.array([0]))[0]
    predicted = model.predict(np.full(len(model.product_ids), user), model.product_ids)
    counts = FEEDBACK.groupby("product_id").size().reindex(model.product_ids).to_numpy()
    liked = (
        FEEDBACK[FEEDBACK["rating"] >= 4]
        .groupby("product_id")
        .size()
        .reindex(model.product_ids, fill_value=0)
        .to_numpy()
    )
    baseline = model.global_mean + model.user_bias[0]
    expected = baseline + counts / (counts + 3.0) * (predicted - baseline)
    # predict clips to the rating scale; the ranking score does not.
    unclipped = (predicted > 1) & (predicted < 5)
    np.testing.assert_allclose(
        scores[unclipped], (expected + 0.5 * np.log1p(liked))[unclipped], rtol=1e-12
    )


def test_svd_without_popularity_or_shrinkage_ranks_by_predicted_rating():
    model = SVDRecommender(popularity_weight=0.0, support_shrinkage=0.0).fit(FEEDBACK)
    ranked = model.recommend([int(model.user_ids[0])], 5).lists[int(model.user_ids[0])]
    predicted = model.predict(np.full(5, model.user_ids[0]), ranked.product_ids)
    assert list(predicted) == sorted(predicted, reverse=True)


@pytest.mark.parametrize("name", EXPLAINING_MODELS)
def test_explanations_name_only_the_users_own_past_products_by_weight(name):
    feedback = random_feedback(seed=3)
    model = MODELS[name]().fit(feedback)
    history = feedback.groupby("user_id")["product_id"].apply(set).to_dict()
    explained = 0
    for user in model.user_ids[:10].tolist():
        ranked = model.recommend([user], 3, exclude=history).lists[user]
        for product in ranked.product_ids.tolist():
            because = model.explain(profile_of(feedback, user), product, 3)
            assert set(because.product_ids.tolist()) <= history[user]
            assert (because.scores > 0).all()
            assert list(because.scores) == sorted(because.scores, reverse=True)
            explained += len(because)
    assert explained > 0


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_item_model_explanations_add_up_to_the_score(name):
    model = MODELS[name]().fit(FEEDBACK)
    user, item = 0, 3
    past, engagement = model.profile_items(profile_of(FEEDBACK, int(model.user_ids[user])))
    weights = model._contributions(past, engagement, item)
    assert weights.sum() == pytest.approx(model._score(np.array([user]))[0, item], rel=1e-5)


def test_ease_explanation_weights_are_engagement_times_item_weights():
    model = EASERecommender(l2=2.0).fit(feedback_from_matrix(TALL))
    weights = steck_closed_form(TALL, 2.0)
    # User 5 (row 4) engaged 2 with product 1 and 1 with product 3; explain product 2.
    expected = {1: 2.0 * weights[0, 1], 3: 1.0 * weights[2, 1]}
    positive = sorted((p for p in expected if expected[p] > 0), key=lambda p: -expected[p])
    because = model.explain(Profile.of({1: 2.0, 3: 1.0}), 2, 3)
    assert because.product_ids.tolist() == positive
    np.testing.assert_allclose(because.scores, [expected[p] for p in positive], rtol=1e-5)


def test_explaining_an_unknown_product_raises_key_error():
    model = EASERecommender().fit(FEEDBACK)
    with pytest.raises(KeyError):
        model.explain(profile_of(FEEDBACK, int(model.user_ids[0])), 999_999)


def test_popularity_cannot_explain():
    model = MODELS["popular"]().fit(FEEDBACK)
    with pytest.raises(NotImplementedError, match="cannot explain"):
        model.explain(profile_of(FEEDBACK, int(model.user_ids[0])), int(model.product_ids[0]))


def profile_of(feedback, user_id: int) -> Profile:
    """Return one user's training rows as a profile."""
    return Profile.from_feedback(feedback[feedback["user_id"] == user_id])


@pytest.mark.parametrize(
    ("weighting", "alpha", "expected"),
    [("engagement", 0.5, lambda e: 1 + 0.5 * e), ("binary", 4.0, lambda e: np.full(len(e), 5.0))],
)
def test_als_confidence_grows_with_engagement_or_is_one_value_when_binary(
    weighting, alpha, expected
):
    model = ALSRecommender(alpha=alpha, weighting=weighting, iterations=1).fit(FEEDBACK)
    engagement = FEEDBACK["engagement"].to_numpy(dtype=float)
    users = np.searchsorted(model.user_ids, FEEDBACK["user_id"].to_numpy())
    items = np.searchsorted(model.product_ids, FEEDBACK["product_id"].to_numpy())
    matrix = model.confidence_matrix(FEEDBACK, users, items)
    np.testing.assert_allclose(matrix[users, items].A1, expected(engagement), rtol=1e-6)


def test_binary_als_is_implicits_als_on_binary_input():
    """Ours with alpha a - 1 and binary weighting = implicit given 0/1 input, alpha a, our start."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    ours = ALSRecommender(
        factors=8, regularization=5.0, alpha=4.0, iterations=5, weighting="binary"
    ).fit(FEEDBACK)
    users = np.searchsorted(ours.user_ids, FEEDBACK["user_id"].to_numpy())
    items = np.searchsorted(ours.product_ids, FEEDBACK["product_id"].to_numpy())
    binary = scipy.sparse.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)),
        shape=(len(ours.user_ids), len(ours.product_ids)),
    )
    with threadpool_limits(1, "blas"):
        theirs = AlternatingLeastSquares(
            factors=8, regularization=5.0, alpha=5.0, iterations=5, num_threads=1
        )
        theirs.user_factors, theirs.item_factors = ours.initial_factors()
        theirs.fit(binary, show_progress=False)
    np.testing.assert_allclose(ours.user_factors, theirs.user_factors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.item_factors, theirs.item_factors, rtol=1e-4, atol=1e-5)


def test_als_starts_each_id_from_its_own_draws_whatever_ids_come_with_it():
    few = seeded_factors(np.array([5, 9]), 8, seed=42)
    many = seeded_factors(np.array([1, 5, 7, 9]), 8, seed=42)
    np.testing.assert_array_equal(few, many[[1, 3]])
    assert few.dtype == np.float32 and ((few >= 0) & (few < 0.01)).all()
    assert not np.array_equal(few, seeded_factors(np.array([5, 9]), 8, seed=43))


def test_an_als_refit_without_its_first_user_learns_nearly_the_same_product_factors():
    feedback = load_dataset(BUNDLED_LOG).feedback
    first = ALSRecommender().fit(feedback)
    # Without the lowest user id, every other user sits one row higher.
    again = ALSRecommender().fit(feedback[feedback["user_id"] != feedback["user_id"].min()])
    np.testing.assert_array_equal(first.product_ids, again.product_ids)
    moved = np.abs(again.item_factors - first.item_factors).max()
    # implicit's own start (drawn in matrix order) moved them by 1.25x their largest.
    assert moved < 0.1 * np.abs(first.item_factors).max()


def test_binary_als_folds_in_a_history_whatever_its_engagement():
    model = ALSRecommender(weighting="binary", iterations=3).fit(FEEDBACK)
    items = np.array([0, 2, 5])
    np.testing.assert_allclose(
        model.fold_in(items, np.array([1.0, 1.0, 1.0])), model.fold_in(items, np.array([5.0, 2, 9]))
    )


def test_als_with_a_minimum_engagement_learns_what_it_learns_from_the_liked_pairs_alone():
    liked = FEEDBACK[FEEDBACK["engagement"] >= 4]
    ours = ALSRecommender(iterations=3, min_engagement=4.0).fit(FEEDBACK)
    alone = ALSRecommender(iterations=3).fit(liked)
    np.testing.assert_array_equal(ours.product_ids, alone.product_ids)
    np.testing.assert_array_equal(ours.item_factors, alone.item_factors)


def test_als_with_a_minimum_engagement_folds_in_and_explains_only_the_liked_pairs():
    model = ALSRecommender(iterations=3, min_engagement=4.0).fit(FEEDBACK)
    items, engagement = np.array([0, 2, 5, 7]), np.array([5.0, 1.0, 4.0, 2.0])
    liked = engagement >= 4
    np.testing.assert_array_equal(
        model.fold_in(items, engagement), model.fold_in(items[liked], engagement[liked])
    )
    contributions = model._contributions(items, engagement, 3)
    np.testing.assert_array_equal(contributions[~liked], 0.0)
    assert contributions[liked].sum() == pytest.approx(
        float(model._items64[3] @ model.fold_in(items, engagement))
    )


@pytest.mark.parametrize(
    "params", [{"regularization": -1.0}, {"alpha": -0.5}, {"min_engagement": -1.0}]
)
def test_negative_als_settings_are_refused_with_their_names(params):
    with pytest.raises(ValueError, match="regularization, alpha and min_engagement must be"):
        ALSRecommender(**params)


def test_als_weighting_survives_the_artifact_round_trip():
    model = ALSRecommender(weighting="binary", iterations=2).fit(FEEDBACK)
    loaded = ALSRecommender.from_state(model.get_state())
    assert loaded.weighting == "binary"


def test_an_unknown_als_weighting_is_refused():
    with pytest.raises(ValueError, match="weighting must be one of engagement, binary"):
        ALSRecommender(weighting="log")
