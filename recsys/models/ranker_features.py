"""The two-stage ranker's data: its validation part, candidates and features.

The ranker (``recsys.models.ranker``) takes each user's candidates from two
of its stage-1 models, EASE and popularity (the union of each one's best
unseen products), and scores them with a learning-to-rank model over the
features this module computes; ALS and item-kNN score the candidates only,
so a served answer never ranks the catalog by them. Everything here works
on inner indices, and the same code (the candidates and their features by
compiled loops, ``recsys.models.compiled``) builds the features LightGBM
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

from recsys.models.profile import has_timestamps

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
# Where each kind of feature sits in a row of FEATURES (the compiled loops
# of recsys.models.compiled write them there).
SCORE_COLUMNS = tuple(range(0, 2 * len(STAGE_ONE), 2))
EASE_RANK, ALS_RANK, ITEMKNN_RANK, POPULAR_RANK = range(1, 2 * len(STAGE_ONE), 2)
_ITEMS = slice(2 * len(STAGE_ONE), 2 * len(STAGE_ONE) + len(ITEM_FEATURES))
POPULARITY_COLUMN = _ITEMS.start
USER_COLUMNS = tuple(range(_ITEMS.stop, _ITEMS.stop + len(USER_FEATURES)))


def timestamp_seconds(values: pd.Series) -> np.ndarray:
    """Return a timestamp column as float seconds (numbers as they are, dates converted)."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    stamps = pd.to_datetime(values, utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


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
    best, ties by ascending item as the models' own rankings break them,
    also at the ``depth``-th score); products past a proposer's ``depth``
    best share rank ``depth + 1``. A compiled loop (``recsys.models.compiled``).

    Args:
        ease_scores: (n_items,) EASE's score of every product for the user
            (read only; a NaN counts as -inf).
        popular_order: Every inner item, most popular first (the same for every user).
        history: The user's inner items (ascending, unique).
        depth: How many products each proposer proposes.

    Returns:
        The candidates (inner items, ascending) and their (2, len(items))
        ranks, EASE's then popularity's.
    """
    from recsys.models.compiled import propose

    return propose(ease_scores, popular_order, np.asarray(history, dtype=np.int64), int(depth))


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

    One compiled loop (``recsys.models.compiled``): the same for the rows
    stage 2 learns from and the ones it scores when serving.
    """
    from recsys.models.compiled import candidate_feature_rows

    features = candidate_feature_rows(
        np.asarray(items, dtype=np.int64),
        np.asarray(proposer_ranks, dtype=np.float64),
        np.asarray(scores, dtype=np.float64),
        rows,
        np.asarray(history, dtype=np.int64),
        np.asarray(engagement, dtype=np.float64),
        # numpy's log1p: numba's may differ in the last bit.
        float(np.log1p(float(len(history)))),
    )
    return Candidates(items=np.asarray(items, dtype=np.int64), features=features)
