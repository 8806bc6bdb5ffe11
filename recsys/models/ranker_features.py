"""The two-stage ranker's data: its validation part, candidates and features.

The ranker (``recsys.models.ranker``) takes each user's candidates from two
of its stage-1 models, EASE and popularity (the union of each one's best
unseen products), and scores them with a learning-to-rank model over the
features this module computes; ALS and item-kNN score the candidates only,
so a served answer never ranks the catalog by them. Everything here is
plain numpy on inner indices, so the same code builds the features LightGBM
learns from in ``fit`` and the ones it scores when serving.

Features, per (user, candidate product), in ``FEATURES`` order:

- each stage-1 model's score, standardised among the user's candidates
  (minus their mean, over their standard deviation), and its rank, for
  EASE, ALS, item-kNN and popularity (popularity's score is
  log(1 + clicks)): EASE's and popularity's among the products the user has
  not touched (1 = best; products past the model's ``depth`` best share
  rank ``depth + 1``), ALS's and item-kNN's among the candidates;
- the product's popularity and its popularity in the log's latest tenth of
  time, each as log(1 + users per 1,000 rows) (a share, so a validation
  part's fewer rows give the scale of the whole log's), its mean rating
  (shrunk toward the global mean by 10 ratings), its age (days since its
  first interaction) and idleness (days since its last one), both at the
  log's end;
- the user's activity (log(1 + products)) and mean engagement, and how much
  more popular the candidate is than the user's usual product (log
  popularity minus their products' mean).

The feedback frame carries no categories, so there is no category affinity:
a model learns from the frame alone (``recsys.models.base``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STAGE_ONE = ("ease", "als", "itemknn", "popular")
# The stage-1 models whose best products are the candidates; the others only score them.
PROPOSERS = ("ease", "popular")
ITEM_FEATURES = (
    "product popularity",
    "product mean rating",
    "product recent users",
    "product age days",
    "product idle days",
)
USER_FEATURES = ("user activity", "user mean engagement", "popularity gap")
FEATURES = (
    *(f"{model} {kind}" for model in STAGE_ONE for kind in ("score", "rank")),
    *ITEM_FEATURES,
    *USER_FEATURES,
)
# The mean rating is shrunk toward the global mean as if by this many ratings.
_RATING_PRIOR = 10.0
# The latest share of the log's time span that counts as recent.
_RECENT_SHARE = 0.1
_DAY = 86_400.0
# How validation parts are drawn from each user's rows.
TIME_ORDER = "time"
RANDOM_ORDER = "random"
VALIDATION_ORDERS = (TIME_ORDER, RANDOM_ORDER)
# Where each kind of feature sits in a row of FEATURES.
_SCORES = slice(0, 2 * len(STAGE_ONE), 2)
_EASE_RANK, _ALS_RANK, _ITEMKNN_RANK, _POPULAR_RANK = range(1, 2 * len(STAGE_ONE), 2)
_PROPOSER_RANKS = slice(_EASE_RANK, _POPULAR_RANK + 1, _POPULAR_RANK - _EASE_RANK)
_ITEMS = slice(2 * len(STAGE_ONE), 2 * len(STAGE_ONE) + len(ITEM_FEATURES))


# 1, 2, 3, ...: ranks, sliced rather than made anew for each user.
_COUNTING = np.arange(1.0, 1025.0)
_COUNTING.flags.writeable = False


def _counting(n: int) -> np.ndarray:
    """Return the ranks 1.0, 2.0, ..., n."""
    return _COUNTING[:n] if n <= len(_COUNTING) else np.arange(1.0, n + 1.0)


def timestamp_seconds(values: pd.Series) -> np.ndarray:
    """Return a timestamp column as float seconds (numbers as they are, dates converted)."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    stamps = pd.to_datetime(values, utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def has_timestamps(feedback: pd.DataFrame) -> bool:
    """Return whether every row of a feedback frame carries a timestamp."""
    return "timestamp" in feedback.columns and bool(feedback["timestamp"].notna().all())


