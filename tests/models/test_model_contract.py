"""The contract every model in MODELS keeps, checked once for all of them."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from recsys.models import MODELS
from recsys.models.base import SIMILAR_ITEMS, NotFittedError, Recommender
from recsys.models.state import ModelState

ALL_MODELS = sorted(MODELS)
PERSONAL_MODELS = [name for name in ALL_MODELS if name != "popular"]


def random_feedback(n_users=25, n_items=30, density=0.3, seed=0):
    """Return a feedback frame of random pairs with ratings 1-5."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    ratings = rng.integers(1, 6, len(users)).astype(float)
    return pd.DataFrame(
        {
            # Gaps in the ids, so inner indices and raw ids differ.
            "user_id": users * 3 + 7,
            "product_id": items * 2 + 100,
            "clicks": rng.integers(1, 4, len(users)),
            "engagement": ratings,
            "rating": ratings,
        }
    )


def two_taste_groups(users_per_group=30, seed=0):
    """Return feedback where the first group of users loves products 1-6, the other 7-12.

    Each user rated 4 of their group's 6 products 5 stars and one product of
    the other group 1 star; the right answer for a user is the 2 products of
    their group they have not seen.
    """
    rng = np.random.default_rng(seed)
    first, second = list(range(1, 7)), list(range(7, 13))
    rows = []
    for user in range(1, 2 * users_per_group + 1):
        own, other = (first, second) if user <= users_per_group else (second, first)
        rows += [(user, int(p), 5.0) for p in rng.choice(own, 4, replace=False)]
        rows.append((user, int(rng.choice(other)), 1.0))
    frame = pd.DataFrame(rows, columns=["user_id", "product_id", "rating"])
    return frame.assign(clicks=1, engagement=frame["rating"])


def taste_group(user, users_per_group=30):
    return set(range(1, 7)) if user <= users_per_group else set(range(7, 13))


FEEDBACK = random_feedback()


@pytest.fixture(params=ALL_MODELS)
def model_class(request) -> type[Recommender]:
    return MODELS[request.param]


@pytest.fixture
def fitted(model_class) -> Recommender:
    return model_class().fit(FEEDBACK)


def some_users(model, count=8):
    return model.user_ids[:count].tolist()


def test_fit_returns_the_model_itself(model_class):
    model = model_class()
    assert model.fit(FEEDBACK) is model


def test_recommending_before_fit_raises_not_fitted(model_class):
    with pytest.raises(NotFittedError):
        model_class().recommend([7], 3)


def test_recommend_returns_n_distinct_known_products_per_user(fitted):
    batch = fitted.recommend(some_users(fitted), 5)
    assert sorted(batch.lists) == sorted(some_users(fitted))
    for ranked in batch.lists.values():
        assert len(ranked) == 5
        assert len(set(ranked.product_ids.tolist())) == 5
        assert set(ranked.product_ids.tolist()) <= set(FEEDBACK["product_id"])


def test_lists_are_ordered_by_score_then_ascending_product_id(fitted):
    for ranked in fitted.recommend(some_users(fitted), 12).lists.values():
        keys = list(zip((-ranked.scores).tolist(), ranked.product_ids.tolist(), strict=True))
        assert keys == sorted(keys)


def test_excluded_products_never_appear(fitted):
    user = some_users(fitted)[0]
    first_list = fitted.recommend([user], 5).lists[user].product_ids.tolist()
    banned = set(first_list[:3])
    again = fitted.recommend([user], 5, exclude={user: banned}).lists[user].product_ids.tolist()
    assert not banned & set(again)
    assert again[:2] == first_list[3:5]


def test_a_list_is_shorter_only_when_fewer_products_remain(fitted):
    user = some_users(fitted)[0]
    catalog = fitted.product_ids.tolist()
    ranked = fitted.recommend([user], 100, exclude={user: set(catalog[:-4])}).lists[user]
    assert sorted(ranked.product_ids.tolist()) == catalog[-4:]


