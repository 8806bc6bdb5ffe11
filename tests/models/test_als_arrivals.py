"""ALS's new arrivals: products first seen late in the training log are lifted in every ranking."""

import math

import numpy as np
import pandas as pd
import pytest

from recsys.data.ratings import derive_ratings
from recsys.models.als import ALSRecommender
from recsys.models.arrivals import arrival_facts, arrival_lifts, lifted
from recsys.models.profile import Profile
from recsys.models.state import ModelState
from tests.models.test_model_contract import random_feedback

START = pd.Timestamp("2025-01-01")
DAY = pd.Timedelta(days=1)
LATE = 114  # product 7 of random_feedback (ids 100, 102, ...)
ARRIVALS = {"arrival_days": 100.0, "arrival_lift": 1.0, "uptake_lift": 0.5}


def timed_feedback(seed: int = 3, late_product: int | None = None) -> pd.DataFrame:
    """Random feedback over 400 days; ``late_product``'s pairs all fall in the last 10 days."""
    feedback = random_feedback(n_users=40, n_items=25, seed=seed)
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 400, len(feedback)).astype(np.float64)
    if late_product is not None:
        late = feedback["product_id"].to_numpy() == late_product
        days[late] = 390 + rng.integers(0, 10, int(late.sum()))
    feedback["timestamp"] = START + pd.to_timedelta(days, unit="D")
    return feedback


def test_a_products_age_and_uptake_are_counted_from_its_first_row_to_the_logs_last():
    # Product 0 first seen on day 0, product 1 on day 390; the log ends on day 400.
    timestamps = pd.Series(START + DAY * np.array([0, 200, 390, 395, 400, 400]))
    items = np.array([0, 0, 1, 1, 1, 0])
    age_days, uptake = arrival_facts(timestamps, timestamps, items, 3)
    assert age_days.tolist() == [400.0, 10.0, 0.0]  # product 2 has no row: as new as the end
    # Product 0: 3 rows over 400 days; product 1: 3 rows over 10 days, counted as 30.
    assert uptake[:2] == pytest.approx([math.log1p(3 * 30 / 400), math.log1p(3.0)])
    assert uptake[2] == 0.0


def test_an_old_product_bought_again_lately_by_all_its_buyers_is_not_new():
    # Five customers bought product 5 on day 0 and again on day 395; product 6 arrived on day 390.
    days = [0, 395] * 5 + [390, 400]
    log = pd.DataFrame(
        {
            "user_id": [u for u in range(1, 6) for _ in range(2)] + [1, 2],
            "product_clicked": [5] * 10 + [6, 6],
            "purchased": 1,
            "timestamp": START + DAY * np.array(days),
        }
    )
    feedback = derive_ratings(log)
    assert (feedback["first_timestamp"] <= feedback["timestamp"]).all()
    model = ALSRecommender(factors=2, iterations=2, arrival_days=30.0, arrival_lift=1.0)
    model.fit(feedback)
    assert model._lifts.tolist() == [0.0, 1.0]  # product 6 only: product 5 began on day 0


@pytest.mark.parametrize(
    ("days", "arrival_lift", "uptake_lift", "expected"),
    [
        (0.0, 1.0, 1.0, None),  # no window: nothing is new
        (5.0, 1.0, 1.0, None),  # nothing this young
        (50.0, 1.0, 0.0, [0.0, 1.0]),
        (50.0, 1.0, 2.0, [0.0, 1.0 + 2.0 * 0.5]),
        (500.0, 0.0, 2.0, [2.0 * 0.25, 2.0 * 0.5]),
        (50.0, 0.0, 0.0, None),  # new, but lifted by nothing
    ],
)
def test_new_products_are_lifted_by_the_arrival_lift_and_their_uptake(
    days, arrival_lift, uptake_lift, expected
):
    lifts = arrival_lifts(
        np.array([400.0, 10.0]), np.array([0.25, 0.5]), days, arrival_lift, uptake_lift
    )
    assert (lifts is None) if expected is None else lifts.tolist() == pytest.approx(expected)


def test_a_lift_of_one_moves_a_product_up_by_one_standard_deviation_of_the_users_scores():
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], dtype=np.float32)
    raised = lifted(scores, np.array([0.0, 0.0, 1.0], dtype=np.float32))
    spread = scores.std(axis=1)
    assert raised[:, 2] == pytest.approx(scores[:, 2] + spread)
    assert np.array_equal(raised[:, :2], scores[:, :2])
    # A row of equal scores is ordered by the lifts alone.
    assert lifted(np.ones(3, dtype=np.float32), np.array([0, 2, 1], dtype=np.float32)).argmax() == 1


def test_a_product_arriving_late_rises_in_every_users_list_with_arrivals_on():
    feedback = timed_feedback(late_product=LATE)
    plain = ALSRecommender(factors=8, iterations=5).fit(feedback)
    with_arrivals = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(feedback)
    users = [
        u
        for u in plain.user_ids
        if LATE not in set(feedback.loc[feedback.user_id == u, "product_id"])
    ]
    ranks = {}
    for name, model in (("plain", plain), ("arrivals", with_arrivals)):
        lists = model.recommend(users, 25).lists
        ranks[name] = np.array([list(lists[u].product_ids).index(LATE) for u in users])
    assert (ranks["arrivals"] <= ranks["plain"]).all() and (
        ranks["arrivals"] < ranks["plain"]
    ).any()
    # The factors are the same: only the ranking changes.
    assert np.array_equal(plain.user_factors, with_arrivals.user_factors)