def validation_parts(
    feedback: pd.DataFrame,
    fraction: float,
    min_rows: int,
    seed: int,
    parts: int = 1,
    order: str = TIME_ORDER,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return (learn, validation) row masks: a ``fraction`` of each user's rows at a time.

    A user with at least ``min_rows`` rows gives ``floor(fraction * rows)``
    of them to each validation part, at least one; a user with fewer gives
    none (they stay whole in every part stage 1 learns from).

    In ``"time"`` order, part 1 is each user's latest ``fraction`` of rows
    and learns from all the earlier ones; part 2 the ``fraction`` before
    that and learns from the rows before it; and so on, so no part learns
    from rows later than those it is labelled with. "Latest" is by timestamp
    when every row has one (ties: the larger product id is later, as the
    time split orders them), else a seeded random order.

    In ``"random"`` order, each part is a seeded random ``fraction`` of
    each user's rows, disjoint from the other parts, and learns from every
    row outside it (folds, as a random holdout draws its test rows from
    the whole of a user's history).

    Args:
        feedback: The training feedback frame.
        fraction: The share of each user's rows in one validation part (0 < fraction < 1).
        min_rows: Users with fewer rows hold out nothing.
        seed: Seed of the random order.
        parts: How many validation parts.
        order: ``"time"`` or ``"random"`` (``VALIDATION_ORDERS``).
    """
    if order not in VALIDATION_ORDERS:
        raise ValueError(f"order must be one of {', '.join(VALIDATION_ORDERS)}, got {order!r}")
    folds = order == RANDOM_ORDER
    users = feedback["user_id"].to_numpy(dtype=np.int64)
    if order == TIME_ORDER and has_timestamps(feedback):
        when = timestamp_seconds(feedback["timestamp"])
        products = feedback["product_id"].to_numpy(dtype=np.int64)
        ranked = np.lexsort((products, when, users))
    else:
        shuffled = np.random.default_rng(seed).permutation(len(feedback))
        ranked = shuffled[np.argsort(users[shuffled], kind="stable")]
    sorted_users = users[ranked]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(ranked)])
    held = np.where(counts >= min_rows, np.maximum(1, np.floor(fraction * counts)), 0)
    # Each row's position within its user, counted from the user's last row
    # (1 = latest), in the frame's row order.
    from_end = np.empty(len(feedback), dtype=np.int64)
    from_end[ranked] = np.repeat(starts + counts, counts) - np.arange(len(ranked))
    held_of_row, rows_of_row = np.empty(len(feedback)), np.empty(len(feedback))
    held_of_row[ranked] = np.repeat(held, counts)
    rows_of_row[ranked] = np.repeat(counts, counts)
    found = []
    for part in range(parts):
        validation = (from_end > part * held_of_row) & (from_end <= (part + 1) * held_of_row)
        # A user's earliest row is never held out: each keeps a row to learn from.
        validation &= from_end < rows_of_row
        learn = ~validation if folds else from_end > (part + 1) * held_of_row
        found.append((learn, validation))
    return found


def item_features(
    feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray, n_items: int
) -> np.ndarray:
    """Return the (n_items, len(ITEM_FEATURES)) product features of a feedback frame.

    Args:
        feedback: The frame (``rating``, and ``timestamp`` when it has them).
        users: Inner user index of each row.
        items: Inner item index of each row.
        n_items: The number of products.

    Without timestamps the three time features are 0 for every product.
    """
    table = np.zeros((n_items, len(ITEM_FEATURES)))
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    # Popularity as a share of the log (log of users per 1,000 rows): the same
    # scale in a validation part's rows and in all of them.
    table[:, 0] = np.log1p(1000.0 * counts / max(len(items), 1))
    ratings = feedback["rating"].to_numpy(dtype=np.float64)
    overall = float(ratings.mean())
    sums = np.bincount(items, weights=ratings, minlength=n_items)
    table[:, 1] = (sums + _RATING_PRIOR * overall) / (counts + _RATING_PRIOR)
    if has_timestamps(feedback):
        when = timestamp_seconds(feedback["timestamp"])
        first, last = when.min(), when.max()
        recent = when >= last - _RECENT_SHARE * (last - first)
        table[:, 2] = np.log1p(
            1000.0 * np.bincount(items[recent], minlength=n_items) / max(int(recent.sum()), 1)
        )
        earliest = np.full(n_items, last)
        np.minimum.at(earliest, items, when)
        latest = np.full(n_items, first)
        np.maximum.at(latest, items, when)
        table[:, 3] = (last - earliest) / _DAY
        table[:, 4] = (last - latest) / _DAY
    return table


@dataclass(frozen=True)
class Candidates:
    """One user's candidates and their features.

    Attributes:
        items: Inner items, ascending.
        features: (len(items), len(FEATURES)) float64.
    """

    items: np.ndarray
    features: np.ndarray


def proposals(
    ease_scores: np.ndarray, popular_order: np.ndarray, history: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return one user's candidates and their ranks by the proposers, EASE and popularity.

    The candidates are the union of the ``depth`` best unseen products of
    each proposer (``PROPOSERS``); the user's own products are never
    candidates. A rank is among the products the user has not touched (1 =
    best, ties by ascending item as the models' own rankings break them);
    products past a proposer's ``depth`` best share rank ``depth + 1``.

    Args:
        ease_scores: (n_items,) EASE's score of every product for the user;
            the history's entries are overwritten.
        popular_order: Every inner item, most popular first (the same for every user).
        history: The user's inner items (ascending, unique).
        depth: How many products each proposer proposes.

    Returns:
        The candidates (inner items, ascending) and their (2, len(items))
        ranks, EASE's then popularity's.
    """
    take = min(depth, len(ease_scores) - len(history))
    if take < 1:
        return np.empty(0, np.int64), np.empty((len(PROPOSERS), 0))
    ease_scores[history] = -np.inf
    negated = -ease_scores
    best = negated.argpartition(take - 1)[:take]
    best.sort()
    best = best[negated[best].argsort(kind="stable")]
    # The most popular unseen products: the first take + len(history) hold take of them.
    seen = np.zeros(len(ease_scores), dtype=bool)
    seen[history] = True
    popular = popular_order[: take + len(history)]
    popular = popular[~seen[popular]][:take]
    # The union, ascending, marked over the catalog: cheaper than np.unique at this size.
    proposed = np.zeros(len(ease_scores), dtype=bool)
    proposed[best] = True
    proposed[popular] = True
    items = proposed.nonzero()[0]
    # Each proposer's ranks over the catalog, then the candidates' columns.
    ranks = np.empty((len(PROPOSERS), len(ease_scores)))
    ranks.fill(depth + 1.0)
    ranked = _counting(take)
    ranks[0][best] = ranked
    ranks[1][popular] = ranked
    return items, ranks.take(items, axis=1)


def feature_rows(table: np.ndarray) -> np.ndarray:
    """Return each product's row of ``FEATURES`` with its product features, the rest 0.

    A user's candidate rows start as a copy of their products' rows, so the
    product features cost one gather per user.

    Args:
        table: ``item_features``' output.
    """
    rows = np.zeros((len(table), len(FEATURES)))
    rows[:, _ITEMS] = table
    return rows


def candidate_features(
    items: np.ndarray,
    proposer_ranks: np.ndarray,
    scores: np.ndarray,
    rows: np.ndarray,
    history: np.ndarray,
    engagement: np.ndarray,
) -> Candidates:
    """Return one user's candidates with their features, in ``FEATURES`` order.

    Args:
        items: The candidates (inner items, ascending), from ``proposals``.
        proposer_ranks: Their (2, len(items)) ranks by EASE and popularity, from ``proposals``.
        scores: (4, len(items)): the candidates' scores by EASE, ALS,
            item-kNN and popularity (``STAGE_ONE`` order; popularity's is
            log(1 + clicks)). ALS and item-kNN rank the candidates by them.
        rows: ``feature_rows`` of the product features.
        history: The user's inner items.
        engagement: Their engagement with each.
    """
    n = len(items)
    features = rows.take(items, axis=0)
    if n == 0:
        return Candidates(items=np.asarray(items, np.int64), features=features)
    # Written through the transpose, one feature a row: few, whole-row numpy
    # calls (serving pays per call at this size). Means are sums over the
    # row divided by its length, as ndarray.mean computes them; lengths are
    # divided by as floats (the same quotients: a Python int costs numpy a
    # conversion per call).
    count = float(n)
    columns = features.T
    columns[_PROPOSER_RANKS] = proposer_ranks
    # ALS and item-kNN rank the candidates: best first, ties by ascending item
    # (the items are ascending, so a stable sort breaks them so).
    best_first = (-scores[1:3]).argsort(axis=1, kind="stable")
    ranked = _counting(n)
    columns[_ALS_RANK][best_first[0]] = ranked
    columns[_ITEMKNN_RANK][best_first[1]] = ranked
    # Scores standardised among the user's candidates: a model's raw scores
    # grow with the user's history (and differ between the model stage 2
    # learns from and the one refitted on every row); their spread does not.
    centred = scores - np.add.reduce(scores, axis=1, keepdims=True) / count
    spread = np.sqrt(np.einsum("ij,ij->i", centred, centred) / count)[:, None]
    standard = columns[_SCORES]
    if spread.min() > 0:  # (False when a spread is NaN)
        np.divide(centred, spread, out=standard)
    else:  # a model scores every candidate alike: 0
        standard[...] = 0.0
        np.divide(centred, spread, out=standard, where=spread > 0)
    user = _ITEMS.stop
    columns[user] = np.log1p(float(len(history)))
    columns[user + 1] = (
        np.add.reduce(engagement) / float(len(engagement)) if len(engagement) else 0.0
    )
    popularity = _ITEMS.start
    usual = (
        np.add.reduce(rows[:, popularity][history]) / float(len(history)) if len(history) else 0.0
    )
    np.subtract(columns[popularity], usual, out=columns[user + 2])
    return Candidates(items=items, features=features)
