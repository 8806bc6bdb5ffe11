"""EASE's recency: a user's latest products weigh more in the row their scores are summed from."""

import math

import numpy as np
import pandas as pd
import pytest

from recsys.models.ease import EASERecommender
from recsys.models.profile import Profile, epoch_seconds
from recsys.models.state import ModelState
from tests.models.test_model_contract import random_feedback

START = pd.Timestamp("2026-03-01 09:00:00")


def timed_feedback(seed: int = 3) -> pd.DataFrame:
    """Random feedback whose pairs each have a time (some share a second)."""
    feedback = random_feedback(seed=seed)
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 50, len(feedback)) * 60 + rng.uniform(0, 1, len(feedback))
    feedback["timestamp"] = START + pd.to_timedelta(seconds, unit="s")
    return feedback


def profile_of(feedback: pd.DataFrame, user_id: int) -> Profile:
    return Profile.from_feedback(feedback[feedback["user_id"] == user_id])


# One user; products 1-4 touched at 10:00, 10:05, 10:05 (the same second) and 10:30.
TINY = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 1, 2, 2, 3, 3],
        "product_id": [1, 2, 3, 4, 1, 2, 3, 4],
        "clicks": 1,
        "engagement": [2.0, 1.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
        "rating": [2.0, 1.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
        "timestamp": pd.to_datetime(
            [
                "2026-03-01 10:00:00",
                "2026-03-01 10:05:00.2",
                "2026-03-01 10:05:00.9",
                "2026-03-01 10:30:00",
                "2026-03-01 10:00:00",
                "2026-03-01 10:01:00",
                "2026-03-01 10:00:00",
                "2026-03-01 10:01:00",
            ],
            format="ISO8601",
        ),
    }
)


def test_the_kth_most_recent_product_weighs_exp_minus_k_over_recency_of_its_engagement():
    model = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    items, weights = model.history.of(0)
    # Product 4 is the latest (k=0); 2 and 3 share a second (k=1); 1 is the oldest (k=3).
    expected = {1: 2.0 * math.exp(-3 / 2), 2: 1.0 * math.exp(-1 / 2), 3: 3.0 * math.exp(-1 / 2)}
    expected[4] = 4.0
    got = dict(zip(model.product_ids[items].tolist(), weights.tolist(), strict=True))
    assert got == pytest.approx(expected)


def test_the_weights_b_are_learned_from_unweighted_engagement():
    weighted = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    plain = EASERecommender(l2=1.0).fit(TINY)
    assert np.array_equal(weighted.item_weights, plain.item_weights)
    assert not np.allclose(weighted._score(np.array([0])), plain._score(np.array([0])))


@pytest.mark.parametrize("recency", [1.0, 5.0, 50.0])
def test_an_unchanged_user_gets_exactly_the_training_time_scores_with_recency(recency):
    feedback = timed_feedback()
    model = EASERecommender(l2=50.0, recency=recency).fit(feedback)
    for inner, user in enumerate(model.user_ids.tolist()):
        items, engagement = model.profile_items(profile_of(feedback, user))
        trained = np.asarray(model._score(np.array([inner]))[0])
        assert np.array_equal(model._score_profile(items, engagement), trained), user


def test_a_new_event_makes_the_users_older_products_count_less():
    model = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    before = profile_of(TINY, 1)
    later = before.latest.max() + 60
    after = Profile(before.product_ids, before.engagement, before.latest.copy())
    after.latest[before.product_ids.tolist().index(1)] = later  # product 1 touched again, last
    _, weights_before = model.profile_items(before)
    _, weights_after = model.profile_items(after)
    assert weights_after[0] == 2.0  # product 1 is now the latest: full weight
    assert weights_after[3] == pytest.approx(4.0 * math.exp(-1 / 2))
    assert weights_before[0] < weights_after[0]


def test_a_product_the_model_does_not_know_still_counts_as_newer():
    model = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    known = profile_of(TINY, 1)
    with_new = Profile(
        np.append(known.product_ids, 99),
        np.append(known.engagement, 1.0),
        np.append(known.latest, known.latest.max() + 60),
    )
    items, weights = model.profile_items(with_new)
    assert model.product_ids[items].tolist() == [1, 2, 3, 4]
    assert weights[3] == pytest.approx(4.0 * math.exp(-1 / 2))


