"""Offline quality metrics: rating errors, ranking quality, and beyond accuracy.

Every function is pure: it takes predictions or ranked lists and returns one
number. Ranking metrics take two mappings keyed by user id:

- ``recommended``: the user's ranked product ids, best first;
- ``relevant``: the user's relevant held-out product ids (for example the test
  items the user rated 4 or more).

Conventions (they differ between libraries, so they are stated here once):

- A ranking metric is the mean over the users that have at least one relevant
  item; users with no relevant item are left out of the mean (as in Microsoft
  Recommenders and LensKit), and a user with relevant items but no list scores 0.
- Only the first ``k`` entries of a list count; a shorter list is not padded
  with relevant items, it simply has fewer chances.
- precision@k divides by k; recall@k divides by the number of relevant items;
  NDCG@k and MAP@k normalise by ``min(k, number of relevant items)`` ideal
  hits, the convention of ``implicit.evaluation.ranking_metrics_at_k``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

RankedLists = Mapping[int, Sequence[int] | np.ndarray]
RelevantSets = Mapping[int, Collection[int]]


def rmse(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Return the root mean squared error, sqrt(sum((p - a)^2) / n).

    The denominator n is the number of (prediction, rating) pairs, as in
    ``surprise.accuracy.rmse``.

    Args:
        predicted: Predicted ratings.
        actual: True ratings, in the same order.

    Raises:
        ValueError: The inputs are empty or of different lengths.
    """
    errors = _rating_errors(predicted, actual)
    return float(np.sqrt(np.mean(errors**2)))


