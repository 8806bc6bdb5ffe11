"""Statistics of an A/B test: intervals, the two-proportion z-test, sample size, SRM.

Pure functions over counts, on scipy (a dependency already): the formulas
are the textbook ones that statsmodels implements (``proportion_confint``
with ``method="wilson"``, ``proportions_ztest``, ``NormalIndPower`` over
``proportion_effectsize``), and the tests check them against statsmodels on
fixed numbers. The service itself does not need statsmodels and its
dependencies for a dozen lines of arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq

ALPHA = 0.05
POWER = 0.8
# A sample-ratio mismatch is flagged below this p-value: strict, because with
# thousands of users a real assignment bug gives a tiny p-value, and a false
# alarm stops a healthy experiment.
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {
            "estimate": round(self.estimate, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
        }


def wilson_interval(successes: int, trials: int, alpha: float = ALPHA) -> Interval:
    """Return a proportion and its Wilson score interval.

    Wilson's interval stays inside [0, 1] and keeps its coverage for small
    counts and rates near 0, where the normal approximation does not.

    Args:
        successes: Trials that succeeded.
        trials: All trials (0 gives the uninformative interval [0, 1]).
        alpha: 1 - confidence level.

    Raises:
        ValueError: Counts are negative or successes exceed trials.
    """
    _check_counts(successes, trials)
    if trials == 0:
        return Interval(0.0, 0.0, 1.0)
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], alpha: float = ALPHA) -> Interval:
    """Return a mean and its Student-t interval (revenue per user, say).

    Args:
        values: One value per unit; fewer than two give an infinite interval.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Interval(0.0, -math.inf, math.inf)
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, -math.inf, math.inf)
    sem = float(data.std(ddof=1)) / math.sqrt(data.size)
    if sem == 0:
        return Interval(mean, mean, mean)
    half = float(stats.t.ppf(1 - alpha / 2, data.size - 1)) * sem
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class ZTest:
    """A two-proportion z-test of a variant against control.

    Attributes:
        difference: Variant rate minus control rate.
        z: The statistic (pooled standard error).
        p_value: Two-sided.
        interval: The difference's interval (unpooled standard error).
    """

    difference: float
    z: float
    p_value: float
    interval: Interval


def two_proportion_ztest(
    successes: int, trials: int, control_successes: int, control_trials: int, alpha: float = ALPHA
) -> ZTest:
    """Test whether a variant's rate differs from control's (two-sided).

    The statistic uses the pooled rate, as under the null both groups share
    it; the difference's interval uses each group's own rate (Wald).

    Raises:
        ValueError: A group has no trials, or counts are inconsistent.
    """
    _check_counts(successes, trials)
    _check_counts(control_successes, control_trials)
    if trials == 0 or control_trials == 0:
        raise ValueError("both groups need at least one trial")
    p1, p0 = successes / trials, control_successes / control_trials
    difference = p1 - p0
    pooled = (successes + control_successes) / (trials + control_trials)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / trials + 1 / control_trials))
    if se_pooled == 0:
        z, p_value = 0.0, 1.0  # both rates are 0 or both are 1: no evidence of a difference
    else:
        z = difference / se_pooled
        p_value = float(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(p1 * (1 - p1) / trials + p0 * (1 - p0) / control_trials)
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return ZTest(difference, z, p_value, Interval(difference, difference - half, difference + half))


def sample_size_per_variant(
    baseline: float, mde: float, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Return the units each variant needs to detect an absolute lift of ``mde``.

    Two-sided test, equal groups, effect size Cohen's h (the arcsine
    difference), as statsmodels' ``NormalIndPower`` computes it.

    Args:
        baseline: Control's expected rate, strictly between 0 and 1.
        mde: The smallest absolute difference worth detecting (0.02: two
            percentage points); baseline + mde must stay below 1.
        alpha: The test's false-positive rate.
        power: The chance of detecting a true effect of size ``mde``.

    Raises:
        ValueError: A rate outside (0, 1) or a non-positive mde.
    """
    if not 0 < baseline < 1:
        raise ValueError(f"baseline must be a rate between 0 and 1, got {baseline}")
    if not 0 < mde < 1 - baseline:
        raise ValueError(f"mde must be above 0 and baseline + mde below 1, got mde={mde}")
    h = 2 * math.asin(math.sqrt(baseline + mde)) - 2 * math.asin(math.sqrt(baseline))
    if h < 1e-6:
        raise ValueError(f"mde is too small to plan for, got mde={mde}")
    # NormalIndPower solves power = P(Z > z_a/2 - d*sqrt(n/2)) + P(Z < -z_a/2 - d*sqrt(n/2))
    # for n; the second term is negligible at these powers, but solving the full
    # equation keeps the figure equal to statsmodels'.
    z_alpha = stats.norm.ppf(1 - alpha / 2)

    def shortfall(n: float) -> float:
        shift = abs(h) * math.sqrt(n / 2)
        return float(stats.norm.sf(z_alpha - shift) + stats.norm.cdf(-z_alpha - shift)) - power

    guess = 2 * ((z_alpha + stats.norm.ppf(power)) / h) ** 2
    exact = float(brentq(shortfall, max(guess / 2, 1e-6), guess * 2 + 10, xtol=1e-10))
    return math.ceil(exact)


@dataclass(frozen=True)
class SampleRatioCheck:
    """Whether the observed split of units matches the configured weights.

    Attributes:
        chi_square: Pearson's statistic.
        p_value: Under the hypothesis that assignment follows the weights.
        mismatch: True when p_value < ``SRM_ALPHA``: the assignment is broken.
        expected: Units each variant should have.
    """

    chi_square: float
    p_value: float
    mismatch: bool
    expected: list[float]


def sample_ratio_check(
    observed: Sequence[int], weights: Sequence[float], alpha: float = SRM_ALPHA
) -> SampleRatioCheck:
    """Compare units per variant with the weights (chi-square goodness of fit).

    Args:
        observed: Units per variant.
        weights: Configured weights in the same order (any positive scale).

    Raises:
        ValueError: Lengths differ, fewer than two variants, or a weight is not positive.
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValueError("need one count per weight, for at least two variants")
    total = sum(observed)
    expected = weight_shares(weights) * total
    if total == 0:
        return SampleRatioCheck(0.0, 1.0, False, expected.tolist())
    chi_square, p_value = stats.chisquare(np.asarray(observed, dtype=np.float64), expected)
    return SampleRatioCheck(
        float(chi_square), float(p_value), bool(p_value < alpha), expected.tolist()
    )


def weight_shares(weights: Sequence[float]) -> np.ndarray:
    """Return each weight's share of their sum, computed without overflow.

    Args:
        weights: Positive, finite weights on any scale (1e308 included).

    Raises:
        ValueError: A weight is not a positive finite number.
    """
    scaled = np.asarray(weights, dtype=np.float64)
    if not len(scaled) or not np.isfinite(scaled).all() or (scaled <= 0).any():
        raise ValueError(f"weights must be positive finite numbers, got {list(weights)}")
    # Dividing by the largest first keeps the sum at most len(weights).
    scaled = scaled / scaled.max()
    return scaled / math.fsum(scaled.tolist())


def _check_counts(successes: int, trials: int) -> None:
    if successes < 0 or trials < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
