"""The two-stage ranker: validation parts, features, artifact, fold-in, explanations, fallback."""

import functools
import json
import logging
import zipfile

import lightgbm
import numpy as np
import pandas as pd
import pytest

from recsys.models.compiled import numpy_sum, numpy_sum_of_squares, weighted_row_sums_at
from recsys.models.profile import Profile
from recsys.models.ranker import LAMBDARANK, RANK_FUSION, RankerRecommender
from recsys.models.ranker_features import (
    FEATURES,
    ITEM_FEATURES,
    STAGE_ONE,
    candidate_features,
    feature_rows,
    item_features,
    proposals,
    validation_parts,
)
from recsys.store.artifact_files import MODEL_PREFIX
from recsys.store.artifacts import ModelRegistry
from tests.builders import BUNDLED_LOG, buy, listed
from tests.models.test_model_contract import random_feedback, taste_group, two_taste_groups

DAY = 86_400


def timed_log(rows: list[tuple[int, int, float, int]]) -> pd.DataFrame:
    """Return a feedback frame of (user, product, rating, day) rows."""
    frame = pd.DataFrame(rows, columns=["user_id", "product_id", "rating", "timestamp"])
    frame["timestamp"] *= DAY
    return frame.assign(clicks=1, engagement=frame["rating"])


@functools.cache
def fitted_ranker() -> RankerRecommender:
    return RankerRecommender().fit(random_feedback(n_users=60, n_items=40, seed=5))


# -- the validation parts -----------------------------------------------------


def test_each_validation_part_is_the_users_next_latest_rows_and_learns_from_earlier_ones():
    # User 1 rated products 1-10 on days 1-10; user 2 only three products.
    log = timed_log([(1, p, 4.0, p) for p in range(1, 11)] + [(2, p, 4.0, p) for p in (1, 2, 3)])
    parts = validation_parts(log, fraction=0.1, min_rows=5, seed=0, parts=3)
    products = log["product_id"].to_numpy()
    user = log["user_id"].to_numpy()
    for number, (learn, held) in enumerate(parts):
        latest = 10 - number
        assert products[held].tolist() == [latest] and user[held].tolist() == [1]
        assert sorted(products[learn & (user == 1)].tolist()) == list(range(1, latest))
        assert sorted(products[learn & (user == 2)].tolist()) == [1, 2, 3]


def test_without_timestamps_the_validation_part_is_a_seeded_tenth_of_each_user():
    feedback = random_feedback(n_users=10, n_items=40, density=0.5, seed=1)
    first = validation_parts(feedback, 0.1, 5, seed=3)[0][1]
    assert np.array_equal(first, validation_parts(feedback, 0.1, 5, seed=3)[0][1])
    assert not np.array_equal(first, validation_parts(feedback, 0.1, 5, seed=4)[0][1])
    rows = feedback.groupby("user_id").size()
    held = feedback[first].groupby("user_id").size()
    expected = np.maximum(1, np.floor(0.1 * rows))
    assert held.to_dict() == expected.astype(int).to_dict()


def test_random_order_parts_are_disjoint_random_shares_that_learn_from_every_other_row():
    # Ten products rated on days 1-10 by each of three users.
    log = timed_log([(u, p, 4.0, p) for u in (1, 2, 3) for p in range(1, 11)])
    parts = validation_parts(log, fraction=0.2, min_rows=5, seed=0, parts=3, order="random")
    held = np.vstack([validation for _, validation in parts])
    assert held.sum(axis=0).max() == 1  # no row is held out twice
    for learn, validation in parts:
        assert np.array_equal(learn, ~validation)
        assert log[validation].groupby("user_id").size().tolist() == [2, 2, 2]
    # Random, not the latest: some part holds out a row older than day 9.
    assert (log.loc[held.any(axis=0), "timestamp"] < 9 * DAY).any()