def mae(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Return the mean absolute error, sum(|p - a|) / n.

    The denominator n is the number of (prediction, rating) pairs, as in
    ``surprise.accuracy.mae``.

    Args:
        predicted: Predicted ratings.
        actual: True ratings, in the same order.

    Raises:
        ValueError: The inputs are empty or of different lengths.
    """
    errors = _rating_errors(predicted, actual)
    return float(np.mean(np.abs(errors)))


def precision_at_k(recommended: RankedLists, relevant: RelevantSets, k: int) -> float:
    """Return the mean over users of (relevant items in the top k) / k.

    The denominator is k for every user, even when the list is shorter or the
    user has fewer than k relevant items (Microsoft Recommenders' and
    LensKit's convention; ``implicit`` instead divides all users' hits by the
    sum over users of min(k, relevant)).

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.

    Raises:
        ValueError: k < 1, or no user has a relevant item.
    """
    return _mean_over_users(recommended, relevant, k, lambda hits, n_rel: hits.sum() / k)


def recall_at_k(recommended: RankedLists, relevant: RelevantSets, k: int) -> float:
    """Return the mean over users of (relevant items in the top k) / (relevant items).

    The denominator is the user's number of relevant held-out items; users with
    none are excluded from the mean (Microsoft Recommenders' and LensKit's
    convention).

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.

    Raises:
        ValueError: k < 1, or no user has a relevant item.
    """
    return _mean_over_users(recommended, relevant, k, lambda hits, n_rel: hits.sum() / n_rel)


def ndcg_at_k(recommended: RankedLists, relevant: RelevantSets, k: int) -> float:
    """Return the mean over users of DCG@k / ideal DCG@k with binary relevance.

    DCG@k = sum over ranks r = 1..k of rel_r / log2(r + 1), where rel_r is 1
    when the item at rank r is relevant, else 0. The ideal DCG places
    min(k, relevant items) hits at the top ranks. This is the convention of
    ``implicit`` and Microsoft Recommenders (binary relevance).

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.

    Raises:
        ValueError: k < 1, or no user has a relevant item.
    """
    return _mean_over_users(recommended, relevant, k, _ndcg_of_user(k))


def ndcg_by_user(recommended: RankedLists, relevant: RelevantSets, k: int) -> dict[int, float]:
    """Return each user's NDCG@k (the values ``ndcg_at_k`` averages).

    Users without a relevant item are left out, as ``ndcg_at_k`` leaves them
    out of its mean; paired comparisons of two models resample these values.

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ndcg = _ndcg_of_user(k)
    users = [user for user, targets in relevant.items() if len(targets)]
    values = [ndcg(hits, n_rel) for hits, n_rel in _user_hits(recommended, relevant, k)]
    return {int(user): float(value) for user, value in zip(users, values, strict=True)}


def _ndcg_of_user(k: int):
    """Return the NDCG@k of one user's hits (binary relevance)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_dcg = np.cumsum(discounts)

    def ndcg(hits: np.ndarray, n_rel: int) -> float:
        dcg = discounts[: len(hits)][hits].sum()
        return dcg / ideal_dcg[min(k, n_rel) - 1]

    return ndcg


def map_at_k(recommended: RankedLists, relevant: RelevantSets, k: int) -> float:
    """Return the mean over users of average precision at k.

    AP@k = sum over ranks r = 1..k with a relevant item of precision@r,
    divided by min(k, relevant items). That denominator is the one of
    ``implicit`` and of the classic ``ml_metrics.apk``: a user with more than k
    relevant items can still reach 1.

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.

    Raises:
        ValueError: k < 1, or no user has a relevant item.
    """

    def average_precision(hits: np.ndarray, n_rel: int) -> float:
        ranks = np.flatnonzero(hits) + 1
        precisions = np.arange(1, len(ranks) + 1) / ranks
        return precisions.sum() / min(k, n_rel)

    return _mean_over_users(recommended, relevant, k, average_precision)


def hit_rate_at_k(recommended: RankedLists, relevant: RelevantSets, k: int) -> float:
    """Return the share of users with at least one relevant item in their top k.

    The denominator is the number of users with at least one relevant item.

    Args:
        recommended: Ranked product ids per user, best first.
        relevant: Relevant held-out product ids per user.
        k: The cut-off.

    Raises:
        ValueError: k < 1, or no user has a relevant item.
    """
    return _mean_over_users(recommended, relevant, k, lambda hits, n_rel: float(hits.any()))


def catalog_coverage(recommended: RankedLists, catalog_size: int, k: int | None = None) -> float:
    """Return distinct recommended products / catalog size.

    Counts every product that appears in at least one user's list (its first k
    entries when k is given), divided by the number of products in the catalog
    (for offline evaluation: the products the model was trained on).

    Args:
        recommended: Ranked product ids per user, best first.
        catalog_size: How many products could have been recommended.
        k: Only count each list's first k entries; None counts whole lists.

    Raises:
        ValueError: No lists, or catalog_size < 1.
    """
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be at least 1, got {catalog_size}")
    if not recommended:
        raise ValueError("catalog_coverage needs at least one recommendation list, got none")
    lists = [np.asarray(items[:k], dtype=np.int64) for items in recommended.values()]
    return len(np.unique(np.concatenate(lists))) / catalog_size


def novelty(
    recommended: RankedLists, item_counts: Mapping[int, float], n_users: int, k: int
) -> float:
    """Return the mean self-information of recommended items, -log2(popularity share).

    An item's popularity share is the share of training users who interacted
    with it, count(i) / n_users (at least 1 / n_users, so an item nobody
    touched counts as touched once). Novelty is the mean of -log2(share) over
    every entry of every list's first k (Zhou et al. 2010): a list of items
    everyone knows scores near 0; each halving of the audience adds one bit.

    Args:
        recommended: Ranked product ids per user, best first.
        item_counts: Product id -> training users who interacted with it
            (products absent count as 0).
        n_users: Number of training users.
        k: The cut-off.

    Raises:
        ValueError: No recommended item, n_users < 1 or k < 1.
    """
    if n_users < 1 or k < 1:
        raise ValueError(f"n_users and k must be at least 1, got {n_users} and {k}")
    items = _top_entries(recommended, k)
    counts = np.array([item_counts.get(int(i), 0) for i in items], dtype=np.float64)
    share = np.maximum(counts, 1.0) / n_users
    return float(np.mean(-np.log2(share)))


def popularity_bias(recommended: RankedLists, item_counts: Mapping[int, float], k: int) -> float:
    """Return the mean popularity percentile of recommended items (0 rarest, 1 most popular).

    An item's percentile among the n catalog items (the keys of
    ``item_counts``) is (#{j: count_j < count_i} + 0.5 #{j != i: count_j =
    count_i}) / (n - 1), its mid-rank scaled to [0, 1]; the result is the
    mean over every entry of every list's first k. Popularity scores about 1;
    a recommender indifferent to popularity about 0.5.

    Args:
        recommended: Ranked product ids per user, best first.
        item_counts: Product id -> training interactions, for every catalog item.
        k: The cut-off.

    Raises:
        ValueError: No recommended item, a recommended item not in
            ``item_counts``, fewer than 2 catalog items, or k < 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(item_counts) < 2:
        raise ValueError("popularity_bias needs a catalog of at least 2 items")
    ids = np.fromiter(item_counts.keys(), dtype=np.int64, count=len(item_counts))
    counts = np.fromiter(item_counts.values(), dtype=np.float64, count=len(item_counts))
    sorted_counts = np.sort(counts)
    below = np.searchsorted(sorted_counts, counts, side="left")
    equal_others = np.searchsorted(sorted_counts, counts, side="right") - below - 1
    percentile = dict(zip(ids.tolist(), (below + 0.5 * equal_others) / (len(ids) - 1), strict=True))
    items = _top_entries(recommended, k)
    missing = [int(i) for i in items if int(i) not in percentile]
    if missing:
        raise ValueError(f"recommended item {missing[0]} is not in item_counts")
    return float(np.mean([percentile[int(i)] for i in items]))


