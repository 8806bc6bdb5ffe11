"""The ranker's per-answer loops, compiled by numba: candidates, features, item-kNN sums, trees.

Why compiled: an uncached ranker answer is a few dozen candidates, and in
numpy each step over them (a gather, a sort, a mean, a division) is a call
costing a microsecond or more whatever its size: some 40 such calls, and
LightGBM's predictor on top, made the answer 3.5 times EASE's. Here each
step is one loop over the candidates, and the whole answer a few calls.

Imported only where a ranker trains or scores (``ranker_features``,
``booster_scoring``): numba's import and its compilation (some ten seconds
on a 2-core machine, once per process, on the first call of each function
with each type) are paid only by a process that uses a ranker, and a
ranker pays them when it is loaded (``RankerRecommender``), not on its
first answer. Nothing is cached on disk: numba's cache raises when it
cannot write (a read-only install, a full disk), which would fail answers.

The loops index without bounds checks (numba's default): every index they
are given is a model's own inner index (artifacts' index arrays are
checked when loaded, ``recsys.models.state``), and ``BoosterScorer``
checks that every split reads a column of the rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recsys.models.booster_scoring import MISSING_NONE, MISSING_ZERO
from recsys.models.ranker_features import (
    ALS_RANK,
    EASE_RANK,
    ITEMKNN_RANK,
    POPULAR_RANK,
    POPULARITY_COLUMN,
    SCORE_COLUMNS,
    USER_COLUMNS,
)

# LightGBM reads a value within this of 0 as 0 (kZeroThreshold, its dense rows' reading).
_ZERO_THRESHOLD = 1e-35
_ALL_LEAVES = np.uint64(0xFFFFFFFFFFFFFFFF)
# The lowest set bit of a mask times this de Bruijn sequence, shifted right by
# 58, is a distinct 6-bit number for each bit (Leiserson, Prokop and Randall,
# 1998): the bit's index by one multiplication and one lookup.
_DE_BRUIJN = 0x03F79D71B4CB0A89
_BIT_AT = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _BIT_AT[(((1 << _bit) * _DE_BRUIJN) & 0xFFFFFFFFFFFFFFFF) >> 58] = _bit
_BIT_AT.flags.writeable = False
_DE_BRUIJN_U64 = np.uint64(_DE_BRUIJN)
_SHIFT = np.uint64(58)
_ONE = np.uint64(1)


@njit(nogil=True, cache=False)
def forest_scores(
    rows, node_feature, node_threshold, node_tree, node_missing, node_default_left,
    node_right_mask, leaf_values,
):  # fmt: skip
    """Return the sum of the trees' leaf values for each row (``BoosterScorer.scores``).

    Every split node (``node_*``, one entry each) is tested against all rows
    at once; a row that goes right loses the node's left subtree's leaves
    (``node_right_mask``); its exit leaf in each tree is the lowest leaf
    left. The leaves are added tree by tree, as LightGBM adds them.
    """
    n, width = rows.shape
    # A column per feature, each value as LightGBM's dense-row reading gives it.
    values = np.empty((width, n))
    for r in range(n):
        for f in range(width):
            v = rows[r, f]
            values[f, r] = 0.0 if abs(v) <= _ZERO_THRESHOLD else v
    trees = leaf_values.shape[0]
    masks = np.full((trees, n), _ALL_LEAVES, dtype=np.uint64)
    for j in range(node_feature.shape[0]):
        column = values[node_feature[j]]
        threshold = node_threshold[j]
        keep = node_right_mask[j]
        reached = masks[node_tree[j]]
        missing = node_missing[j]
        default_right = not node_default_left[j]
        for r in range(n):
            v = column[r]
            if missing == MISSING_NONE:
                right = (0.0 if np.isnan(v) else v) > threshold
            elif missing == MISSING_ZERO:
                right = default_right if (np.isnan(v) or v == 0.0) else v > threshold
            else:  # NaN is missing
                right = default_right if np.isnan(v) else v > threshold
            if right:
                reached[r] &= keep
    scores = np.zeros(n)
    for t in range(trees):
        reached = masks[t]
        leaves = leaf_values[t]
        for r in range(n):
            m = reached[r]
            lowest = m & (~m + _ONE)
            scores[r] += leaves[_BIT_AT[(lowest * _DE_BRUIJN_U64) >> _SHIFT]]
    return scores


@njit(nogil=True, cache=False)
def _ahead(x, y):
    """Return whether value x orders strictly before y, largest first (NaN last, as numpy's)."""
    if np.isnan(x):
        return False
    return np.isnan(y) or x > y


@njit(nogil=True, cache=False)
def best_first(values):
    """Return the positions of values, largest first, ties by ascending position.

    ``np.argsort(-values, kind="stable")``, as a merge sort of our own:
    numba compiled numpy's sort in 1.9 s here, this in 0.9 (each process
    that loads a ranker pays it).
    """
    n = values.shape[0]
    order = np.arange(n)
    merged = np.empty(n, dtype=np.int64)
    width = 1
    while width < n:
        for low in range(0, n, 2 * width):
            middle, high = min(low + width, n), min(low + 2 * width, n)
            left, right = low, middle
            for k in range(low, high):
                # The right run's value goes first only when strictly ahead: stable.
                if right < high and (
                    left == middle or _ahead(values[order[right]], values[order[left]])
                ):
                    merged[k] = order[right]
                    right += 1
                else:
                    merged[k] = order[left]
                    left += 1
        order, merged = merged, order
        width *= 2
    return order


@njit(nogil=True, cache=False)
def _number(score):
    """Return a score as ``propose`` orders it: NaN as -inf."""
    return -np.inf if np.isnan(score) else float(score)


@njit(nogil=True, cache=False)
def _largest(scores, seen, take):
    """Return the take largest scores of the unseen products (NaN as -inf) as a min-heap.

    One pass keeping them in a binary min-heap, its first entry the
    smallest: most scores are below it and cost one comparison, less than
    a copy of the catalog's scores and ``np.partition`` over it.
    """
    heap = np.empty(take)
    filled = 0
    for i in range(scores.shape[0]):
        if seen[i]:
            continue
        v = _number(scores[i])
        if filled < take:
            # Sift up the new last entry.
            j = filled
            heap[j] = v
            filled += 1
            while j > 0 and heap[(j - 1) // 2] > heap[j]:
                parent = (j - 1) // 2
                heap[parent], heap[j] = heap[j], heap[parent]
                j = parent
        elif v > heap[0]:
            # Replace the smallest and sift it down.
            heap[0] = v
            j = 0
            while True:
                child = 2 * j + 1
                if child >= take:
                    break
                if child + 1 < take and heap[child + 1] < heap[child]:
                    child += 1
                if heap[child] >= heap[j]:
                    break
                heap[child], heap[j] = heap[j], heap[child]
                j = child
    return heap


@njit(nogil=True, cache=False)
def propose(scores, popular_order, history, depth):
    """Return one user's candidates and their ranks by EASE and popularity (``proposals``).

    EASE's ``depth`` best unseen products: those above the depth-th best
    score and, of those at it, the first by ascending item; ranked best
    first, ties by ascending item. Popularity's: the first unseen of
    ``popular_order``.
    """
    n = scores.shape[0]
    seen = np.zeros(n, dtype=np.bool_)
    unseen = n
    for item in history:
        if not seen[item]:
            seen[item] = True
            unseen -= 1
    take = min(depth, unseen)
    if take < 1:
        return np.empty(0, dtype=np.int64), np.empty((2, 0))
    largest = _largest(scores, seen, take)
    cut = largest[0]
    # Every score above the cut is among the ``take`` largest: the rest are ties at it.
    ties = take
    for v in largest:
        if v > cut:
            ties -= 1
    # One ascending pass: every score above the cut, the first ``ties`` at it.
    best = np.empty(take, dtype=np.int64)
    best_scores = np.empty(take)
    k = 0
    for i in range(n):
        if seen[i]:
            continue
        v = _number(scores[i])
        if v > cut or (v == cut and ties > 0):
            if v == cut:
                ties -= 1
            best[k] = i
            best_scores[k] = v
            k += 1
    best_rank = np.empty(take)
    order = best_first(best_scores)
    for r in range(take):
        best_rank[order[r]] = r + 1.0
    popular = np.empty(take, dtype=np.int64)
    k = 0
    for item in popular_order:
        if k == take:
            break
        if not seen[item]:
            popular[k] = item
            k += 1
    # Popularity's products by ascending item (exact as floats below 2 ** 53).
    by_item = best_first(-popular.astype(np.float64))
    # The union of the two ascending lists, with each proposer's rank (depth + 1 past it).
    items = np.empty(2 * take, dtype=np.int64)
    ranks = np.full((2, 2 * take), depth + 1.0)
    a = b = m = 0
    while a < take or b < take:
        next_popular = popular[by_item[b]] if b < take else n
        if a < take and best[a] <= next_popular:
            items[m] = best[a]
            ranks[0, m] = best_rank[a]
            if best[a] == next_popular:
                ranks[1, m] = by_item[b] + 1.0
                b += 1
            a += 1
        else:
            items[m] = next_popular
            ranks[1, m] = by_item[b] + 1.0
            b += 1
        m += 1
    return items[:m].copy(), ranks[:, :m].copy()


@njit(nogil=True, cache=False)
def weighted_row_sums_at(indptr, indices, data, rows, weights, columns, n_columns):
    """Return sum_i weights[i] * M[rows[i], c] for each c of ``columns`` (M in CSR form).

    The same additions, in the same order, as ``np.bincount`` over the rows'
    entries in turn (item-kNN's ``_score_profile``), read at the columns only.
    """
    sums = np.zeros(n_columns)
    for i in range(rows.shape[0]):
        row = rows[i]
        for p in range(indptr[row], indptr[row + 1]):
            sums[indices[p]] += data[p] * weights[i]
    found = np.empty(columns.shape[0])
    for c in range(columns.shape[0]):
        found[c] = sums[columns[c]]
    return found


@njit(nogil=True, cache=False)
def numpy_sum(values, start, n):
    """Return the sum of values[start:start + n] in numpy's order (``np.add.reduce``).

    numpy's pairwise summation: in order below 8 values; eight running sums
    up to 128, combined pairwise, then the rest in order; halves above. The
    same number as numpy, bit for bit, so the features are the ones stage 2
    was trained on before these loops were compiled.
    """
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= 128:
        r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
        r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
        i = start + 8
        blocks_end = start + n - n % 8
        while i < blocks_end:
            r0 += values[i]
            r1 += values[i + 1]
            r2 += values[i + 2]
            r3 += values[i + 3]
            r4 += values[i + 4]
            r5 += values[i + 5]
            r6 += values[i + 6]
            r7 += values[i + 7]
            i += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < start + n:
            total += values[i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return numpy_sum(values, start, half) + numpy_sum(values, start + half, n - half)


@njit(nogil=True, cache=False)
def numpy_sum_of_squares(values):
    """Return sum(values ** 2) in the order of numpy's ``einsum("i,i->", v, v)``.

    Two lanes of running sums (its 128-bit SIMD loop), eight values a step
    added last to first, then two at a time, the lanes added last: numpy's
    number bit for bit on this build (tests/models/test_ranker.py checks it).
    """
    n = values.shape[0]
    even = odd = 0.0
    i = 0
    while n - i >= 8:
        even = values[i] * values[i] + (
            values[i + 2] * values[i + 2]
            + (values[i + 4] * values[i + 4] + (values[i + 6] * values[i + 6] + even))
        )
        odd = values[i + 1] * values[i + 1] + (
            values[i + 3] * values[i + 3]
            + (values[i + 5] * values[i + 5] + (values[i + 7] * values[i + 7] + odd))
        )
        i += 8
    while i < n:
        even = values[i] * values[i] + even
        if i + 1 < n:
            odd = values[i + 1] * values[i + 1] + odd
        i += 2
    return even + odd


@njit(nogil=True, cache=False)
def candidate_feature_rows(items, proposer_ranks, scores, rows, history, engagement, activity):
    """Return the candidates' rows of ``FEATURES`` (``candidate_features``).

    Sums in numpy's orders (``numpy_sum``, ``numpy_sum_of_squares``): the
    same features, bit for bit, as the numpy code this replaced.
    """
    n = items.shape[0]
    features = np.empty((n, rows.shape[1]))
    for c in range(n):
        features[c] = rows[items[c]]
        features[c, EASE_RANK] = proposer_ranks[0, c]
        features[c, POPULAR_RANK] = proposer_ranks[1, c]
    if n == 0:
        return features
    # ALS and item-kNN rank the candidates: best first, ties by ascending item.
    for model, column in ((1, ALS_RANK), (2, ITEMKNN_RANK)):
        order = best_first(scores[model])
        for r in range(n):
            features[order[r], column] = r + 1.0
    # Each model's scores minus their mean over their spread, 0 when all alike.
    count = float(n)
    centred = np.empty(n)
    for model in range(scores.shape[0]):
        mean = numpy_sum(scores[model], 0, n) / count
        for c in range(n):
            centred[c] = scores[model, c] - mean
        spread = np.sqrt(numpy_sum_of_squares(centred) / count)
        column = SCORE_COLUMNS[model]
        for c in range(n):
            features[c, column] = centred[c] / spread if spread > 0 else 0.0
    mean_engagement = 0.0
    if engagement.shape[0]:
        mean_engagement = numpy_sum(engagement, 0, engagement.shape[0]) / engagement.shape[0]
    usual = 0.0
    if history.shape[0]:
        popularity = np.empty(history.shape[0])
        for h in range(history.shape[0]):
            popularity[h] = rows[history[h], POPULARITY_COLUMN]
        usual = numpy_sum(popularity, 0, history.shape[0]) / history.shape[0]
    for c in range(n):
        features[c, USER_COLUMNS[0]] = activity
        features[c, USER_COLUMNS[1]] = mean_engagement
        features[c, USER_COLUMNS[2]] = features[c, POPULARITY_COLUMN] - usual
    return features
