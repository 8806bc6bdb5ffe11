"""Surprise's KNNBaseline as arrays: each row's nearest neighbours, predicted with numpy.

Surprise learns the baselines (``mu + b_u + b_i``, by alternating least
squares) and the shrunk Pearson-baseline similarities; a row's estimate is its
baseline plus the similarity-weighted mean of the baseline residuals of its
k most similar neighbours that rated the other side of the pair (positive
similarities only). Surprise keeps the whole ``n x n`` similarity matrix and
predicts one pair at a time in Python; here each row keeps its
``max_neighbours`` most similar rows, sorted, so a model stores
``n x max_neighbours`` arrays and predicts pairs, or a user's whole row, with
numpy. With ``max_neighbours`` at least the number of rows minus one the
estimates are Surprise's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from surprise import KNNBaseline, Trainset

# Rows of the similarity matrix reordered and cut per step: bounds the copy.
_ROWS_PER_STEP = 512


@dataclass(frozen=True)
class Neighbours:
    """Each row's most similar rows, best first.

    Attributes:
        indices: (n, m) inner indices of the neighbours (padding: index 0).
        similarities: (n, m) their similarities; 0 marks padding or a
            non-positive similarity, which never takes part in an estimate.
    """

    indices: np.ndarray
    similarities: np.ndarray


@dataclass(frozen=True)
class FittedKNNBaseline:
    """What ``fit_knn_baseline`` learns, in the caller's inner-index order."""

    user_bias: np.ndarray
    item_bias: np.ndarray
    neighbours: Neighbours


def fit_knn_baseline(
    trainset: Trainset,
    n_users: int,
    n_items: int,
    user_based: bool,
    max_neighbours: int,
    shrinkage: float = 100.0,
) -> FittedKNNBaseline:
    """Fit Surprise's KNNBaseline (Pearson-baseline similarity) and keep each row's best.

    Args:
        trainset: A trainset whose raw ids are the caller's inner indices
            (``trainset_from_arrays(users, items, ...)``).
        n_users: Number of inner users.
        n_items: Number of inner items.
        user_based: Similarities between users (else between items).
        max_neighbours: How many neighbours each row keeps.
        shrinkage: Surprise's shrinkage of similarities with little support.

    Returns:
        The baselines and neighbours; no neighbour at all when Surprise
        cannot compute the similarities (rows whose ratings the baselines fit
        exactly), so that every estimate is the baseline.
    """
    algo = KNNBaseline(
        sim_options={"name": "pearson_baseline", "user_based": user_based, "shrinkage": shrinkage},
        verbose=False,
    )
    user_order = np.array([trainset.to_inner_uid(u) for u in range(n_users)], dtype=np.int64)
    item_order = np.array([trainset.to_inner_iid(i) for i in range(n_items)], dtype=np.int64)
    order = user_order if user_based else item_order
    try:
        algo.fit(trainset)
        neighbours = nearest_rows(np.asarray(algo.sim), order, max_neighbours)
    except ZeroDivisionError:
        # Surprise divides by a row's squared residuals on the items it shares
        # with another, which are 0 when the baselines fit those ratings
        # exactly (every rating alike, say). It has learned the baselines by
        # then; without similarities every estimate is the baseline.
        empty = np.zeros((len(order), 1))
        neighbours = Neighbours(indices=empty.astype(np.int64), similarities=empty)
    return FittedKNNBaseline(
        user_bias=np.asarray(algo.bu, dtype=np.float64)[user_order],
        item_bias=np.asarray(algo.bi, dtype=np.float64)[item_order],
        neighbours=neighbours,
    )


def nearest_rows(similarity: np.ndarray, order: np.ndarray, max_neighbours: int) -> Neighbours:
    """Return each row's most similar other rows, in the caller's order.

    Args:
        similarity: (n, n) similarities in Surprise's inner order.
        order: Surprise's inner index of each of the caller's rows.
        max_neighbours: How many neighbours to keep per row (at most n - 1).
    """
    n = len(order)
    m = max(1, min(max_neighbours, n - 1))
    indices = np.zeros((n, m), dtype=np.int64)
    similarities = np.zeros((n, m), dtype=np.float64)
    if n == 1:  # a lone row has no neighbour: every estimate is its baseline
        return Neighbours(indices=indices, similarities=similarities)
    for start in range(0, n, _ROWS_PER_STEP):
        rows = np.arange(start, min(n, start + _ROWS_PER_STEP))
        block = np.array(similarity[order[rows]][:, order], dtype=np.float64)
        block[np.arange(len(rows)), rows] = -np.inf  # a row is not its own neighbour
        best = np.argpartition(-block, m - 1, axis=1)[:, :m]
        values = np.take_along_axis(block, best, axis=1)
        # Best first; ties by ascending index so the order is reproducible.
        rank = np.lexsort((best, -values), axis=1)
        indices[rows] = np.take_along_axis(best, rank, axis=1)
        similarities[rows] = np.maximum(np.take_along_axis(values, rank, axis=1), 0.0)
    return Neighbours(indices=indices, similarities=similarities)


def neighbourhood_offsets(similarities: np.ndarray, residuals: np.ndarray, k: int) -> np.ndarray:
    """Return KNNBaseline's correction of the baseline for each row of candidates.

    Args:
        similarities: (p, m) similarities of each row's neighbours, best first.
        residuals: (p, m) each neighbour's baseline residual on the row's
            other side, NaN where the neighbour has no rating there.
        k: At most this many neighbours count per row (the first that rated).

    Returns:
        (p,) the similarity-weighted mean residual of the counted neighbours,
        0 where none counts.
    """
    counts = ~np.isnan(residuals) & (similarities > 0)
    counts &= np.cumsum(counts, axis=1) <= k
    weights = np.where(counts, similarities, 0.0)
    total = weights.sum(axis=1)
    weighted = np.where(counts, residuals, 0.0)
    weighted *= weights
    sums = weighted.sum(axis=1)
    return np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)
