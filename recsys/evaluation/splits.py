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
- ``time-global``: one cut in time for everybody: training is every row before
  the cut, the test the rows from the cut on (within a window), so training
  never sees the future of anyone. Test rows of users with no row before the
  cut are dropped (nobody can rank for a user never seen) and counted.

Repeats (``repeats`` > 1, for a mean and an interval): ``holdout`` draws one
split per seed (seed, seed + 1, ...); ``time-global`` rolls its cut back in
time, one test window per repeat (the latest first, rows after a fold's
window left out of that fold); ``time`` rolls back each user's window of
``leave_last`` rows the same way.

Validation (``validation_split``): tuning, the champion choice and every
default are chosen on a validation split carved from a split's training rows
only, by the same rule as the outer protocol (the last share in time for the
time protocols, a seeded per-user holdout otherwise). It takes the training
frame and nothing else, so what it returns cannot hold a test row.

Users or products of the test set that training never saw are counted in
each split's report, never dropped silently: rating errors include them (the
model's fallback prediction, as in Surprise), ranking metrics are computed over
the test users the model knows, and the number of cold users left out is
reported next to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PROTOCOLS = ("holdout", "kfold", "time", "time-global")
# One default for every holdout in the project (the pipeline, evaluate,
# tune and the service's training), so that one data set gives one RMSE.
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0
# time-global: the share of all rows in each test window (the latest 10% of
# the log; further repeats take the 10% before it, and so on).
DEFAULT_TIME_WINDOW = 0.1
# time-global's rule for how many windows to roll back: as many as leave every
# window's training part at least this share of the log. A cut only tests
# the few users active on both sides of it (on MovieLens some 20 a window,
# whatever the window's width), so more cuts are what adds test users; the
# floor keeps the rolled-back training parts close to the latest one in size.
DEFAULT_MIN_TRAIN_SHARE = 0.5
# The share of a training part (its last in time, or a seeded per-user draw)
# that validation holds out.
DEFAULT_VALIDATION_FRACTION = 0.1
# Validation cuts of a global time split (``validation_splits``).
DEFAULT_VALIDATION_WINDOWS = 3


@dataclass(frozen=True)
class Split:
    """One train/test partition of a feedback frame.

    Attributes:
        train: Rows to learn from.
        test: Held-out rows.
        index: The fold number (0 for single-split protocols).
        facts: What else the protocol reports of this split (a time cut,
            test rows dropped because their user had no training row).
    """

    train: pd.DataFrame
    test: pd.DataFrame
    index: int = 0
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

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
            **self.facts,
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


