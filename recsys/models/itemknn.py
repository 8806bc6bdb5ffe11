"""Item-kNN: each product scored from the user's past products among its nearest neighbours.

Similarity is the cosine of two products' columns of the binary users x items
matrix (co-occurrence over the square root of their popularities), shrunk
toward zero for products that few users share::

    sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrinkage)

Each product keeps its ``neighbours`` most similar products (ties by product
id). A user's score for product j is sum over their past products i among
j's neighbours of sim(i, j) * engagement(u, i), so explanations are exact.
Memory is n_items x neighbours weights, so unlike EASE it grows linearly with
the catalog; the similarity pass is a sparse X^T X, done in blocks of products.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse

from recsys.models.base import EXPLAIN, FOLD_IN, SIMILAR_ITEMS, Recommender
from recsys.models.history import HISTORY_INDICES, HISTORY_SHAPES, HISTORY_SIZES, TrainingHistory
from recsys.models.state import ArrayShape

# Products per block of the similarity pass: a block x n_items dense array at a time.
_BLOCK = 512


def top_neighbours(
    binary: scipy.sparse.csr_matrix, neighbours: int, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return each item's nearest items and their shrunk cosine similarities.

    Args:
        binary: Users x items 0/1 matrix.
        neighbours: How many neighbours per item (at most n_items - 1).
        shrinkage: Added to the cosine's denominator.

    Returns:
        (items, weights), both n_items x neighbours, best first, ties by
        ascending index; an item never lists itself.
    """
    n_items = binary.shape[1]
    by_item = binary.T.tocsr()
    popularity = np.asarray(binary.sum(axis=0)).ravel()
    norms = np.sqrt(popularity)
    items = np.empty((n_items, neighbours), dtype=np.int64)
    weights = np.empty((n_items, neighbours), dtype=np.float64)
    for start in range(0, n_items, _BLOCK):
        stop = min(start + _BLOCK, n_items)
        shared = np.asarray((by_item[start:stop] @ binary).todense(), dtype=np.float64)
        similarity = shared / (norms[start:stop, None] * norms[None, :] + shrinkage)
        similarity[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        # A stable sort on -similarity breaks ties by ascending item index.
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :neighbours]
        items[start:stop] = order
        weights[start:stop] = np.take_along_axis(similarity, order, axis=1)
    return items, weights


class ItemKNNRecommender(Recommender):
    """Item-based k nearest neighbours over co-occurrence cosine with shrinkage.

    Args:
        neighbours: Neighbours kept per product.
        shrinkage: Added to the cosine's denominator, so that products shared
            by few users count less.
    """

    name = "itemknn"
    capabilities = frozenset({SIMILAR_ITEMS, EXPLAIN, FOLD_IN})
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "neighbour_items": ("n_items", "k"),
        "neighbour_weights": ("n_items", "k"),
        **HISTORY_SHAPES,
    }
    derived_sizes = HISTORY_SIZES
    index_arrays: ClassVar[Mapping[str, str]] = {"neighbour_items": "n_items", **HISTORY_INDICES}

    def __init__(self, neighbours: int = 100, shrinkage: float = 10.0) -> None:
        super().__init__()
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}")
        if not 0 <= shrinkage < math.inf:
            raise ValueError(f"shrinkage must be a non-negative number, got {shrinkage}")
        self.neighbours = int(neighbours)
        self.shrinkage = float(shrinkage)

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrinkage": self.shrinkage}

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        engagement = feedback["engagement"].to_numpy(dtype=np.float64)
        self.history = TrainingHistory.from_rows(users, items, engagement, len(self.user_ids))
        binary = self.history.matrix(len(self.product_ids))
        binary.data[:] = 1.0
        # A one-product catalog has no neighbours: keep one zero-weight slot.
        k = max(1, min(self.neighbours, len(self.product_ids) - 1))
        if len(self.product_ids) == 1:
            self.neighbour_items = np.zeros((1, 1), dtype=np.int64)
            self.neighbour_weights = np.zeros((1, 1))
        else:
            self.neighbour_items, self.neighbour_weights = top_neighbours(binary, k, self.shrinkage)
        self._build()

    def _build(self) -> None:
        """Cache the history matrix and W, where W[i, j] = sim(i, j) for i among j's neighbours."""
        n_items = len(self.product_ids)
        self._rows = self.history.matrix(n_items)
        targets = np.repeat(np.arange(n_items), self.neighbour_items.shape[1])
        self._weights = scipy.sparse.csr_matrix(
            (self.neighbour_weights.ravel(), (self.neighbour_items.ravel(), targets)),
            shape=(n_items, n_items),
        )

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self._rows[users] @ self._weights).todense())

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        """Return the user's sparse row times W, without building the row.

        The sum a training-time row makes, in scipy's order (each of the
        user's products' rows of W in turn, added to zeros), so an unchanged
        user gets exactly the training scores. Building a one-row sparse
        matrix costs more than the product at serving sizes.
        """
        weights = self._weights
        if len(items) == 0:
            return np.zeros(weights.shape[1])
        starts, stops = weights.indptr[items], weights.indptr[items + 1]
        spans = [slice(a, b) for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        targets = np.concatenate([weights.indices[span] for span in spans])
        terms = np.concatenate([weights.data[span] for span in spans])
        terms *= np.asarray(engagement, dtype=np.float64).repeat(stops - starts)
        return np.bincount(targets, weights=terms, minlength=weights.shape[1])

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        column = np.asarray(self._weights[:, [item]].todense()).ravel()
        return engagement * column[past]

    def _similarity_to(self, item: int) -> np.ndarray:
        scores = np.zeros(len(self.product_ids))
        scores[self.neighbour_items[item]] = self.neighbour_weights[item]
        return scores

    def _pairwise_similarity(self, items: np.ndarray) -> np.ndarray:
        # W is not symmetric after pruning: two products are as similar as
        # either finds the other.
        block = np.asarray(self._weights[items][:, items].todense())
        return np.maximum(block, block.T)

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {
            "neighbour_items": self.neighbour_items,
            "neighbour_weights": self.neighbour_weights,
            **self.history.arrays(),
        }

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.neighbour_items = np.asarray(arrays["neighbour_items"], dtype=np.int64)
        self.neighbour_weights = np.asarray(arrays["neighbour_weights"], dtype=np.float64)
        self.history = TrainingHistory.from_arrays(arrays)
        self._build()