def intra_list_diversity(
    recommended: RankedLists,
    k: int,
    categories: Mapping[int, str] | None = None,
    item_ids: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
) -> float:
    """Return the mean over lists of the mean pairwise distance of a list's first k items.

    Distance of two items: with ``categories``, 0 when both have the same
    category and 1 otherwise; else 1 - cosine of their vectors (rows of
    ``item_vectors``, in the order of ``item_ids``; for offline evaluation
    each item's column of the training users x items matrix, so the distance
    is the same whichever model recommends). Lists with fewer than 2 items
    are left out of the mean.

    Args:
        recommended: Ranked product ids per user, best first.
        k: The cut-off.
        categories: Product id -> category, covering every recommended item.
        item_ids: Sorted product ids, the rows of ``item_vectors``.
        item_vectors: One (dense or scipy sparse) row per product.

    Raises:
        ValueError: Neither categories nor vectors, an item not covered, no
            list of 2 or more items, or k < 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lists = [np.asarray(items[:k], dtype=np.int64) for items in recommended.values()]
    lists = [items for items in lists if len(items) >= 2]
    if not lists:
        raise ValueError("intra_list_diversity needs a list of at least 2 items")
    per_list = []
    if categories is not None:
        for items in lists:
            missing = [int(i) for i in items if int(i) not in categories]
            if missing:
                raise ValueError(f"item {missing[0]} has no category")
            labels = np.array([categories[int(i)] for i in items])
            different = labels[:, None] != labels[None, :]
            per_list.append(_mean_off_diagonal(different.astype(np.float64)))
        return float(np.mean(per_list))
    if item_ids is None or item_vectors is None:
        raise ValueError("intra_list_diversity needs categories or item_ids with item_vectors")
    for items in lists:
        rows = np.searchsorted(item_ids, items)
        rows = np.minimum(rows, len(item_ids) - 1)
        if not np.array_equal(item_ids[rows], items):
            raise ValueError("a recommended item has no vector")
        block = item_vectors[rows]
        # The k x k Gram matrix of the rows: a sparse row (one column per
        # training user) is never made dense, which on a million users would
        # cost megabytes per list.
        gram = block @ block.T
        gram = np.asarray(gram.toarray() if hasattr(gram, "toarray") else gram, dtype=float)
        norms = np.sqrt(np.diag(gram)).copy()
        norms[norms == 0] = 1.0
        per_list.append(_mean_off_diagonal(1.0 - gram / np.outer(norms, norms)))
    return float(np.mean(per_list))


def _mean_off_diagonal(matrix: np.ndarray) -> float:
    n = len(matrix)
    return float((matrix.sum() - np.trace(matrix)) / (n * (n - 1)))


def _top_entries(recommended: RankedLists, k: int) -> np.ndarray:
    lists = [np.asarray(items[:k], dtype=np.int64) for items in recommended.values()]
    items = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
    if items.size == 0:
        raise ValueError("no recommended item: the metric is undefined")
    return items


def _rating_errors(predicted: ArrayLike, actual: ArrayLike) -> np.ndarray:
    guesses = np.asarray(predicted, dtype=np.float64)
    truths = np.asarray(actual, dtype=np.float64)
    if guesses.size == 0:
        raise ValueError("cannot compute a rating error on zero predictions")
    if guesses.shape != truths.shape:
        raise ValueError(f"predicted and actual differ in length: {guesses.size} vs {truths.size}")
    return guesses - truths


def _user_hits(
    recommended: RankedLists, relevant: RelevantSets, k: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (is each of the top-k items relevant, number of relevant) per scored user."""
    for user, targets in relevant.items():
        if len(targets) == 0:
            continue
        top = np.asarray(recommended.get(user, ())[:k], dtype=np.int64)
        targets = np.fromiter(targets, dtype=np.int64, count=len(targets))
        yield np.isin(top, targets), len(targets)


def _mean_over_users(recommended: RankedLists, relevant: RelevantSets, k: int, per_user) -> float:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    values = [per_user(hits, n_rel) for hits, n_rel in _user_hits(recommended, relevant, k)]
    if not values:
        raise ValueError("no user has a relevant item: ranking metrics are undefined")
    return float(np.mean(values))