def time_split(feedback: pd.DataFrame, leave_last: int = 1, window: int = 0) -> Split:
    """Hold out each user's latest rows by timestamp (ties: larger product id is later).

    A user with n rows gets min(leave_last, n - 1) test rows, so every user
    keeps at least one training row. With ``window`` w > 0 the held-out rows
    are the w-th window back instead: each user's latest w * leave_last rows
    are left out, the leave_last before them are the test, the rest train
    (users without a training row left are then left out of the test).

    Args:
        feedback: A feedback frame with a ``timestamp`` column (integers such
            as MovieLens seconds, or datetimes as interactions files give).
        leave_last: How many of each user's latest rows to hold out.
        window: How many windows of leave_last rows to roll back (0: the latest).

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
    rank = np.empty(len(feedback), dtype=np.int64)
    rank[order] = _rank_within_groups(users[order])
    if window == 0:
        n_test = np.minimum(leave_last, counts - 1)
        in_test = rank < n_test
        return Split(train=feedback[~in_test], test=feedback[in_test])
    skipped = window * leave_last
    in_test = (rank >= skipped) & (rank < skipped + leave_last)
    in_train = rank >= skipped + leave_last
    test = feedback[in_test]
    train = feedback[in_train]
    known = test["user_id"].isin(train["user_id"].unique())
    return Split(
        train=train,
        test=test[known],
        index=window,
        facts={"window": window, "test_rows_of_users_without_training": int((~known).sum())},
    )


def global_time_split(
    feedback: pd.DataFrame, window_fraction: float = DEFAULT_TIME_WINDOW, window: int = 0
) -> Split:
    """Cut the log once in time: train before the cut, test in the window after it.

    Rows are ordered by timestamp; the latest ``window_fraction`` of them
    (window 0) or the same share ``window`` windows further back is the test
    window, everything before it is training, everything after it is left
    out. The cut falls between two distinct timestamps (rows sharing the
    cut's timestamp go to the test), so every training row is strictly older
    than every test row. Test rows of users with no training row are dropped
    and counted (``test_rows_of_users_without_training``); products first
    seen in the window stay, as cold products no model can rank.

    Args:
        feedback: A feedback frame with timestamps.
        window_fraction: The share of all rows in the test window, in (0, 1).
        window: How many windows to roll back from the latest (0, 1, ...).

    Raises:
        ValueError: No timestamps, a bad fraction, or no row left to train on.
    """
    if "timestamp" not in feedback.columns:
        raise ValueError("the time protocol needs timestamps, and this data has none")
    if not 0 < window_fraction < 1:
        raise ValueError(f"the time window must be between 0 and 1, got {window_fraction}")
    if window < 0:
        raise ValueError(f"window must be at least 0, got {window}")
    times = _sortable_times(feedback["timestamp"])
    ordered = np.sort(times)
    n = len(ordered)
    start = int(np.floor(n * (1 - window_fraction * (window + 1))))
    stop = int(np.floor(n * (1 - window_fraction * window)))
    if start <= 0:
        raise ValueError(
            f"{window + 1} time windows of {window_fraction:g} of the rows leave no row to train on"
        )
    cut = ordered[start]
    end = ordered[stop] if stop < n else None
    in_train = times < cut
    in_window = (times >= cut) if end is None else (times >= cut) & (times < end)
    train = feedback[in_train]
    test = feedback[in_window]
    if train.empty:
        raise ValueError("the time cut leaves no row to train on (every row has the same time)")
    known = test["user_id"].isin(train["user_id"].unique())
    return Split(
        train=train,
        test=test[known],
        index=window,
        facts={
            "window": window,
            "test_rows_of_users_without_training": int((~known).sum()),
        },
    )


def global_time_windows(
    window_fraction: float = DEFAULT_TIME_WINDOW,
    min_train_share: float = DEFAULT_MIN_TRAIN_SHARE,
) -> int:
    """Return how many time-global windows fit while training keeps ``min_train_share``.

    Window w (0 the latest) trains on the first 1 - (w + 1) * window_fraction
    of the rows; the count is the number of windows whose training part keeps
    at least ``min_train_share`` of them. It depends on the two shares only,
    never on the data or on any model's figures.

    Args:
        window_fraction: The share of all rows in each test window, in (0, 1).
        min_train_share: The smallest share of rows a training part may keep,
            in (0, 1 - window_fraction].

    Raises:
        ValueError: Shares out of range, or no window fits.
    """
    if not 0 < window_fraction < 1:
        raise ValueError(f"the time window must be between 0 and 1, got {window_fraction}")
    if not 0 < min_train_share <= 1 - window_fraction:
        raise ValueError(
            f"min_train_share must be in (0, {1 - window_fraction:g}], got {min_train_share}"
        )
    # The tolerance keeps 0.5 / 0.1 at 5 despite floating point.
    return int(np.floor((1 - min_train_share) / window_fraction + 1e-9))


def validation_splits(
    train: pd.DataFrame,
    protocol: str,
    seed: int = DEFAULT_SPLIT_SEED,
    fraction: float = DEFAULT_VALIDATION_FRACTION,
    leave_last: int = 1,
    windows: int = DEFAULT_VALIDATION_WINDOWS,
) -> list[Split]:
    """Return the validation splits a choice is made on: several windows for ``time-global``.

    A global cut validates only the users active on both sides of it, some
    20 on ml-latest-small whatever the window's width, and a choice made on
    20 users is mostly chance. So for ``time-global`` the validation is
    ``windows`` cuts rolled back inside the training rows, as the outer test
    windows are (each the ``fraction`` of the training rows before the
    last; fewer when the rows run out), and a candidate's figure is its mean
    over them. Every other protocol has one validation split
    (``validation_split``), which already holds every user.

    Args:
        train: The training rows of an outer split (never its test rows).
        protocol: The outer protocol.
        seed: The outer split's seed.
        fraction: The share held out by each validation split.
        leave_last: For ``time``: rows per user held out.
        windows: For ``time-global``: how many cuts (at least 1).
    """
    if protocol != "time-global":
        return [validation_split(train, protocol, seed, fraction, leave_last)]
    if windows < 1:
        raise ValueError(f"windows must be at least 1, got {windows}")
    splits = [global_time_split(train, fraction)]
    for window in range(1, windows):
        try:
            split = global_time_split(train, fraction, window)
        except ValueError:
            break  # a log too short for more windows validates on those it has
        if not split.test.empty:
            splits.append(split)
    return splits


def validation_split(
    train: pd.DataFrame,
    protocol: str,
    seed: int = DEFAULT_SPLIT_SEED,
    fraction: float = DEFAULT_VALIDATION_FRACTION,
    leave_last: int = 1,
) -> Split:
    """Carve a validation split out of a split's training rows, by the outer protocol's rule.

    The function receives the training frame only, never a test frame, so
    what tuning and the champion choice see cannot contain a test row.

    - ``time-global``: the last ``fraction`` of the training rows in time
      (a global cut inside training);
    - ``time``: each user's latest ``leave_last`` training rows;
    - ``holdout`` and ``kfold``: a seeded ``fraction`` of each user's
      training rows (the seed offset by 1000, so it never repeats the outer
      draw).

    Args:
        train: The training rows of an outer split.
        protocol: The outer protocol.
        seed: The outer split's seed.
        fraction: The share held out for validation.
        leave_last: For ``time``: rows per user held out.

    Returns:
        A split whose ``train`` is what candidates fit on and whose ``test`` is
        the validation rows.
    """
    if protocol == "time-global":
        return global_time_split(train, fraction)
    if protocol == "time":
        return time_split(train, leave_last)
    if protocol in ("holdout", "kfold"):
        return holdout_split(train, fraction, seed + 1000)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


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
    test_fraction: float | None = None,
    leave_last: int = 1,
    repeats: int = 1,
) -> list[Split]:
    """Return the splits of a protocol.

    Args:
        feedback: The feedback frame.
        protocol: "holdout", "kfold", "time" or "time-global".
        seed: Seed of the random protocols (the first, for repeats).
        folds: For kfold: the number of folds.
        test_fraction: For holdout: the share of each user's rows held out
            (default 0.2); for time-global: the share of all rows in each test
            window (default 0.1).
        leave_last: For time: the number of each user's latest rows held out.
        repeats: Splits to make (seeds for holdout, windows rolled back in time
            for time and time-global); kfold makes ``folds`` splits anyway.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if protocol == "holdout":
        fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        return [
            Split(s.train, s.test, index=i, facts={"seed": seed + i})
            for i, s in ((i, holdout_split(feedback, fraction, seed + i)) for i in range(repeats))
        ]
    if protocol == "kfold":
        return list(kfold_splits(feedback, folds, seed))
    if protocol == "time":
        if repeats == 1:
            return [time_split(feedback, leave_last)]
        return [time_split(feedback, leave_last, window) for window in range(repeats)]
    if protocol == "time-global":
        fraction = DEFAULT_TIME_WINDOW if test_fraction is None else test_fraction
        return [global_time_split(feedback, fraction, window) for window in range(repeats)]
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
