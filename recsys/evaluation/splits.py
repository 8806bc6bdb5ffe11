"""Train/test protocols: holdout, k-fold and per-user time splits.

Protocols (each yields ``Split`` objects; a split's train and test rows never
share a (user, product) pair, because a feedback frame has one row per pair):

- ``holdout``: per user, a seeded random share of the user's rows is held out
  (at least one row, never all: a user with one row stays in training only).
- ``kfold``: K-fold cross-validation over rows with Surprise's exact
  ``KFold(n_splits, random_state=seed)`` partition and row order, so an SVD
  trained on our folds sees exactly what Surprise's ``cross_validate`` sees.
- ``time``: per user, the latest ``leave_last`` rows by timestamp (on equal
  timestamps the larger product id counts as later) are held out; needs
  timestamps. It is the usual per-user leave-last-n-out, not a global time
  cut: other users' later rows may be in training.

Users or products of the test set that training never saw are counted in
each split's report, never dropped silently: rating errors include them (the
model's fallback prediction, as in Surprise), ranking metrics are computed over
the test users the model knows, and the number of cold users left out is
reported next to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROTOCOLS = ("holdout", "kfold", "time")
# One default for every holdout in the project (the pipeline, evaluate,
# tune and the service's training), so that one data set gives one RMSE.
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    """One train/test partition of a feedback frame.

    Attributes:
        train: Rows to learn from.
        test: Held-out rows.
        index: The fold number (0 for single-split protocols).
    """

    train: pd.DataFrame
    test: pd.DataFrame
    index: int = 0

    def cold_counts(self) -> dict[str, int]:
        """Return how much of the test set training never saw."""
        train_users = self.train["user_id"].unique()
        train_items = self.train["product_id"].unique()
        cold_user = ~self.test["user_id"].isin(train_users)
        cold_item = ~self.test["product_id"].isin(train_items)
        return {
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "test_users": int(self.test["user_id"].nunique()),
            "cold_test_users": int(self.test.loc[cold_user, "user_id"].nunique()),
            "cold_test_items": int(self.test.loc[cold_item, "product_id"].nunique()),
            "cold_test_rows": int((cold_user | cold_item).sum()),
        }


def holdout_split(
    feedback: pd.DataFrame,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Split:
    """Hold out a seeded random share of each user's rows.

    A user with n >= 2 rows gets round(test_fraction * n) test rows (numpy's
    round half to even), at least 1 and at most n - 1; a user with one row
    stays in training only.

    Args:
        feedback: The feedback frame.
        test_fraction: Share of each user's rows to hold out, in (0, 1).
        seed: Seed of the random choice.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    keys = np.random.default_rng(seed).random(len(feedback))
    users = feedback["user_id"].to_numpy()
    order = np.lexsort((keys, users))
    counts = feedback["user_id"].map(feedback["user_id"].value_counts()).to_numpy()
    n_test = np.minimum(np.maximum(np.rint(test_fraction * counts), 1), counts - 1)
    # Position of each row among its user's rows, in random-key order.
    rank = np.empty(len(feedback), dtype=np.int64)
    rank[order] = _rank_within_groups(users[order])
    in_test = rank < n_test
    return Split(train=feedback[~in_test], test=feedback[in_test])