def test_unknown_users_are_reported_not_raised(fitted):
    known = some_users(fitted, 2)
    batch = fitted.recommend([known[0], 999_999, known[1], 1], 3)
    assert batch.unknown_users == [999_999, 1]
    assert sorted(batch.lists) == sorted(known)


@pytest.mark.parametrize("catalog_size", [30, 1_200], ids=["sorted whole", "partitioned"])
def test_ranking_one_user_gives_the_batch_list_with_the_same_filters(model_class, catalog_size):
    # Both sides of the small-catalog sort threshold, with ties (popular's
    # click counts repeat) and excluded and disallowed products.
    feedback = random_feedback(n_items=catalog_size, density=30 / catalog_size)
    model = model_class().fit(feedback)
    allowed = np.arange(len(model.product_ids)) % 3 != 0
    for user in some_users(model):
        banned = set(model.recommend([user], 4).lists[user].product_ids.tolist()[::2])
        for exclude, mask in [(None, None), (banned, None), (banned, allowed)]:
            batch = model.recommend([user], 15, exclude={user: exclude or set()}, allowed=mask)
            one = model.rank_user(user, 15, exclude=exclude, allowed=mask)
            assert one is not None
            np.testing.assert_array_equal(one.product_ids, batch.lists[user].product_ids)
            np.testing.assert_array_equal(one.scores, batch.lists[user].scores)
            keys = list(zip((-one.scores).tolist(), one.product_ids.tolist(), strict=True))
            assert keys == sorted(keys)
            assert len(one) == 15


def test_ranking_one_unknown_user_gives_none(fitted):
    assert fitted.rank_user(999_999, 5) is None
    assert fitted.rank_user(int(fitted.user_ids[-1]) + 1, 5) is None
    assert fitted.rank_user(-1, 5) is None


def test_fitting_twice_gives_identical_recommendations(model_class):
    first = model_class().fit(FEEDBACK)
    second = model_class().fit(FEEDBACK)
    users = some_users(first)
    for user, ranked in first.recommend(users, 10).lists.items():
        other = second.recommend(users, 10).lists[user]
        np.testing.assert_array_equal(ranked.product_ids, other.product_ids)
        np.testing.assert_array_equal(ranked.scores, other.scores)


