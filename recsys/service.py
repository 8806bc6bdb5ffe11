"""Turn a model, the catalog and what users bought into recommendation answers.

This is the one function the web layer calls; it knows nothing of HTTP.
Cold start is an answer with a reason, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from recsys.models.base import RankedList, Recommender
from recsys.models.popularity import PopularityRecommender

UNKNOWN_USER = "unknown_user"


@dataclass(frozen=True)
class RecommendedProduct:
    """One product in an answer, with the model's score."""

    product_id: int
    name: str | None
    category: str | None
    score: float


@dataclass(frozen=True)
class RecommendationAnswer:
    """A ranked product list for one user, and how it was made.

    Attributes:
        user_id: Who asked.
        strategy: The model that made the list (``svd``, ``popular``, ...).
        recommendations: Best first.
        fallback_reason: Why a personal list was not possible, if it was not.
        model_version: The published model version that answered, when known.
    """

    user_id: int
    strategy: str
    recommendations: list[RecommendedProduct]
    fallback_reason: str | None = None
    model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the answer."""
        body: dict[str, Any] = {"user_id": self.user_id, "strategy": self.strategy}
        if self.fallback_reason is not None:
            body["fallback_reason"] = self.fallback_reason
        if self.model_version is not None:
            body["model_version"] = self.model_version
        body["recommendations"] = [asdict(item) for item in self.recommendations]
        return body


class RecommendationService:
    """Answer recommendation requests from a fitted model and the catalog.

    Args:
        model: The personal model (any ``Recommender``).
        popularity: A fitted popularity model, the cold-start fallback.
        catalog: ``product_id, name, category`` (extra columns ignored).
        purchased: Returns the product ids a user already bought; those are
            never recommended to them again.
    """

    def __init__(
        self,
        model: Recommender,
        popularity: PopularityRecommender,
        catalog: pd.DataFrame,
        purchased: Callable[[int], set[int]],
    ) -> None:
        self.model = model
        self.popularity = popularity
        self._names = {
            int(row.product_id): (row.name, row.category)
            for row in catalog[["product_id", "name", "category"]].itertuples(index=False)
        }
        self._purchased = purchased

    def recommend(self, user_id: int, n: int) -> RecommendationAnswer:
        """Return the n best products for a user, excluding what they bought.

        A user the model does not know gets the most popular products with
        ``fallback_reason="unknown_user"``.
        """
        bought = self._purchased(user_id)
        if self.model.knows_user(user_id):
            ranked = self.model.recommend([user_id], n, exclude={user_id: bought}).lists[user_id]
            return RecommendationAnswer(user_id, self.model.name, self._describe(ranked))
        ranked = self.popularity.top(n, exclude=bought)
        return RecommendationAnswer(
            user_id, self.popularity.name, self._describe(ranked), fallback_reason=UNKNOWN_USER
        )

    def popular(self, n: int) -> list[RecommendedProduct]:
        """Return the n most-clicked products."""
        return self._describe(self.popularity.top(n))

    def _describe(self, ranked: RankedList) -> list[RecommendedProduct]:
        items = []
        for product_id, score in zip(ranked.product_ids, ranked.scores, strict=True):
            name, category = self._names.get(int(product_id), (None, None))
            items.append(
                RecommendedProduct(int(product_id), name, category, round(float(score), 4))
            )
        return items
