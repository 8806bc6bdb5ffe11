"""The rule-based recommender: the most-clicked products for everyone."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

import numpy as np
import pandas as pd

from recsys.models.base import Recommender
from recsys.models.ranked import id_array
from recsys.models.state import ArrayShape


class PopularityRecommender(Recommender):
    """Rank products by total clicks across all users, ties by product id.

    Every user gets the same list (less their exclusions), so unknown users
    can be served too: use ``top(n)`` for them. The model only counts clicks;
    the ordering is the base class's (score descending, ties by product id),
    the same order as ``recsys.data.eda.clicks_by_product`` gives a log.
    """

    name = "popular"
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {"item_clicks": ("n_items",)}

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        self.item_clicks = np.bincount(
            items,
            weights=feedback["clicks"].to_numpy(dtype=np.float64),
            minlength=len(self.product_ids),
        )

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_clicks, (len(users), len(self.item_clicks)))

    def top(
        self,
        n: int,
        exclude: Collection[int] | np.ndarray = frozenset(),
        allowed: np.ndarray | None = None,
    ):
        """Return the n most-clicked products for anyone, known user or not.

        Args:
            n: How many products.
            exclude: Raw product ids to leave out (a set or an id array).
            allowed: Which products may be listed at all: a boolean mask over
                ``product_ids``; None allows all.
        """
        self._require_fitted()
        scores = self.item_clicks.astype(np.float64).copy()
        if allowed is not None:
            np.copyto(scores, -np.inf, where=~allowed)
        if len(exclude):
            scores[np.isin(self.product_ids, id_array(exclude))] = -np.inf
        return self._top_n(scores, n)

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {"item_clicks": self.item_clicks}

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_clicks = np.asarray(arrays["item_clicks"], dtype=np.float64)
