"""Offline evaluation: train/test protocols and the comparison of several models.

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

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys import metrics
from recsys.loaders import DEFAULT_RELEVANCE_THRESHOLD, Dataset, relevant_mask
from recsys.models.base import Recommender

PROTOCOLS = ("holdout", "kfold", "time")
RANKING_METRICS = {
    "precision": metrics.precision_at_k,
    "recall": metrics.recall_at_k,
    "ndcg": metrics.ndcg_at_k,
    "map": metrics.map_at_k,
    "hit_rate": metrics.hit_rate_at_k,
}

ModelFactory = Callable[[], Recommender]


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


def holdout_split(feedback: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> Split:
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
        feedback: A feedback frame with a ``timestamp`` column.
        leave_last: How many of each user's latest rows to hold out.
    """
    if "timestamp" not in feedback.columns:
        raise ValueError("the time protocol needs timestamps, and this data has none")
    if leave_last < 1:
        raise ValueError(f"leave_last must be at least 1, got {leave_last}")
    users = feedback["user_id"].to_numpy()
    # Newest first within each user; lexsort's last key is the primary one.
    order = np.lexsort(
        (-feedback["product_id"].to_numpy(), -feedback["timestamp"].to_numpy(), users)
    )
    counts = feedback["user_id"].map(feedback["user_id"].value_counts()).to_numpy()
    n_test = np.minimum(leave_last, counts - 1)
    rank = np.empty(len(feedback), dtype=np.int64)
    rank[order] = _rank_within_groups(users[order])
    in_test = rank < n_test
    return Split(train=feedback[~in_test], test=feedback[in_test])


