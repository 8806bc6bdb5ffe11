"""The numpy-built Trainset is the one Surprise builds itself."""

import numpy as np
import pandas as pd
import pytest
from surprise import SVD, Dataset, Reader

from recsys.models.surprise_trainset import trainset_from_arrays


@pytest.fixture(scope="module")
def rows():
    """Shuffled (user, item, rating) rows with gaps in the ids."""
    rng = np.random.default_rng(4)
    users, items = np.nonzero(rng.random((40, 60)) < 0.3)
    order = rng.permutation(len(users))
    return pd.DataFrame(
        {
            "u": users[order] * 5 + 2,
            "i": items[order] * 3 + 1,
            "r": rng.integers(1, 11, len(users))[order] / 2,
        }
    )


@pytest.fixture(scope="module")
def both(rows):
    ours = trainset_from_arrays(rows["u"], rows["i"], rows["r"], (0.5, 5.0))
    theirs = Dataset.load_from_df(rows, Reader(rating_scale=(0.5, 5.0))).build_full_trainset()
    return ours, theirs


def test_inner_ids_follow_first_appearance_like_surprise(both):
    ours, theirs = both
    assert ours._raw2inner_id_users == theirs._raw2inner_id_users
    assert ours._raw2inner_id_items == theirs._raw2inner_id_items


def test_user_and_item_rating_lists_match_in_content_and_order(both):
    ours, theirs = both
    assert list(ours.ur.items()) == list(theirs.ur.items())
    assert list(ours.ir.items()) == list(theirs.ir.items())
    assert list(ours.all_ratings()) == list(theirs.all_ratings())


def test_counts_scale_and_global_mean_match(both):
    ours, theirs = both
    assert (ours.n_users, ours.n_items, ours.n_ratings) == (
        theirs.n_users,
        theirs.n_items,
        theirs.n_ratings,
    )
    assert ours.rating_scale == theirs.rating_scale
    assert ours.global_mean == pytest.approx(theirs.global_mean)


def test_surprise_svd_learns_identical_factors_from_it(both):
    ours, theirs = both
    a = SVD(n_factors=5, n_epochs=5, random_state=1).fit(ours)
    b = SVD(n_factors=5, n_epochs=5, random_state=1).fit(theirs)
    np.testing.assert_array_equal(a.pu, b.pu)
    np.testing.assert_array_equal(a.qi, b.qi)
    np.testing.assert_array_equal(a.bi, b.bi)


@pytest.mark.parametrize(
    ("users", "items", "ratings", "message"),
    [
        ([], [], [], "zero ratings"),
        ([1, 2], [1], [4.0, 5.0], "differ in length: 2, 1, 2"),
    ],
)
def test_bad_input_is_refused(users, items, ratings, message):
    with pytest.raises(ValueError, match=message):
        trainset_from_arrays(users, items, ratings, (1, 5))
