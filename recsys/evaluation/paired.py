"""Paired bootstrap of one model's ranking figure over another's, across test users.

A split's NDCG@k is a mean over its test users, and two models scored on the
same split share those users: the noise of their ratio comes from which users
happen to be in the test, and most of it is shared by both models. Resampling
the users (the same draw for both models, within each split) measures how far
the ratio of the two means could move by the choice of users alone; it is far
narrower than an interval over a few split means, and it is the interval of
exactly the statistic a benchmark judges: the mean over splits of each split's
mean, one model's over the other's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class RatioInterval:
    """A ratio of two models' mean figures and its bootstrap distribution.

    Attributes:
        ratio: The measured ratio (mean over splits of the numerator's split
            means, over the same of the denominator's).
        low: The lower end of the percentile interval.
        high: The upper end.
        users: Test users per split (the units resampled).
        resampled: The ratio of every resample, for shares above a target.
    """

    ratio: float
    low: float
    high: float
    users: tuple[int, ...]
    resampled: np.ndarray

    def share_at_least(self, target: float) -> float:
        """Return the share of resamples whose ratio reaches ``target``."""
        return float(np.mean(self.resampled >= target))


def paired_bootstrap_ratio(
    numerator: Sequence[Mapping[int, float]],
    denominator: Sequence[Mapping[int, float]],
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> RatioInterval:
    """Return the ratio of two models' mean per-user figures with a paired bootstrap interval.

    Each resample draws, within every split, as many users as the split has,
    with replacement, and scores both models on the same draw; splits are
    resampled separately (a stratified bootstrap), so every split keeps its
    weight in the mean over splits, as in the figure judged.

    Args:
        numerator: Per split, each test user's figure for the first model.
        denominator: Per split, the same users' figures for the second model.
        resamples: Bootstrap draws.
        confidence: The interval's coverage, in (0, 1).
        seed: Seed of the draws.

    Raises:
        ValueError: Splits or users that do not pair, a split without users,
            a bad confidence, or a denominator whose mean is zero.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("both models need figures on the same, non-empty list of splits")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    top = np.zeros(resamples)
    bottom = np.zeros(resamples)
    measured_top = measured_bottom = 0.0
    users = []
    for index, (first, second) in enumerate(zip(numerator, denominator, strict=True)):
        if set(first) != set(second):
            raise ValueError(f"split {index}: the two models were scored on different users")
        if not first:
            raise ValueError(f"split {index} has no test user")
        keys = sorted(first)
        a = np.array([first[user] for user in keys], dtype=np.float64)
        b = np.array([second[user] for user in keys], dtype=np.float64)
        draws = rng.integers(0, len(keys), size=(resamples, len(keys)))
        top += a[draws].mean(axis=1)
        bottom += b[draws].mean(axis=1)
        measured_top += a.mean()
        measured_bottom += b.mean()
        users.append(len(keys))
    if measured_bottom == 0:
        raise ValueError("the second model's mean is zero: the ratio is undefined")
    # A resample whose denominator is zero has an unbounded ratio.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.inf)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return RatioInterval(
        ratio=float(measured_top / measured_bottom),
        low=float(low),
        high=float(high),
        users=tuple(users),
        resampled=ratios,
    )
