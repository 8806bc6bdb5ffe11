"""The training interactions a model keeps: who touched what, and how strongly.

Item-based models (EASE, item-kNN) score a user by their past products, and
every explaining model names a user's past products, so those models keep the
(user, product, weight) rows they learned from as three arrays: products and
weights grouped by user (ascending inner user, then inner item), and how many
rows each user has. ``HISTORY_SHAPES`` declares them for ``state_shapes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from recsys.models.state import ArrayShape

HISTORY_SHAPES: dict[str, ArrayShape] = {
    "history_lengths": ("n_users",),
    "history_items": ("nnz",),
    "history_weights": ("nnz",),
}
# For ``Recommender.derived_sizes`` and ``index_arrays``.
HISTORY_SIZES = {"nnz": "history_lengths"}
HISTORY_INDICES = {"history_items": "n_items"}


@dataclass(frozen=True)
class TrainingHistory:
    """Each user's training products and their weights, grouped by user.

    Attributes:
        lengths: Rows per inner user.
        items: Inner item of each row, users in order, items ascending within a user.
        weights: Weight of each row (engagement, rating or confidence, per model).
    """

    lengths: np.ndarray
    items: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_rows(
        cls, users: np.ndarray, items: np.ndarray, weights: np.ndarray, n_users: int
    ) -> TrainingHistory:
        """Group (inner user, inner item, weight) rows by user."""
        order = np.lexsort((items, users))
        return cls(
            lengths=np.bincount(users, minlength=n_users).astype(np.int64),
            items=np.asarray(items, dtype=np.int64)[order],
            weights=np.asarray(weights, dtype=np.float64)[order],
        )

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TrainingHistory:
        """Rebuild from ``arrays()``'s output (already validated by the model)."""
        return cls(
            lengths=np.asarray(arrays["history_lengths"], dtype=np.int64),
            items=np.asarray(arrays["history_items"], dtype=np.int64),
            weights=np.asarray(arrays["history_weights"], dtype=np.float64),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the three arrays named as in ``HISTORY_SHAPES``."""
        return {
            "history_lengths": self.lengths,
            "history_items": self.items,
            "history_weights": self.weights,
        }

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Return one inner user's (inner items, weights)."""
        start = int(self.lengths[:user].sum())
        stop = start + int(self.lengths[user])
        return self.items[start:stop], self.weights[start:stop]

    def matrix(self, n_items: int, dtype: type = np.float64) -> scipy.sparse.csr_matrix:
        """Return the users x items CSR matrix of weights."""
        indptr = np.concatenate([[0], np.cumsum(self.lengths)])
        return scipy.sparse.csr_matrix(
            (self.weights.astype(dtype), self.items, indptr), shape=(len(self.lengths), n_items)
        )