def test_a_validation_parts_features_never_see_the_rows_it_is_labelled_with():
    learn = random_feedback(n_users=30, n_items=20, seed=4)
    user = int(learn["user_id"].iloc[0])
    # A product the user never rated, rated by others: the user's validation label.
    others = set(learn["product_id"]) - set(learn.loc[learn["user_id"] == user, "product_id"])
    product = max(others, key=lambda p: (learn["product_id"] == p).sum())
    validation = pd.DataFrame(
        {"user_id": [user], "product_id": [product], "clicks": [1], "engagement": [5.0]}
    ).assign(rating=5.0)
    ((features, labels),) = RankerRecommender()._labelled_candidates(learn, validation)
    assert labels.sum() == 1
    row = features[labels == 1][0]
    popularity = row[FEATURES.index("product popularity")]
    assert popularity == np.log1p(1000 * (learn["product_id"] == product).sum() / len(learn))


# -- the features ---------------------------------------------------------------


def test_product_features_count_users_shrink_ratings_and_measure_age_in_days():
    # Product 0 rated 5 by two users on days 0 and 10; product 1 rated 1 on day 4.
    log = timed_log([(1, 10, 5.0, 0), (2, 10, 5.0, 10), (1, 11, 1.0, 4)])
    users, items = np.array([0, 1, 0]), np.array([0, 0, 1])
    table = item_features(log, users, items, 2)
    overall = 11 / 3
    # Popularity: users per 1,000 rows (2 and 1 of 3 rows).
    np.testing.assert_allclose(table[:, 0], np.log1p(np.array([2, 1]) * 1000 / 3))
    np.testing.assert_allclose(table[:, 1], [(10 + 10 * overall) / 12, (1 + 10 * overall) / 11])
    # Recent = the log's last tenth of time (day 9 on): one row, product 0's.
    np.testing.assert_allclose(table[:, 2], np.log1p([1000, 0]))
    np.testing.assert_allclose(table[:, 3], [10, 6])  # age: days since the first rating
    np.testing.assert_allclose(table[:, 4], [0, 6])  # idle: days since the last rating


def test_candidates_are_the_best_unseen_products_of_ease_and_of_popularity_with_ranks():
    # Six products; the user has product 0. Each proposer proposes its 2 best unseen ones.
    ease = np.array([9.0, 5.0, 4.0, 3.0, 0.0, 0.0])  # 1, 2
    popular_order = np.array([0, 4, 3, 1, 2, 5])  # unseen: 4, 3
    items, ranks = proposals(ease, popular_order, np.array([0]), depth=2)
    assert items.tolist() == [1, 2, 3, 4]
    assert ranks.tolist() == [[1, 2, 3, 3], [3, 3, 2, 1]]  # past its depth: depth + 1


def plain_proposals(ease, popular_order, history, depth):
    """Return the candidates and their proposer ranks by their definitions."""
    unseen = [i for i in range(len(ease)) if i not in set(history.tolist())]
    take = min(depth, len(unseen))
    by_ease = sorted(unseen, key=lambda i: (-np.nan_to_num(ease[i], nan=-np.inf), i))[:take]
    by_popularity = [i for i in popular_order.tolist() if i in set(unseen)][:take]
    items = sorted(set(by_ease) | set(by_popularity))
    ranks = [
        [ranked.index(i) + 1.0 if i in ranked else depth + 1.0 for i in items]
        for ranked in (by_ease, by_popularity)
    ]
    return items, ranks


@pytest.mark.parametrize(
    ("ease", "history", "depth", "items", "ease_ranks"),
    [
        # Ties at the depth-th score: the lower items, ranked by item.
        ([1.0, 1, 5, 1, 1, 0], [2], 2, [0, 1, 4, 5], [1, 2, 3, 3]),
        # Products above the cut at higher items than the tie taken: still ascending.
        ([2.0, 0, 5, 2, 9, 0], [], 3, [0, 2, 3, 4, 5], [3, 2, 4, 1, 4]),
        # NaN scores count as -inf, after every number.
        ([np.nan, 1, np.nan, 0, 3, 2], [4, 5], 3, [0, 1, 2, 3], [3, 1, 4, 2]),
    ],
)
def test_ease_proposes_its_best_unseen_products_ties_by_ascending_item(
    ease, history, depth, items, ease_ranks
):
    popular_order = np.array([5, 4, 3, 2, 1, 0])
    found, ranks = proposals(np.array(ease), popular_order, np.array(history), depth)
    assert found.tolist() == items
    assert ranks[0].tolist() == ease_ranks