def kfold_splits(feedback: pd.DataFrame, folds: int = 5, seed: int = 0) -> Iterator[Split]:
    """Yield K folds, partitioned exactly as ``surprise.model_selection.KFold``.

    Surprise shuffles row indices with ``np.random.RandomState(seed)`` and cuts
    them into ``folds`` consecutive blocks (the first ``n % folds`` blocks one
    row longer); each block is the test set once, the rest (in shuffled order)
    is the training set. Surprise builds its folds from the frame's row order,
    so the same frame and seed give the same folds here and there.

    Args:
        feedback: The feedback frame.
        folds: Number of folds, at least 2 and at most the number of rows.
        seed: Seed of the shuffle.
    """
    if not 2 <= folds <= len(feedback):
        raise ValueError(
            f"folds must be from 2 to the number of rows ({len(feedback)}), got {folds}"
        )
    indices = np.arange(len(feedback))
    np.random.RandomState(seed).shuffle(indices)
    sizes = np.full(folds, len(feedback) // folds)
    sizes[: len(feedback) % folds] += 1
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    for fold in range(folds):
        start, stop = bounds[fold], bounds[fold + 1]
        train = np.concatenate((indices[:start], indices[stop:]))
        yield Split(train=feedback.iloc[train], test=feedback.iloc[indices[start:stop]], index=fold)


def time_split(feedback: pd.DataFrame, leave_last: int = 1) -> Split:
    """Hold out each user's latest rows by timestamp (ties: larger product id is later).

    A user with n rows gets min(leave_last, n - 1) test rows, so every user
    keeps at least one training row.

    Args:
        feedback: A feedback frame with a ``timestamp`` column (integers such
            as MovieLens seconds, or datetimes as interactions files give).
        leave_last: How many of each user's latest rows to hold out.

    Raises:
        ValueError: No timestamp column, a row without a timestamp, or
            leave_last < 1.
    """
    if "timestamp" not in feedback.columns:
        raise ValueError("the time protocol needs timestamps, and this data has none")
    if leave_last < 1:
        raise ValueError(f"leave_last must be at least 1, got {leave_last}")
    users = feedback["user_id"].to_numpy()
    times = _sortable_times(feedback["timestamp"])
    # Newest first within each user; lexsort's last key is the primary one.
    order = np.lexsort((-feedback["product_id"].to_numpy(), -times, users))
    counts = feedback["user_id"].map(feedback["user_id"].value_counts()).to_numpy()
    n_test = np.minimum(leave_last, counts - 1)
    rank = np.empty(len(feedback), dtype=np.int64)
    rank[order] = _rank_within_groups(users[order])
    in_test = rank < n_test
    return Split(train=feedback[~in_test], test=feedback[in_test])


def _sortable_times(timestamps: pd.Series) -> np.ndarray:
    """Return timestamps as int64 (nanoseconds for datetimes), which can be negated.

    Interactions files give datetimes (numpy has no negative of a datetime64),
    MovieLens gives integer seconds; either way the order is kept.

    Raises:
        ValueError: Some rows have no timestamp.
    """
    missing = int(timestamps.isna().sum())
    if missing:
        raise ValueError(
            f"the time protocol needs a timestamp on every row; {missing} of "
            f"{len(timestamps)} rows have none"
        )
    if pd.api.types.is_datetime64_any_dtype(timestamps):
        return timestamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return timestamps.to_numpy(dtype=np.int64)


def make_splits(
    feedback: pd.DataFrame,
    protocol: str,
    seed: int = DEFAULT_SPLIT_SEED,
    folds: int = 5,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    leave_last: int = 1,
) -> list[Split]:
    """Return the splits of a protocol.

    Args:
        feedback: The feedback frame.
        protocol: "holdout", "kfold" or "time".
        seed: Seed of the random protocols.
        folds: For kfold: the number of folds.
        test_fraction: For holdout: the share of each user's rows held out.
        leave_last: For time: the number of each user's latest rows held out.
    """
    if protocol == "holdout":
        return [holdout_split(feedback, test_fraction, seed)]
    if protocol == "kfold":
        return list(kfold_splits(feedback, folds, seed))
    if protocol == "time":
        return [time_split(feedback, leave_last)]
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def _rank_within_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """Return 0, 1, 2, ... restarting wherever the (sorted) group value changes."""
    n = len(sorted_groups)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def products_by_user(frame: pd.DataFrame) -> dict[int, list[int]]:
    """Return raw product ids per raw user id."""
    if frame.empty:
        return {}
    users = frame["user_id"].to_numpy()
    products = frame["product_id"].to_numpy()
    order = np.argsort(users, kind="stable")
    users, products = users[order], products[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    groups = np.split(products, starts[1:])
    return {
        user: group.tolist() for user, group in zip(users[starts].tolist(), groups, strict=True)
    }
