"""The paired bootstrap of a ratio of two models' per-user figures."""

import numpy as np
import pytest

from recsys.evaluation.paired import paired_bootstrap_ratio


def test_the_ratio_is_the_mean_of_split_means_over_the_same_of_the_other_model():
    first = [{1: 0.2, 2: 0.4}, {7: 0.9}]
    second = [{1: 0.1, 2: 0.1}, {7: 0.3}]
    interval = paired_bootstrap_ratio(first, second, resamples=50)
    assert interval.ratio == pytest.approx((0.3 + 0.9) / (0.1 + 0.3))
    assert interval.users == (2, 1)


def test_a_model_twice_as_good_for_every_user_has_no_spread():
    rng = np.random.default_rng(1)
    second = [{user: float(rng.uniform(0.1, 1)) for user in range(30)}]
    first = [{user: 2 * value for user, value in second[0].items()}]
    interval = paired_bootstrap_ratio(first, second, resamples=200)
    assert interval.low == pytest.approx(2.0)
    assert interval.high == pytest.approx(2.0)
    assert interval.share_at_least(2.0) == 1.0


def test_pairing_makes_the_interval_narrower_than_the_users_spread():
    # Users differ a lot, the models little: the shared part cancels.
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 200)
    second = [dict(enumerate(base))]
    first = [dict(enumerate(base * 1.1 + rng.normal(0, 0.01, 200)))]
    interval = paired_bootstrap_ratio(first, second, resamples=500)
    assert 1.08 < interval.low < interval.ratio < interval.high < 1.12


def test_the_interval_widens_with_fewer_users():
    rng = np.random.default_rng(3)

    def models(n):
        second = rng.uniform(0, 1, n)
        first = second + rng.normal(0.1, 0.3, n).clip(-second)
        return [dict(enumerate(first))], [dict(enumerate(second))]

    few = paired_bootstrap_ratio(*models(20), resamples=500)
    many = paired_bootstrap_ratio(*models(2000), resamples=500)
    assert few.high - few.low > 3 * (many.high - many.low)


def test_the_same_seed_gives_the_same_interval():
    first, second = [{1: 0.5, 2: 0.1, 3: 0.0}], [{1: 0.2, 2: 0.3, 3: 0.1}]
    a = paired_bootstrap_ratio(first, second, resamples=100, seed=4)
    b = paired_bootstrap_ratio(first, second, resamples=100, seed=4)
    assert (a.low, a.high) == (b.low, b.high)


def test_models_scored_on_different_users_are_refused():
    with pytest.raises(ValueError, match="different users"):
        paired_bootstrap_ratio([{1: 0.5}], [{2: 0.5}])


def test_a_denominator_of_zero_is_refused():
    with pytest.raises(ValueError, match="zero"):
        paired_bootstrap_ratio([{1: 0.5}], [{1: 0.0}])