def make_splits(
    feedback: pd.DataFrame,
    protocol: str,
    seed: int = 0,
    folds: int = 5,
    test_fraction: float = 0.2,
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


def score_split(
    model: Recommender, split: Split, k: int, threshold: float
) -> dict[str, float | int]:
    """Measure one fitted model on one split's test rows.

    Rating errors (for models that predict ratings) cover every test row.
    Ranking metrics cover the test users the model knows, with their training
    products excluded from the ranking; relevant = test rating >= threshold.

    Args:
        model: A model fitted on ``split.train``.
        split: The split.
        k: The ranking cut-off.
        threshold: The relevance threshold on ratings.

    Returns:
        Metric name -> value, plus ``ranked_users`` and ``recommend_seconds``.
    """
    scores: dict[str, float | int] = {}
    test = split.test
    if model.predicts_ratings:
        predicted = model.predict(test["user_id"].to_numpy(), test["product_id"].to_numpy())
        scores["rmse"] = metrics.rmse(predicted, test["rating"].to_numpy())
        scores["mae"] = metrics.mae(predicted, test["rating"].to_numpy())

    relevant_rows = test[relevant_mask(test, threshold)]
    relevant = products_by_user(relevant_rows)
    start = time.perf_counter()
    batch = model.recommend(relevant, k, exclude=products_by_user(split.train))
    scores["recommend_seconds"] = time.perf_counter() - start
    lists = {user: ranked.product_ids for user, ranked in batch.lists.items()}
    known = {user: relevant[user] for user in lists}
    scores["ranked_users"] = len(known)
    if known:
        for metric_name, metric in RANKING_METRICS.items():
            scores[f"{metric_name}@{k}"] = metric(lists, known, k)
        scores["coverage"] = metrics.catalog_coverage(lists, len(model.product_ids), k)
    return scores


def evaluate(
    models: Mapping[str, ModelFactory],
    dataset: Dataset,
    protocol: str = "holdout",
    k: int = 10,
    threshold: float | None = None,
    seed: int = 0,
    folds: int = 5,
    test_fraction: float = 0.2,
    leave_last: int = 1,
) -> dict[str, Any]:
    """Train and measure several models on the same splits.

    Args:
        models: Report name -> a function returning a fresh, unfitted model.
        dataset: The data.
        protocol: "holdout", "kfold" or "time".
        k: The ranking cut-off.
        threshold: Relevance threshold on ratings (default 4).
        seed: Seed of the split (models keep their own seeds).
        folds: For kfold: the number of folds.
        test_fraction: For holdout: the share of each user's rows held out.
        leave_last: For time: the number of each user's latest rows held out.

    Returns:
        ``{"dataset": {...}, "protocol": {...}, "models": {name: {metric: value}}}``;
        with several folds, each figure is the mean over folds (as Surprise's
        ``cross_validate`` reports it) and the split counts are per fold.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not models:
        raise ValueError("no models to evaluate")
    threshold = DEFAULT_RELEVANCE_THRESHOLD if threshold is None else float(threshold)
    splits = make_splits(dataset.feedback, protocol, seed, folds, test_fraction, leave_last)
    per_model: dict[str, list[dict[str, float | int]]] = {name: [] for name in models}
    for split in splits:
        for name, factory in models.items():
            start = time.perf_counter()
            model = factory().fit(split.train)
            fit_seconds = time.perf_counter() - start
            scores = score_split(model, split, k, threshold)
            scores["fit_seconds"] = fit_seconds
            per_model[name].append(scores)

    protocol_facts: dict[str, Any] = {
        "name": protocol,
        "seed": seed,
        "k": k,
        "relevance_threshold": threshold,
        "splits": [split.cold_counts() for split in splits],
    }
    if protocol == "kfold":
        protocol_facts["folds"] = folds
    elif protocol == "holdout":
        protocol_facts["test_fraction"] = test_fraction
    else:
        protocol_facts["leave_last"] = leave_last
    return {
        "dataset": dataset.summary(),
        "protocol": protocol_facts,
        "models": {name: _mean_scores(runs) for name, runs in per_model.items()},
    }


def rank_models(report: Mapping[str, Any], metric: str) -> list[tuple[str, float]]:
    """Return (model, value) pairs from a report, best first for the metric.

    Lower is better for rmse, mae and seconds; higher for everything else.

    Args:
        report: The output of ``evaluate``.
        metric: A metric present in the report, e.g. "ndcg@10".
    """
    rows = [(name, scores[metric]) for name, scores in report["models"].items() if metric in scores]
    if not rows:
        raise ValueError(f"no model in the report has the metric {metric!r}")
    lower_is_better = metric in ("rmse", "mae") or metric.endswith("seconds")
    return sorted(rows, key=lambda row: (row[1] if lower_is_better else -row[1], row[0]))


def format_report(report: Mapping[str, Any]) -> str:
    """Render a report as a plain-text table, one row per model.

    Args:
        report: The output of ``evaluate``.
    """
    dataset, protocol = report["dataset"], report["protocol"]
    columns: list[str] = []
    for scores in report["models"].values():
        columns += [c for c in scores if c not in columns and c != "ranked_users"]
    columns.sort(key=_column_position)
    header = ["model", *columns]
    rows = [
        [name, *(_format_value(scores.get(c)) for c in columns)]
        for name, scores in report["models"].items()
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"data: {dataset['name']} ({dataset['rows']} rows, {dataset['users']} users, "
        f"{dataset['products']} products)",
        _describe_protocol(protocol),
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    ndcg = f"ndcg@{protocol['k']}"
    if any(ndcg in scores for scores in report["models"].values()):
        ranking = ", ".join(f"{name} {value:.4f}" for name, value in rank_models(report, ndcg))
        lines.append(f"by {ndcg}, best first: {ranking}")
    return "\n".join(lines)


def _describe_protocol(protocol: Mapping[str, Any]) -> str:
    splits = protocol["splits"]
    cold_users = sum(s["cold_test_users"] for s in splits)
    cold_items = sum(s["cold_test_items"] for s in splits)
    cold_rows = sum(s["cold_test_rows"] for s in splits)
    test_rows = sum(s["test_rows"] for s in splits)
    detail = {
        "kfold": f"{protocol.get('folds')} folds (means over folds)",
        "holdout": f"{protocol.get('test_fraction')} of each user's rows held out",
        "time": f"each user's last {protocol.get('leave_last')} rows held out",
    }[protocol["name"]]
    return (
        f"protocol: {protocol['name']}, {detail}, seed {protocol['seed']}, k {protocol['k']}, "
        f"relevant = rating >= {protocol['relevance_threshold']:g}; test rows {test_rows}, "
        f"cold{' (summed over folds)' if len(splits) > 1 else ''}: "
        f"{cold_users} users, {cold_items} products, {cold_rows} rows"
    )


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _mean_scores(runs: Sequence[Mapping[str, float | int]]) -> dict[str, float]:
    """Average each figure over the runs (folds), in the report's column order."""
    names = [name for name in runs[0] if all(name in run for run in runs)]
    names.sort(key=_column_position)
    means = {name: float(np.mean([run[name] for run in runs])) for name in names}
    means["ranked_users"] = round(means["ranked_users"])
    return means


def _column_position(name: str) -> int:
    # Rating errors, then ranking metrics, then coverage and timings.
    prefix = name.split("@", 1)[0]
    order = ["rmse", "mae", *RANKING_METRICS, "coverage", "fit_seconds", "recommend_seconds"]
    return order.index(prefix) if prefix in order else len(order)


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
