"""The top-N ranking score of rating models (``svd``, ``blend``).

A rating model predicts the rating a user would give a product *if* they
rated it, not which product they will pick; ranked by the prediction alone,
its top goes to products with one or two enthusiastic ratings. The ranking
score therefore trusts a product's predicted deviation from the user's
baseline only as far as the product's support, and adds the product's
popularity::

    score(u, i) = base_u + n_i / (n_i + support_shrinkage) * (r(u, i) - base_u)
                  + popularity_weight * ln(1 + liked_i)

- ``base_u``: the user's baseline (the global mean plus the user's bias), the
  prediction for a product nothing is known about;
- ``n_i``: the product's training ratings; ``support_shrinkage=0`` keeps the
  prediction whole;
- ``liked_i``: its training ratings of at least ``liked_rating`` (every
  rating when None): how many users rated it, or liked it (4: the signal
  the popularity model ranks by when it is fitted on ratings >= 4).

``popularity_weight=inf`` is the limit of a growing weight: the popularity
ranking itself (``ln(1 + liked_i)`` alone, ties by product id), so a search
over the weight that includes it can never choose below popularity on its
validation rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# The parameters of the ranking score alone: changing them needs no refit.
RANKING_PARAMS = ("popularity_weight", "support_shrinkage", "liked_rating")


@dataclass(frozen=True)
class RankingScore:
    """The ranking score's parameters (see the module docstring).

    Attributes:
        popularity_weight: Weight of ln(1 + liked count); inf ranks by it alone.
        support_shrinkage: k of the support factor n / (n + k).
        liked_rating: The lowest rating that counts as liked (None: any rating).
    """

    popularity_weight: float = 0.5
    support_shrinkage: float = 10.0
    liked_rating: float | None = None

    def __post_init__(self) -> None:
        # Written so that NaN fails too.
        if not self.popularity_weight >= 0:
            weight = self.popularity_weight
            raise ValueError(f"popularity_weight must be non-negative, got {weight}")
        if not (self.support_shrinkage >= 0 and math.isfinite(self.support_shrinkage)):
            raise ValueError(
                f"support_shrinkage must be a non-negative number, got {self.support_shrinkage}"
            )

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> RankingScore:
        """Return the score of the ``RANKING_PARAMS`` of a model's keyword arguments."""
        liked = params["liked_rating"]
        return cls(
            popularity_weight=float(params["popularity_weight"]),
            support_shrinkage=float(params["support_shrinkage"]),
            liked_rating=None if liked is None else float(liked),
        )

    def params(self) -> dict[str, Any]:
        """Return the parameters as keyword arguments of the model."""
        return {
            "popularity_weight": self.popularity_weight,
            "support_shrinkage": self.support_shrinkage,
            "liked_rating": self.liked_rating,
        }

    @property
    def popularity_only(self) -> bool:
        """Whether the score is the popularity ranking alone (an infinite weight)."""
        return math.isinf(self.popularity_weight)

    def support(self, rating_counts: np.ndarray) -> np.ndarray:
        """Return each product's trust in its predicted deviation, n / (n + k), in [0, 1]."""
        counts = np.asarray(rating_counts, dtype=np.float64)
        if self.popularity_only:
            return np.zeros_like(counts)
        if self.support_shrinkage == 0:
            return np.ones_like(counts)
        return counts / (counts + self.support_shrinkage)

    def prior(self, liked_counts: np.ndarray) -> np.ndarray:
        """Return each product's popularity term: weight x ln(1 + liked), or ln(1 + liked) alone."""
        popularity = np.log1p(np.asarray(liked_counts, dtype=np.float64))
        return popularity if self.popularity_only else self.popularity_weight * popularity

    def liked_counts(self, items: np.ndarray, ratings: np.ndarray, n_items: int) -> np.ndarray:
        """Return how many training ratings of each product count as liked.

        Args:
            items: Inner item of each training row.
            ratings: Its rating.
            n_items: Products in the model.
        """
        if self.liked_rating is not None:
            items = items[np.asarray(ratings) >= self.liked_rating]
        return np.bincount(items, minlength=n_items).astype(np.int64)