def test_disliked_products_do_not_count_as_newer():
    model = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    known = profile_of(TINY, 1)
    disliked = Profile(
        np.append(known.product_ids, 99),
        np.append(known.engagement, -1.0),
        np.append(known.latest, known.latest.max() + 60),
    )
    assert np.array_equal(model.profile_items(disliked)[1], model.profile_items(known)[1])


def test_a_profile_without_times_counts_every_product_fully():
    model = EASERecommender(l2=1.0, recency=2.0).fit(TINY)
    untimed = Profile(np.array([1, 2, 3, 4]), np.array([2.0, 1.0, 3.0, 4.0]))
    assert model.profile_items(untimed)[1].tolist() == [2.0, 1.0, 3.0, 4.0]


def test_training_data_without_timestamps_scores_as_plain_ease():
    untimed = TINY.drop(columns="timestamp")
    weighted = EASERecommender(l2=1.0, recency=2.0).fit(untimed)
    plain = EASERecommender(l2=1.0).fit(untimed)
    assert np.array_equal(weighted._score(np.arange(3)), plain._score(np.arange(3)))


def test_recency_zero_scores_as_plain_ease():
    users = np.arange(3)
    assert np.array_equal(
        EASERecommender(l2=1.0, recency=0.0).fit(TINY)._score(users),
        EASERecommender(l2=1.0).fit(TINY)._score(users),
    )


def test_rank_with_gives_what_a_fit_with_that_recency_gives():
    feedback = timed_feedback()
    changed = EASERecommender(l2=50.0, recency=0.0).fit(feedback).rank_with(recency=5.0)
    fitted = EASERecommender(l2=50.0, recency=5.0).fit(feedback)
    users = np.arange(len(fitted.user_ids))
    assert np.array_equal(changed._score(users), fitted._score(users))
    assert changed.params() == fitted.params()


def test_recency_survives_the_artifact_round_trip_and_cannot_change_after_it():
    model = EASERecommender(l2=50.0, recency=5.0).fit(timed_feedback())
    state = model.get_state()
    loaded = EASERecommender.from_state(ModelState(state.arrays, state.params))
    assert loaded.recency == 5.0
    users = np.arange(len(model.user_ids))
    assert np.array_equal(loaded._score(users), model._score(users))
    with pytest.raises(ValueError, match="fitted in this process"):
        loaded.rank_with(recency=10.0)


@pytest.mark.parametrize("recency", [-1.0, math.inf, math.nan])
def test_a_recency_that_is_not_zero_or_positive_is_refused(recency):
    with pytest.raises(ValueError, match="recency must be 0 or a positive number"):
        EASERecommender(recency=recency)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (pd.Series([0, 59.9, 1_700_000_000]), [0, 59, 1_700_000_000]),
        (
            pd.Series(pd.to_datetime(["1970-01-01 00:01:00.999", "2026-03-01"], format="ISO8601")),
            [60, 1772323200],
        ),
        (pd.Series(["2026-03-01T00:00:01+01:00"]), [1772319601]),
    ],
    ids=["seconds", "naive datetimes", "text with an offset"],
)
def test_epoch_seconds_rounds_every_kind_of_time_down_to_whole_utc_seconds(times, expected):
    assert epoch_seconds(times).tolist() == expected


def test_without_recency_the_parameters_are_those_a_release_before_recency_reads():
    assert EASERecommender(l2=50.0).fit(TINY).get_state().params == {"model": "ease", "l2": 50.0}
    assert EASERecommender(l2=50.0, recency=2.0).params() == {"l2": 50.0, "recency": 2.0}


def test_a_refused_change_of_recency_leaves_the_loaded_model_as_it_was():
    state = EASERecommender(l2=50.0, recency=5.0).fit(timed_feedback()).get_state()
    loaded = EASERecommender.from_state(ModelState(state.arrays, state.params))
    with pytest.raises(ValueError, match="fitted in this process"):
        loaded.rank_with(recency=1.0)
    assert loaded.recency == 5.0


@pytest.mark.parametrize(
    "timestamps",
    [["yesterday"] * 8, [1, "2026-03-01", 2, 3, 4, 5, 6, 7]],
    ids=["not a time", "numbers and text"],
)
def test_without_recency_the_training_times_are_never_read(timestamps):
    feedback = TINY.assign(timestamp=timestamps)
    plain = EASERecommender(l2=1.0).fit(feedback)
    assert np.array_equal(
        plain._score(np.arange(3)), EASERecommender(l2=1.0).fit(TINY)._score(np.arange(3))
    )