def test_state_round_trip_through_npz_and_json_gives_identical_recommendations(fitted, tmp_path):
    state = fitted.get_state()
    np.savez(tmp_path / "arrays.npz", **state.arrays)
    (tmp_path / "params.json").write_text(json.dumps(state.params))
    with np.load(tmp_path / "arrays.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    params = json.loads((tmp_path / "params.json").read_text())
    restored = type(fitted).from_state(type(state)(arrays=arrays, params=params))

    users = some_users(fitted)
    for user, ranked in fitted.recommend(users, 10).lists.items():
        other = restored.recommend(users, 10).lists[user]
        np.testing.assert_array_equal(ranked.product_ids, other.product_ids)
        np.testing.assert_array_equal(ranked.scores, other.scores)


def test_state_shapes_declare_exactly_the_learned_arrays(fitted):
    learned = set(fitted.get_state().arrays) - {"user_ids", "product_ids"}
    assert learned == set(type(fitted).state_shapes)


def test_get_state_passes_validation_and_from_state_restores_every_array(fitted):
    state = fitted.get_state()
    restored = type(fitted).from_state(state)
    for name, array in restored.get_state().arrays.items():
        np.testing.assert_array_equal(array, state.arrays[name], err_msg=name)


# Every (model, learned array) pair, so each check names the array it covers.
LEARNED_ARRAYS = [
    pytest.param(model, array, id=f"{model}-{array}")
    for model in ALL_MODELS
    for array in MODELS[model].state_shapes
]


@functools.cache
def fitted_state(model: str) -> ModelState:
    return MODELS[model]().fit(FEEDBACK).get_state()


def state_with(model: str, array: str, value: np.ndarray | None) -> ModelState:
    """Return a model's state with one array replaced (None: left out)."""
    state = fitted_state(model)
    arrays = {k: v for k, v in state.arrays.items() if k != array}
    if value is not None:
        arrays[array] = value
    return ModelState(arrays=arrays, params=state.params)


@pytest.mark.parametrize(("model", "array"), LEARNED_ARRAYS)
def test_from_state_refuses_a_state_without_a_learned_array(model, array):
    with pytest.raises(ValueError, match=f"{array} is missing"):
        MODELS[model].from_state(state_with(model, array, None))


@pytest.mark.parametrize(("model", "array"), LEARNED_ARRAYS)
def test_from_state_refuses_a_learned_array_one_row_short(model, array):
    short = fitted_state(model).arrays[array][:-1]
    with pytest.raises(ValueError, match=f"{array} has shape"):
        MODELS[model].from_state(state_with(model, array, short))


@pytest.mark.parametrize(("model", "array"), LEARNED_ARRAYS)
def test_from_state_refuses_a_nan_in_a_learned_array(model, array):
    poisoned = fitted_state(model).arrays[array].astype(np.float64)
    poisoned.flat[-1] = np.nan
    with pytest.raises(ValueError, match=f"{array} holds 1 NaN"):
        MODELS[model].from_state(state_with(model, array, poisoned))


def test_state_arrays_are_numeric(fitted):
    for name, array in fitted.get_state().arrays.items():
        assert np.asarray(array).dtype.kind in "iuf", name


def test_similar_items_leave_out_the_product_itself_or_say_they_cannot(fitted):
    product = int(fitted.product_ids[0])
    if SIMILAR_ITEMS not in fitted.capabilities:
        with pytest.raises(NotImplementedError, match="cannot list similar items"):
            fitted.similar_items(product, 5)
        return
    ranked = fitted.similar_items(product, 5)
    assert len(ranked) == 5
    assert product not in ranked.product_ids.tolist()


@pytest.mark.parametrize("name", PERSONAL_MODELS)
def test_personal_models_rank_the_users_unseen_group_products_first(name):
    feedback = two_taste_groups()
    model = MODELS[name]().fit(feedback)
    seen = feedback.groupby("user_id")["product_id"].apply(set).to_dict()
    batch = model.recommend(seen, 2, exclude=seen)
    assert len(batch.lists) == len(seen)
    for user, ranked in batch.lists.items():
        assert set(ranked.product_ids.tolist()) == taste_group(user) - seen[user], user


@pytest.mark.parametrize("name", PERSONAL_MODELS)
def test_personal_models_find_similar_products_in_the_same_group(name):
    model = MODELS[name]().fit(two_taste_groups())
    assert set(model.similar_items(1, 5).product_ids.tolist()) == taste_group(1) - {1}


def full_sort_top_n(product_ids: np.ndarray, scores: np.ndarray, n: int) -> list[int]:
    """The n best finite scores by a sort of the whole row, ties by ascending product id."""
    pairs = zip(product_ids.tolist(), scores.tolist(), strict=True)
    return [p for _, p in sorted((-s, p) for p, s in pairs if np.isfinite(s))][:n]


@pytest.mark.parametrize(
    ("row", "n"),
    [
        ("ties", 10),  # scores rounded to one decimal: many tied with the n-th best
        ("excluded", 10),  # most products at -inf
        ("few finite", 10),  # fewer than n finite scores
        ("a NaN among the best", 5),
        ("ties", 1_500),  # more asked for than the row holds
    ],
)
def test_a_large_row_gives_the_n_best_finite_scores_ties_by_id(row, n):
    rng = np.random.default_rng(3)
    model = MODELS["popular"]().fit(random_feedback(n_items=1_200, density=0.05))
    size = len(model.product_ids)
    scores = np.round(rng.normal(size=size), 1)
    if row == "excluded":
        scores[rng.random(size) < 0.9] = -np.inf
    elif row == "few finite":
        scores[:] = -np.inf
        scores[[5, 50, 500]] = [1.0, 2.0, 1.0]
    elif row == "a NaN among the best":
        scores[np.argsort(-scores)[:2]] = np.nan
    ranked = model._top_n(scores.copy(), n)
    assert ranked.product_ids.tolist() == full_sort_top_n(model.product_ids, scores, n)
