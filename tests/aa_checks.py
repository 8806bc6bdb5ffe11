"""What A/A p-values must look like: a correct test's, judged on both sides.

Under the null hypothesis a correct test's p-values are uniform on [0, 1], so
over n A/A runs the count below alpha is Binomial(n, alpha): too many
rejections (a test that finds differences that are not there) and too few
(a test that never rejects, which a one-sided "at most 5 of 100" passes) are
both failures. The p-values' uniformity is checked as a whole with a
Kolmogorov-Smirnov test, which also catches a test whose false-positive rate
is right but whose p-values are wrong elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
# How unlikely a correct test's p-values must look before the check calls it
# broken: 1 in 1,000 for each of the two checks.
LEVEL = 0.001


def aa_problems(p_values: Sequence[float], alpha: float = ALPHA, level: float = LEVEL) -> list[str]:
    """Return what is wrong with A/A p-values; empty when they look like a correct test's.

    Args:
        p_values: One p-value per independent A/A run.
        alpha: The significance threshold whose false-positive rate is checked.
        level: The checks' own false-alarm rate, each.
    """
    values = np.asarray(p_values, dtype=float)
    runs = len(values)
    rejected = int((values < alpha).sum())
    problems = []
    binomial_p = two_sided_binomial_p_values(runs, alpha)
    if binomial_p[rejected] < level:
        accepted = np.flatnonzero(binomial_p >= level)
        problems.append(
            f"{rejected} of {runs} A/A runs significant at p < {alpha}: a correct test gives "
            f"{accepted[0]} to {accepted[-1]} (two-sided binomial, p = {binomial_p[rejected]:.2g})"
        )
    uniform = stats.kstest(values, "uniform")
    if uniform.pvalue < level:
        problems.append(
            f"the p-values are not uniform on [0, 1]: Kolmogorov-Smirnov D = "
            f"{uniform.statistic:.3f}, p = {uniform.pvalue:.2g}"
        )
    return problems


def two_sided_binomial_p_values(runs: int, alpha: float) -> np.ndarray:
    """Return the two-sided binomial test's p-value of every count 0..runs of rejections.

    As scipy's ``binomtest(k, runs, alpha)``: the probability of every count
    no more likely than k, computed for all counts at once.
    """
    pmf = stats.binom.pmf(np.arange(runs + 1), runs, alpha)
    ordered = np.sort(pmf)
    at_most = np.cumsum(ordered)
    # The same relative tolerance as scipy, for counts equally likely up to rounding.
    index = np.searchsorted(ordered, pmf * (1 + 1e-7), side="right") - 1
    return np.minimum(1.0, at_most[index])
