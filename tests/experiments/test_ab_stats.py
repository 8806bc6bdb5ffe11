"""A/B statistics: intervals, z-test and sample size agree with statsmodels; SRM; assignment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from recsys.experiments import abstats
from recsys.experiments.assignment import Assigner, assignment_point
from tests.aa_checks import aa_problems

# A/A runs of the z-test alone (vectorised draws): enough for the two-sided
# bound to catch a test that rejects 0%, 2.5% or 10% instead of 5%.
AA_RUNS = 2_000


@pytest.mark.parametrize(
    ("successes", "trials"), [(12, 100), (0, 50), (50, 50), (1, 3), (3_141, 10_000)]
)
def test_the_wilson_interval_matches_statsmodels(successes, trials):
    ours = abstats.wilson_interval(successes, trials)
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert ours.estimate == pytest.approx(successes / trials)
    assert (ours.low, ours.high) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(
    ("variant", "control"),
    [
        ((120, 1000), (100, 1000)),
        ((264, 991), (67, 1009)),
        ((30, 400), (45, 380)),
        ((5, 7), (1, 9)),
    ],
)
def test_the_two_proportion_z_test_matches_statsmodels(variant, control):
    ours = abstats.two_proportion_ztest(*variant, *control)
    z, p_value = proportions_ztest(
        [variant[0], control[0]], [variant[1], control[1]], alternative="two-sided"
    )
    assert ours.z == pytest.approx(z, rel=1e-10)
    assert ours.p_value == pytest.approx(p_value, rel=1e-10)


def test_the_difference_interval_is_the_unpooled_wald_interval():
    test = abstats.two_proportion_ztest(120, 1000, 100, 1000)
    se = np.sqrt(0.12 * 0.88 / 1000 + 0.10 * 0.90 / 1000)
    assert (test.interval.low, test.interval.high) == pytest.approx(
        (0.02 - 1.959963984540054 * se, 0.02 + 1.959963984540054 * se)
    )


def test_two_groups_that_never_convert_show_no_difference():
    assert abstats.two_proportion_ztest(0, 100, 0, 100).p_value == 1.0


def aa_counts(runs: int = AA_RUNS, users: int = 4_000, rate: float = 0.1, seed: int = 20):
    """Return (buyers, users) of two variants that convert alike, one row per A/A run."""
    rng = np.random.default_rng(seed)
    variant_users = rng.binomial(users, 0.5, size=runs)
    control_users = users - variant_users
    return np.column_stack(
        [
            rng.binomial(variant_users, rate),
            variant_users,
            rng.binomial(control_users, rate),
            control_users,
        ]
    )


@pytest.fixture(scope="module")
def aa_p_values():
    return np.array([abstats.two_proportion_ztest(*map(int, row)).p_value for row in aa_counts()])


def test_the_z_test_rejects_5_percent_of_aa_runs_and_its_p_values_are_uniform(aa_p_values):
    assert aa_problems(aa_p_values) == []


# Broken tests the A/A check must catch, made from the correct p-values.
BROKEN_TESTS = {
    "always rejects": lambda p: np.zeros_like(p),
    "never rejects": lambda p: np.ones_like(p),
    "one-sided p-values reported as two-sided (10% false positives)": lambda p: p / 2,
    "doubled p-values (2.5% false positives)": lambda p: np.minimum(1.0, p * 2),
    "never rejects, uniform otherwise": lambda p: np.where(p < 0.05, 0.05 + p, p),
}


@pytest.mark.parametrize("broken", BROKEN_TESTS.values(), ids=BROKEN_TESTS.keys())
def test_the_aa_check_fails_for_a_broken_test(aa_p_values, broken):
    assert aa_problems(broken(aa_p_values)) != []


@pytest.mark.parametrize(
    ("baseline", "mde"), [(0.10, 0.02), (0.30, 0.10), (0.05, 0.01), (0.50, 0.05), (0.02, 0.005)]
)
def test_the_planned_sample_size_matches_statsmodels_power_calculation(baseline, mde):
    effect = proportion_effectsize(baseline + mde, baseline)
    expected = NormalIndPower().solve_power(effect, alpha=0.05, power=0.8, ratio=1.0)
    assert abstats.sample_size_per_variant(baseline, mde) == int(np.ceil(expected))


def test_a_ten_percent_baseline_needs_3835_users_per_variant_for_two_points():
    # The figure the README quotes.
    assert abstats.sample_size_per_variant(0.10, 0.02) == 3835


@pytest.mark.parametrize(
    ("baseline", "mde", "message"),
    [(0.0, 0.1, "baseline must be"), (1.2, 0.1, "baseline must be"), (0.95, 0.1, "mde must be")],
)
def test_impossible_rates_are_refused(baseline, mde, message):
    with pytest.raises(ValueError, match=message):
        abstats.sample_size_per_variant(baseline, mde)


def test_the_sample_ratio_check_matches_scipys_chi_square():
    check = abstats.sample_ratio_check([5_100, 4_900], [1, 1])
    chi_square, p_value = stats.chisquare([5_100, 4_900])
    assert (check.chi_square, check.p_value) == pytest.approx((chi_square, p_value))
    assert not check.mismatch


def test_the_sample_ratio_check_fires_on_a_skewed_assignment():
    # 52.5% instead of 50% over 10,000 users: a broken split, not chance.
    assert abstats.sample_ratio_check([5_250, 4_750], [1, 1]).mismatch


def test_the_sample_ratio_check_respects_unequal_weights():
    assert not abstats.sample_ratio_check([9_010, 990], [90, 10]).mismatch
    assert abstats.sample_ratio_check([5_000, 5_000], [90, 10]).mismatch


def test_the_mean_interval_is_students_t():
    values = [0.0, 0.0, 12.5, 30.0, 0.0, 8.0]
    ours = abstats.mean_interval(values)
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert (ours.low, ours.high) == pytest.approx((low, high))


# -- assignment -----------------------------------------------------------------------------------


def test_a_users_variant_is_the_same_every_time_and_in_every_process():
    first = Assigner("exp-1", [1, 1, 2])
    again = Assigner("exp-1", [1, 1, 2])
    assert [first.index(u) for u in range(1, 2_000)] == [again.index(u) for u in range(1, 2_000)]
    # Pinned values: a change of the hash would reshuffle every running experiment.
    assert assignment_point("exp-1", 1) == pytest.approx(0.803417, abs=1e-6)


def test_other_experiments_shuffle_users_independently():
    a = np.array([Assigner("exp-a", [1, 1]).index(u) for u in range(1, 20_001)])
    b = np.array([Assigner("exp-b", [1, 1]).index(u) for u in range(1, 20_001)])
    both = np.histogram2d(a, b, bins=2)[0]
    assert stats.chi2_contingency(both)[1] > 0.001


@pytest.mark.parametrize("weights", [[1, 1], [1, 1, 2], [90, 10], [0.2, 0.3, 0.5]])
def test_assignment_over_100000_ids_matches_the_weights(weights):
    assigner = Assigner("weights-check", weights)
    counts = np.bincount([assigner.index(u) for u in range(1, 100_001)], minlength=len(weights))
    check = abstats.sample_ratio_check(counts.tolist(), weights)
    assert not check.mismatch, (counts, check)
    assert check.p_value > 0.001


def test_weights_of_any_scale_split_users_by_their_ratio():
    assigner = Assigner("huge", [1e308, 1e308])
    variants = [assigner.index(user) for user in range(1, 4001)]
    assert assigner.bounds == [0.5, 1.0]
    assert 1800 < variants.count(0) < 2200


def test_the_sample_ratio_check_takes_weights_whose_sum_overflows():
    check = abstats.sample_ratio_check([5_000, 5_000], [1e308, 1e308])
    assert check.expected == [5_000, 5_000]
    assert not check.mismatch