def test_proposals_are_the_proposers_definitions_with_many_ties():
    rng = np.random.default_rng(12)
    for _ in range(300):
        n_items = int(rng.integers(1, 120))
        history = np.sort(rng.choice(n_items, rng.integers(0, n_items + 1), replace=False))
        ease = np.round(rng.normal(size=n_items), int(rng.integers(0, 3)))
        ease[rng.random(n_items) < 0.05] = np.nan
        popular_order = rng.permutation(n_items)
        depth = int(rng.integers(1, 40))
        for scores in (ease, ease.astype(np.float32)):
            found, ranks = proposals(scores, popular_order, history, depth)
            items, expected = plain_proposals(scores, popular_order, history, depth)
            assert found.tolist() == items
            assert ranks.tolist() == expected


def test_candidate_features_rank_by_als_and_itemknn_among_the_candidates_and_standardise():
    items = np.array([1, 2, 3, 4])
    scores = np.array(
        [
            [5.0, 4.0, 3.0, 0.0],  # EASE
            [0.0, 0.0, 1.0, 2.0],  # ALS: 4, 3, then 1 and 2 tied (ascending item)
            [1.0, 0.0, 3.0, 0.0],  # item-kNN: 3, 1, then 2 and 4 tied
            np.log1p([5.0, 4, 3, 2]),  # popularity
        ]
    )
    ranks = np.array([[1.0, 2, 3, 3], [1, 2, 3, 3]])
    table = np.column_stack([np.log1p([6.0, 5, 4, 3, 2, 1]), np.zeros((6, 4))])
    rows = feature_rows(table)
    found = candidate_features(items, ranks, scores, rows, np.array([0]), np.array([2.0]))
    column = {name: found.features[:, i] for i, name in enumerate(FEATURES)}
    assert column["ease rank"].tolist() == [1, 2, 3, 3]
    assert column["als rank"].tolist() == [3, 4, 2, 1]
    assert column["itemknn rank"].tolist() == [2, 3, 1, 4]
    assert column["popular rank"].tolist() == [1, 2, 3, 3]
    np.testing.assert_allclose(column["ease score"], (scores[0] - 3.0) / scores[0].std())
    assert column["user activity"].tolist() == [np.log1p(1)] * 4
    assert column["user mean engagement"].tolist() == [2.0] * 4
    np.testing.assert_allclose(column["popularity gap"], np.log1p([5, 4, 3, 2]) - np.log1p(6))


def test_standardised_scores_are_exactly_minus_the_mean_over_the_spread_or_0_when_alike():
    rng = np.random.default_rng(3)
    items = np.arange(75)
    scores = rng.normal(size=(4, 75))
    scores[1] = 2.5  # ALS scores every candidate alike
    ranks = np.ones((2, 75))
    rows = feature_rows(rng.normal(size=(75, 5)))
    found = candidate_features(items, ranks, scores, rows, np.array([0]), np.array([1.0]))
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = np.sqrt(np.einsum("ij,ij->i", centred, centred) / 75)[:, None]
    expected = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    standard = found.features[:, [FEATURES.index(f"{m} score") for m in STAGE_ONE]]
    assert standard.T.tobytes() == expected.tobytes()
    assert not standard[:, 1].any()


def test_the_compiled_sums_are_numpys_to_the_bit():
    # The features must be the numbers stage 2 was trained on, whichever code made them.
    rng = np.random.default_rng(13)
    for n in [*range(0, 140), 255, 256, 257, 1000]:
        values = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3)
        assert numpy_sum(values, 0, n) == np.add.reduce(values)
        assert numpy_sum_of_squares(values) == np.einsum("i,i->", values, values)


