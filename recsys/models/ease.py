"""EASE: a linear item-item model with a closed-form solution (Steck, WWW 2019).

"Embarrassingly Shallow Autoencoders for Sparse Data" learns an item-item
weight matrix B that predicts each of a user's products from their others:
minimise ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0, whose
solution is::

    P = (X^T X + lambda I)^-1,    B = I - P diag(1 / diag(P))    (so diag(B) = 0)

X is the users x items matrix of engagement (for MovieLens the rating, for
the shop the weighted clicks and purchases). A user's scores are their row of
X times B, so every score is a sum over the user's past products, and an
explanation is exact.

Cost: B is a dense n_items x n_items matrix (stored in float32: 4 n_items^2
bytes, 320 MB for the 8,943 films of an ml-latest-small split), and P needs
an inversion that is O(n^3). When users are fewer than items the Woodbury
identity inverts the users x users matrix instead,
P = (I - X^T (lambda I + X X^T)^-1 X) / lambda, which gives the same P
for O(n_users^3 + n_users n_items^2). Either way the n_items^2 matrix is the
limit: past some 20,000-30,000 products (1.6-3.6 GB of weights per copy, and
minutes of inversion) use item-kNN or ALS instead.

With ``recency`` > 0 the weights B are learned as above, but a user's row is
weighted by how recently they touched each product before it is multiplied
by B: their k-th most recent product counts exp(-k / recency) of its
engagement (k = 0 for the latest; products touched in the same second share
a rank). What a user did last says more about what they want next than what
they did long ago; on ml-latest-small's last-5-per-user split this was the
largest gain measured over plain EASE (docs/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse

from recsys.models.base import EXPLAIN, FOLD_IN, SIMILAR_ITEMS, Recommender
from recsys.models.history import HISTORY_INDICES, HISTORY_SHAPES, HISTORY_SIZES, TrainingHistory
from recsys.models.profile import Profile, epoch_seconds, has_timestamps
from recsys.models.ranked import lookup_ids
from recsys.models.state import ArrayShape


def ease_weights(matrix: np.ndarray, l2: float) -> np.ndarray:
    """Return EASE's item-item weights B for a dense users x items matrix.

    Args:
        matrix: X, users x items (float64 for an exact solution).
        l2: lambda, the L2 penalty (> 0).

    Returns:
        B, items x items, with a zero diagonal; dtype of ``matrix``.
    """
    n_users, n_items = matrix.shape
    if n_users < n_items:
        # Woodbury: invert users x users, not items x items.
        inner = matrix @ matrix.T
        inner[np.diag_indices_from(inner)] += l2
        precision = -(matrix.T @ np.linalg.solve(inner, matrix))
        precision[np.diag_indices_from(precision)] += 1.0
        precision /= l2
    else:
        gram = matrix.T @ matrix
        gram[np.diag_indices_from(gram)] += l2
        precision = np.linalg.inv(gram)
    weights = precision / -np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


class EASERecommender(Recommender):
    """EASE: closed-form item-item weights, scores = history x weights.

    Args:
        l2: lambda, in squared engagement units. 2,500 (with MovieLens
            ratings as engagement) was the best of a grid on ml-latest-small's
            holdout (the same as lambda 100 on ratings / 5).
        recency: How many of a user's latest products count almost fully:
            the k-th most recent weighs exp(-k / recency). 0 (the default)
            weights every product alike. Training rows without a timestamp,
            and a profile without ``latest``, count every product fully.
    """

    name = "ease"
    # Changed by rank_with without a refit (tuning fits the weights B once).
    ranking_params: ClassVar[tuple[str, ...]] = ("recency",)
    capabilities = frozenset({SIMILAR_ITEMS, EXPLAIN, FOLD_IN})
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "item_weights": ("n_items", "n_items"),
        **HISTORY_SHAPES,
    }
    derived_sizes = HISTORY_SIZES
    index_arrays = HISTORY_INDICES

    def __init__(self, l2: float = 2500.0, recency: float = 0.0) -> None:
        super().__init__()
        if not 0 < l2 < math.inf:
            raise ValueError(f"l2 must be a positive number, got {l2}")
        self.l2 = float(l2)
        self.recency = _checked_recency(recency)
        # Kept by a fit, for rank_with: the rows unweighted, and the training
        # frame's times (users, items, timestamps), read into per-row counts
        # of newer products only once a recency asks for them, then let go.
        self._unweighted: TrainingHistory | None = None
        self._times: tuple[np.ndarray, np.ndarray, pd.Series] | None = None
        self._newer: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        # Without recency, the parameters of the release before it: a version
        # trained now still loads there (a rollback, a deploy in which both serve).
        return {"l2": self.l2, **({"recency": self.recency} if self.recency else {})}

    @property
    def reads_times(self) -> bool:
        return self.recency > 0

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        engagement = feedback["engagement"].to_numpy(dtype=np.float64)
        n_users = len(self.user_ids)
        self._unweighted = TrainingHistory.from_rows(users, items, engagement, n_users)
        # float32 halves the time and memory of the matrix products and the inversion.
        rows = self._unweighted.matrix(len(self.product_ids), np.float32).toarray()
        self.item_weights = ease_weights(rows, self.l2).astype(np.float32)
        del rows
        self._newer = None
        self._times = None
        if has_timestamps(feedback):
            # A copy of the column: a column of the frame could keep all of it alive.
            self._times = (users, items, feedback["timestamp"].copy())
        self._weight_rows(self._unweighted)

    def _newer_counts(self) -> np.ndarray | None:
        """Return, per training row in the history's order, how many newer products its user has.

        None when the training rows had no timestamps. Read from the frame's
        times on first use, so a fit without recency never parses them.
        """
        if self._newer is None and self._times is not None:
            users, items, timestamps = self._times
            latest = pd.Series(epoch_seconds(timestamps), index=timestamps.index)
            newer = latest.groupby(users).rank(method="min", ascending=False).to_numpy() - 1
            self._newer = TrainingHistory.from_rows(users, items, newer, len(self.user_ids)).weights
            self._times = None  # read once: the counts are what rank_with needs
        return self._newer

    def _weight_rows(self, history: TrainingHistory) -> None:
        """Make the rows users are scored with: engagement, weighted by recency when asked.

        The weights B learn from the unweighted rows; only the query is weighted.
        """
        newer = self._newer_counts() if self.recency else None
        if newer is not None:
            weights = history.weights * recency_weights(newer, self.recency)
            history = TrainingHistory(history.lengths, history.items, weights)
        self.history = history
        self._rows = self.history.matrix(len(self.product_ids), np.float32)

    def rank_with(self, recency: float) -> EASERecommender:
        """Change ``recency`` in place, without learning the weights again (tuning's shortcut).

        Raises:
            ValueError: The model was loaded from an artifact, which keeps
                only the rows weighted as trained.
        """
        checked = _checked_recency(recency)
        if self.is_fitted and self._unweighted is None:
            raise ValueError("recency can change only on a model fitted in this process")
        self.recency = checked
        if self._unweighted is not None:
            self._weight_rows(self._unweighted)
        return self

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._rows[users] @ self.item_weights)

    def profile_items(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """Return a profile's known products as (inner items, engagement), weighted by recency.

        A product's rank is counted among the user's products of positive
        engagement, known to the model or not (one touched after training
        still makes the older ones less recent), as ``_fit`` counts them.
        """
        if not self.recency or profile.latest is None:
            return super().profile_items(profile)
        self._require_fitted()
        inner, known = lookup_ids(self.product_ids, profile.product_ids)
        counted = profile.engagement > 0
        newer_times = np.sort(profile.latest[counted])
        newer = len(newer_times) - np.searchsorted(newer_times, profile.latest, side="right")
        engagement = profile.engagement * recency_weights(newer, self.recency)
        kept = known & counted
        return inner[kept], engagement[kept]

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        # The sum a training-time row makes (a sparse row times B): a user
        # whose products have not changed gets exactly the training scores.
        return weighted_row_sum(self.item_weights, items, engagement.astype(np.float32))

    def score_profiles(self, profiles: Sequence[Profile]) -> list[np.ndarray | None]:
        """Return many users' fold-in rows in one sparse-times-dense product.

        The rows are those ``_score_profile`` makes one by one, exactly:
        each output row sums its own float32 products in the same order.
        """
        known = [self.profile_items(profile) for profile in profiles]
        lengths = [len(items) for items, _ in known]
        if not any(lengths):
            return [None] * len(profiles)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate([items for items, _ in known])
        values = np.concatenate([e for _, e in known]).astype(np.float32)
        matrix = scipy.sparse.csr_matrix(
            (values, items, indptr), shape=(len(profiles), len(self.product_ids))
        )
        scores = np.asarray(matrix @ self.item_weights)
        return [scores[row] if lengths[row] else None for row in range(len(profiles))]

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        return engagement * self.item_weights[past, item].astype(np.float64)

    def _similarity_to(self, item: int) -> np.ndarray:
        # How much having the product predicts each other one.
        return self.item_weights[item].astype(np.float64)

    def _item_vectors(self) -> np.ndarray:
        return self.item_weights

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {"item_weights": self.item_weights, **self.history.arrays()}

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_weights = np.asarray(arrays["item_weights"], dtype=np.float32)
        self.history = TrainingHistory.from_arrays(arrays)
        self._rows = self.history.matrix(len(self.product_ids), np.float32)


def _checked_recency(recency: float) -> float:
    if not 0 <= recency < math.inf:
        raise ValueError(f"recency must be 0 or a positive number, got {recency}")
    return float(recency)


def recency_weights(newer: np.ndarray, recency: float) -> np.ndarray:
    """Return exp(-k / recency) for each product, k = how many of the user's products are newer.

    One function for training rows and fold-in profiles, so a user whose
    products have not changed gets the same float64 weights either way.
    """
    return np.exp(-np.asarray(newer, dtype=np.float64) / recency)


# Up to this many products, weighted_row_sum scales and adds the rows in
# numpy; past it, one sparse product's fixed cost (tens of us) is the smaller.
_ROWS_SUMMED_IN_NUMPY = 64


def weighted_row_sum(weights: np.ndarray, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return the sum of ``values[i] * weights[items[i]]``, added in the order of ``items``.

    Exactly what a one-row sparse matrix times ``weights`` gives: scipy adds
    each entry's scaled row to zeros in turn, in the matrices' dtype, so a
    fold-in row equals a training-time row bit for bit. For a short history
    numpy's own reduction does the same in a tenth of the time, since it adds
    the rows of an axis-0 reduction one after the other (when a row has more
    than one value: a single column is summed pairwise, in another order).

    Args:
        weights: (n_items, n) matrix.
        items: Row indices, ascending.
        values: One weight per row, in ``weights``' dtype.
    """
    if len(items) > _ROWS_SUMMED_IN_NUMPY or weights.shape[1] < 2:
        row = scipy.sparse.csr_matrix((values, items, [0, len(items)]), shape=(1, len(weights)))
        return np.asarray(row @ weights)[0]
    scaled = weights.take(items, axis=0)
    scaled *= values[:, None]
    return np.add.reduce(scaled, axis=0, initial=weights.dtype.type(0))