def test_rank_with_gives_the_ranking_of_a_fit_with_those_arrivals():
    feedback = timed_feedback(late_product=LATE)
    refit = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(feedback)
    reranked = ALSRecommender(factors=8, iterations=5).fit(feedback).rank_with(**ARRIVALS)
    assert np.array_equal(refit._score(np.arange(40)), reranked._score(np.arange(40)))
    assert reranked.params() == refit.params()
    off = reranked.rank_with(arrival_days=0.0)
    assert np.array_equal(off._score(np.arange(3)), off.user_factors[:3] @ off.item_factors.T)


def test_a_folded_in_user_is_lifted_as_a_known_user_is():
    feedback = timed_feedback(late_product=LATE)
    model = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(feedback)
    (user,) = np.flatnonzero(model.user_ids == model.user_ids[0])
    profile = Profile.from_feedback(feedback[feedback["user_id"] == model.user_ids[0]])
    folded = model._score_profile(*model.profile_items(profile))
    # The same lift on both paths: each row less its own unlifted scores is std(row) x lift.
    unlifted = model.item_factors @ model.fold_in(*model.profile_items(profile)).astype(np.float32)
    known = model._score(np.array([user]))[0]
    factors_only = model.user_factors[user] @ model.item_factors.T
    for row, plain in ((folded, unlifted), (known, factors_only)):
        assert row - plain == pytest.approx(plain.std() * model._lifts, rel=1e-5, abs=1e-6)
    assert model._lifts.max() > 0


def test_the_artifact_keeps_the_arrival_facts_and_a_loaded_model_ranks_alike():
    feedback = timed_feedback(late_product=LATE)
    model = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(feedback)
    state = model.get_state()
    assert {"item_age_days", "item_uptake"} <= set(state.arrays)
    loaded = ALSRecommender.from_state(ModelState(arrays=dict(state.arrays), params=state.params))
    assert np.array_equal(loaded._score(np.arange(40)), model._score(np.arange(40)))
    # The facts stay with the artifact: its lifts can be re-set without a refit.
    assert not np.array_equal(loaded.rank_with(uptake_lift=3.0)._lifts, model._lifts)


def test_without_arrivals_the_artifact_and_parameters_are_those_of_the_release_before():
    model = ALSRecommender(factors=8, iterations=5).fit(timed_feedback())
    state = model.get_state()
    assert set(state.arrays) == {"user_ids", "product_ids", "user_factors", "item_factors"}
    assert not {"arrival_days", "arrival_lift", "uptake_lift"} & set(model.params())
    assert not model.reads_times
    assert ALSRecommender(arrival_days=30.0).reads_times


def test_without_arrivals_a_timestamp_column_is_never_parsed():
    feedback = timed_feedback().assign(timestamp="not a time")
    ALSRecommender(factors=8, iterations=5).fit(feedback)  # no error: never read


def test_without_timestamps_no_product_is_lifted():
    feedback = random_feedback(n_users=40, n_items=25, seed=3)
    model = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(feedback)
    assert model._lifts is None
    assert set(model.get_state().arrays) == {
        "user_ids",
        "product_ids",
        "user_factors",
        "item_factors",
    }


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"item_age_days": np.zeros(3)}, "item_age_days has shape"),
        ({"item_uptake": np.full(25, np.nan)}, "item_uptake holds 25 NaN"),
    ],
)
def test_a_stored_model_with_broken_arrival_facts_is_refused_before_it_serves(arrays, message):
    state = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(timed_feedback()).get_state()
    broken = ModelState(arrays={**state.arrays, **arrays}, params=state.params)
    with pytest.raises(ValueError, match=message):
        ALSRecommender.validate_state(broken)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"arrival_days": -1.0}, "must be non-negative numbers"),
        ({"arrival_lift": math.inf}, "must be non-negative numbers"),
        ({"uptake_lift": math.nan}, "must be non-negative numbers"),
    ],
)
def test_refused_arrival_values_name_the_parameters_and_leave_the_model_as_it_was(values, message):
    model = ALSRecommender(factors=8, iterations=5, **ARRIVALS).fit(
        timed_feedback(late_product=LATE)
    )
    before = model._lifts.copy()
    with pytest.raises(ValueError, match=message):
        ALSRecommender(**values)
    with pytest.raises(ValueError, match=message):
        model.rank_with(**values)
    assert np.array_equal(model._lifts, before) and model.params()["arrival_days"] == 100.0
    with pytest.raises(ValueError, match="rank_with takes"):
        model.rank_with(factors=3)


def test_a_rank_with_whose_times_cannot_be_read_leaves_the_model_as_it_was():
    feedback = timed_feedback().assign(timestamp="not a time")
    model = ALSRecommender(factors=8, iterations=5).fit(feedback)
    with pytest.raises(ValueError):
        model.rank_with(arrival_days=30.0, arrival_lift=1.0)
    assert model.arrival_days == 0.0 and "arrival_days" not in model.params()
    assert model._lifts is None