def plain_candidate_features(items, proposer_ranks, scores, table, history, engagement):
    """Return the candidates' features one feature at a time, by their definitions."""
    n = len(items)
    column = {}
    for m, model in enumerate(STAGE_ONE):
        centred = scores[m] - scores[m].mean()
        spread = np.sqrt(np.einsum("i,i->", centred, centred) / n)
        column[f"{model} score"] = centred / spread if spread > 0 else np.zeros(n)
    column["ease rank"], column["popular rank"] = proposer_ranks
    for m, model in ((1, "als"), (2, "itemknn")):
        best_first = sorted(range(n), key=lambda c, m=m: (-scores[m][c], items[c]))
        column[f"{model} rank"] = np.empty(n)
        column[f"{model} rank"][best_first] = np.arange(1, n + 1)
    for f, name in enumerate(ITEM_FEATURES):
        column[name] = table[items, f]
    column["user activity"] = np.full(n, np.log1p(len(history)))
    column["user mean engagement"] = np.full(n, engagement.mean() if len(engagement) else 0.0)
    usual = table[history, 0].mean() if len(history) else 0.0
    column["popularity gap"] = table[items, 0] - usual
    return np.column_stack([column[name] for name in FEATURES])


def test_candidate_features_are_each_features_plain_computation_to_the_bit():
    rng = np.random.default_rng(11)
    n_items = 300
    table = np.column_stack(
        [np.log1p(rng.integers(0, 500, n_items)), rng.normal(size=(n_items, 4))]
    )
    rows = feature_rows(table)
    for _ in range(200):
        history = np.sort(rng.choice(n_items, rng.integers(0, 20), replace=False))
        engagement = rng.random(len(history)) * 5
        ease = rng.normal(size=n_items)
        items, ranks = proposals(ease.copy(), np.argsort(-table[:, 0], kind="stable"), history, 40)
        scores = np.vstack(
            [ease[items], rng.normal(size=len(items)), rng.normal(size=len(items)), table[items, 0]]
        )
        if rng.random() < 0.3:  # a scorer the trees never read scores every candidate 0
            scores[rng.integers(1, 3)] = 0.0
        if rng.random() < 0.3:  # and ties in a ranking
            scores[2] = np.round(scores[2])
        found = candidate_features(items, ranks, scores, rows, history, engagement)
        expected = plain_candidate_features(items, ranks, scores, table, history, engagement)
        assert found.features.tobytes() == expected.tobytes()


def test_a_served_answer_has_the_training_time_rows_candidates_and_features_but_als():
    model = fitted_ranker()
    user = int(model.user_ids[3])
    profile = Profile.from_feedback(
        random_feedback(n_users=60, n_items=40, seed=5).query(f"user_id == {user}")
    )
    (at_fit,) = model._candidates(np.array([3]))
    served = model._profile_candidates(*model.profile_items(profile))
    assert served.items.tolist() == at_fit.items.tolist()
    # ALS's fit-time user factors come from its last sweep; a fold-in solves them anew.
    same = [i for i, name in enumerate(FEATURES) if not name.startswith("als")]
    np.testing.assert_allclose(served.features[:, same], at_fit.features[:, same], atol=1e-6)


def test_item_knn_sums_at_the_candidates_are_its_catalog_rows_sums_there():
    model = fitted_ranker()
    knn = model.models["itemknn"]
    weights = knn._weights
    feedback = random_feedback(n_users=60, n_items=40, seed=5)
    rng = np.random.default_rng(8)
    for user in model.user_ids[:20].tolist():
        items, engagement = model.profile_items(
            Profile.from_feedback(feedback[feedback["user_id"] == user])
        )
        at = np.sort(rng.choice(len(model.product_ids), 15, replace=False))
        sums = weighted_row_sums_at(
            weights.indptr, weights.indices, weights.data, items, engagement, at, weights.shape[1]
        )
        assert sums.tobytes() == knn._score_profile(items, engagement)[at].tobytes()


# -- training and its fallback --------------------------------------------------------


def test_stage_two_is_lambdarank_trained_on_validation_users():
    model = fitted_ranker()
    assert model.trained["stage_two"] == LAMBDARANK
    assert model.trained["validation_users"] >= model.min_validation_users
    assert model._booster.num_trees() == model.trees


@pytest.mark.parametrize(
    ("feedback", "settings", "reason"),
    [
        (random_feedback(n_users=8, n_items=4, seed=2), {}, "no user has 5 rows"),
        (random_feedback(seed=2), {"min_validation_users": 10_000}, "validation users have"),
    ],
    ids=["users too short to hold rows out", "too few validation users"],
)
def test_data_too_small_for_stage_two_falls_back_to_rank_fusion_and_says_why(
    feedback, settings, reason, caplog
):
    with caplog.at_level(logging.WARNING, logger="recsys.models.ranker"):
        model = RankerRecommender(**settings).fit(feedback)
    assert model.trained["stage_two"] == RANK_FUSION
    assert reason in model.trained["fallback_reason"]
    assert "falls back to rank fusion" in caplog.text and reason in caplog.text
    user = int(model.user_ids[0])
    assert len(model.rank_user(user, 3)) == 3
    restored = RankerRecommender.from_state(model.get_state())
    assert restored.rank_user(user, 3).product_ids.tolist() == (
        model.rank_user(user, 3).product_ids.tolist()
    )


def test_rank_fusion_orders_candidates_by_their_summed_reciprocal_ranks():
    model = RankerRecommender(min_validation_users=10_000).fit(random_feedback(seed=2))
    user = int(model.user_ids[0])
    (found,) = model._candidates(np.array([0]))
    ranks = found.features[:, [FEATURES.index(f"{m} rank") for m in model.models]]
    fused = (1 / (60 + ranks)).sum(axis=1)
    best = found.items[np.lexsort((found.items, -fused))][:5]
    assert model.rank_user(user, 5).product_ids.tolist() == model.product_ids[best].tolist()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"depth": 0}, "depth, trees and validation_parts must be at least 1"),
        ({"leaves": 65}, "leaves must be at most 64"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
        ({"learning_rate": 0}, "learning_rate must be a positive number"),
        ({"learning_rate": float("inf")}, "learning_rate must be a positive number"),
        ({"validation_order": "latest"}, "validation_order must be one of time, random"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RankerRecommender(**settings)


# -- serving ----------------------------------------------------------------------


def test_a_new_users_history_folds_in_through_the_stage_one_models():
    model = RankerRecommender().fit(two_taste_groups(users_per_group=40))
    # A user the model never saw, who liked three products of the first group.
    profile = Profile.of({1: 5.0, 2: 5.0, 3: 5.0})
    ranked = model.rank_profile(profile, 3)
    assert set(ranked.product_ids.tolist()) == taste_group(1) - {1, 2, 3}
    other = model.rank_profile(Profile.of({7: 5.0, 8: 5.0, 9: 5.0}), 3)
    assert set(other.product_ids.tolist()) == taste_group(60) - {7, 8, 9}


def test_products_the_user_has_come_after_every_candidate():
    model = fitted_ranker()
    user = int(model.user_ids[0])
    profile = Profile.from_feedback(
        random_feedback(n_users=60, n_items=40, seed=5).query(f"user_id == {user}")
    )
    ranked = model.rank_profile(profile, len(model.product_ids))
    tail = ranked.product_ids[-len(profile) :].tolist()
    assert len(ranked) == len(model.product_ids)
    assert set(profile.product_ids.tolist()) <= set(tail) | set(
        ranked.product_ids[: -len(profile)].tolist()
    )
    found = model._profile_candidates(*model.profile_items(profile))
    candidates = set(model.product_ids[found.items].tolist())
    assert set(ranked.product_ids[: len(candidates)].tolist()) == candidates
    assert not candidates & set(profile.product_ids.tolist())


def ranker_whose_trees_never_read(model_name: str) -> RankerRecommender:
    """Return a fitted ranker whose stage 2 was retrained without one scorer's features.

    The scorer's score and rank are constant where the trees learn, so no
    tree splits on them.
    """
    model = RankerRecommender().fit(random_feedback(n_users=60, n_items=40, seed=5))
    found = model._candidates(np.arange(len(model.user_ids)))
    features = np.vstack([c.features for c in found])
    features[:, [FEATURES.index(f"{model_name} score"), FEATURES.index(f"{model_name} rank")]] = 0
    ease_rank = features[:, FEATURES.index("ease rank")]
    data = lightgbm.Dataset(
        features, label=(ease_rank <= 3).astype(float), group=[len(c.items) for c in found]
    )
    trees = lightgbm.train(
        {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1},
        data,
        num_boost_round=10,
    )
    model._load_booster(np.frombuffer(trees.model_to_string().encode(), dtype=np.uint8))
    return model


@pytest.mark.parametrize("unread", ["als", "itemknn"])
def test_a_scorer_the_trees_never_split_on_is_not_run_and_changes_no_score(unread, monkeypatch):
    model = ranker_whose_trees_never_read(unread)
    assert model._unread == {unread}
    feedback = random_feedback(n_users=60, n_items=40, seed=5)
    profiles = [
        model.profile_items(Profile.from_feedback(feedback[feedback["user_id"] == user]))
        for user in model.user_ids[:10].tolist()
    ]
    skipping = [model._score_profile(*profile) for profile in profiles]
    model._unread = frozenset()  # run every scorer, as before the trees were read
    for profile, row in zip(profiles, skipping, strict=True):
        assert model._score_profile(*profile).tobytes() == row.tobytes()
    model._load_booster(model._booster_text)  # reading the trees again skips it again
    never = functools.partial(pytest.fail, f"{unread} ran")
    scorer = {
        "als": (model.models["als"], "fold_in"),
        "itemknn": (model.models["itemknn"], "_score_profile"),
    }
    monkeypatch.setattr(*scorer[unread], never)
    assert model._score_profile(*profiles[0]).tobytes() == skipping[0].tobytes()


def test_rank_fusion_runs_every_scorer():
    model = RankerRecommender(min_validation_users=10_000).fit(random_feedback(seed=2))
    assert model._unread == frozenset()


def test_ranking_among_the_candidates_gives_the_catalog_rows_list_under_any_mask():
    model = fitted_ranker()
    feedback = random_feedback(n_users=60, n_items=40, seed=5)
    rng = np.random.default_rng(7)
    products = model.product_ids.tolist()
    for user in model.user_ids[:12].tolist():
        items, engagement = model.profile_items(
            Profile.from_feedback(feedback[feedback["user_id"] == user])
        )
        candidates = len(model._profile_candidates(items, engagement).items)
        for n in (1, 5, candidates - 2, candidates, len(products)):
            chosen = rng.choice([*products, 999_999], size=rng.integers(0, 12))
            # Exclusions come as a request's set, a list (repeats too) or an array.
            exclude = (frozenset(chosen.tolist()), chosen.tolist(), chosen)[int(rng.integers(3))]
            allowed = rng.random(len(products)) < 0.8 if rng.random() < 0.5 else None
            fast = model.rank_resolved(items, engagement, max(n, 1), exclude, allowed)
            row = model.rank_scores(
                model._score_profile(items, engagement), max(n, 1), exclude, allowed
            )
            assert fast.product_ids.tolist() == row.product_ids.tolist()
            assert fast.scores.tobytes() == row.scores.tobytes()


# -- explanations -------------------------------------------------------------------


def test_feature_contributions_name_real_features_and_add_up_to_the_score():
    model = fitted_ranker()
    user = int(model.user_ids[2])
    feedback = random_feedback(n_users=60, n_items=40, seed=5)
    profile = Profile.from_feedback(feedback[feedback["user_id"] == user])
    ranked = model.rank_profile(profile, 3)
    for product, score in zip(ranked.product_ids.tolist(), ranked.scores.tolist(), strict=True):
        named = model.explain_features(profile, product, n=len(FEATURES))
        assert named and {name for name, _ in named} <= set(FEATURES)
        strengths = [abs(value) for _, value in named]
        assert strengths == sorted(strengths, reverse=True)
        item = int(np.searchsorted(model.product_ids, product))
        everything = model.feature_contributions(model.profile_items(profile), item)
        bias = model._booster.predict(np.zeros((1, len(FEATURES))), pred_contrib=True)[0, -1]
        # SHAP values: the contributions and the expected value make the score.
        assert sum(everything.values()) + bias == pytest.approx(score, abs=1e-9)
        assert len(model.explain_features(profile, product, n=2)) <= 2


def test_explaining_an_unknown_product_raises_key_error():
    with pytest.raises(KeyError):
        fitted_ranker().explain_features(Profile.of({100: 1.0}), 999_999)


# -- the artifact -----------------------------------------------------------------


def test_the_artifact_round_trip_keeps_rankings_and_holds_no_pickle(tmp_path):
    model = fitted_ranker()
    store = ModelRegistry(tmp_path)
    meta = store.publish(model.get_state(), data_fingerprint="test")
    loaded = store.load(meta.version).model
    assert isinstance(loaded, RankerRecommender)
    assert loaded.trained == model.trained
    for user in model.user_ids[:10].tolist():
        assert loaded.rank_user(user, 10).product_ids.tolist() == (
            model.rank_user(user, 10).product_ids.tolist()
        )
    profile = Profile.of({int(p): 3.0 for p in model.product_ids[:3]})
    np.testing.assert_array_equal(
        loaded.rank_profile(profile, 10).scores, model.rank_profile(profile, 10).scores
    )
    version = tmp_path / meta.version
    with zipfile.ZipFile(version / "arrays.npz") as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    with np.load(version / "arrays.npz", allow_pickle=False) as stored:
        assert all(not stored[name].dtype.hasobject for name in stored.files)
        text = bytes(stored[MODEL_PREFIX + "booster_text"]).decode()
    assert text.startswith("tree\n") and "objective=lambdarank" in text
    assert json.loads((version / "metadata.json").read_text())["params"]["trained"] == (
        model.trained
    )


def test_a_damaged_booster_text_is_refused_on_load():
    state = fitted_ranker().get_state()
    damaged = np.frombuffer(b"not a model".ljust(len(state.arrays["booster_text"])), np.uint8)
    arrays = {**state.arrays, "booster_text": damaged}
    with pytest.raises(ValueError, match="booster_text is not a LightGBM model"):
        RankerRecommender.from_state(type(state)(arrays=arrays, params=state.params))


# -- through /recommend --------------------------------------------------------------


@pytest.mark.slow
def test_recommend_serves_and_explains_the_ranker_and_folds_in_a_new_user(app_factory):
    app = app_factory(MODEL="ranker", DATA_PATH=str(BUNDLED_LOG))
    client = app.test_client()
    model = client.get("/model").get_json()
    assert model["model_type"] == "ranker"
    body = client.get("/recommend?user_id=1&n=5&explain=true").get_json()
    assert body["strategy"] == "ranker" and "fallback_reason" not in body
    assert len(body["recommendations"]) == 5
    log = pd.read_csv(BUNDLED_LOG)
    own = set(log.loc[log["user_id"] == 1, "product_clicked"].tolist())
    for item in body["recommendations"]:
        assert {reason["product_id"] for reason in item["because"]} <= own
    # A user the model never saw buys one product: folded in, a personal list at once.
    newcomer = int(log["user_id"].max()) + 1
    buy(client, newcomer, 3)
    answer = client.get(f"/recommend?user_id={newcomer}&n=5").get_json()
    assert answer["strategy"] == "ranker", answer
    assert 3 not in listed(client.get(f"/recommend?user_id={newcomer}&n=5"))
