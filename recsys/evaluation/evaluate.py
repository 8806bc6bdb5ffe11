"""Score fitted models on splits, and compare several models on the same splits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD, Dataset, relevant_mask
from recsys.evaluation import metrics
from recsys.evaluation.splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_TIME_WINDOW,
    Split,
    make_splits,
    products_by_user,
)
from recsys.models.base import PREDICT, Recommender

RANKING_METRICS = {
    "precision": metrics.precision_at_k,
    "recall": metrics.recall_at_k,
    "ndcg": metrics.ndcg_at_k,
    "map": metrics.map_at_k,
    "hit_rate": metrics.hit_rate_at_k,
}

ModelFactory = Callable[[], Recommender]
# The ranking cut-off of evaluate, tune on ndcg and the pipeline.
DEFAULT_K = 10


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
    if PREDICT in model.capabilities:
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
        scores.update(beyond_accuracy(lists, split.train, k))
    return scores


def beyond_accuracy(
    lists: Mapping[int, np.ndarray], train: pd.DataFrame, k: int
) -> dict[str, float]:
    """Return novelty, intra-list diversity and popularity bias of ranked lists.

    Popularity is each product's number of training users; diversity is the
    distance of products' columns of the binary training users x products
    matrix (``metrics.intra_list_diversity``), the same for every model.

    Args:
        lists: Ranked product ids per user.
        train: The training feedback the lists were made from.
        k: The cut-off.
    """
    counts = train.groupby("product_id")["user_id"].nunique()
    item_counts = dict(zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True))
    item_ids = np.unique(train["product_id"].to_numpy(dtype=np.int64))
    user_ids = np.unique(train["user_id"].to_numpy(dtype=np.int64))
    rows = np.searchsorted(item_ids, train["product_id"].to_numpy(dtype=np.int64))
    cols = np.searchsorted(user_ids, train["user_id"].to_numpy(dtype=np.int64))
    vectors = scipy.sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(item_ids), len(user_ids))
    )
    vectors.data[:] = 1.0
    result: dict[str, float] = {}
    if any(len(items) for items in lists.values()):
        result["novelty"] = metrics.novelty(lists, item_counts, len(user_ids), k)
        if len(item_counts) >= 2:
            result["popularity_bias"] = metrics.popularity_bias(lists, item_counts, k)
    if any(len(items) >= 2 for items in lists.values()):
        result["diversity"] = metrics.intra_list_diversity(
            lists, k, item_ids=item_ids, item_vectors=vectors
        )
    return result


def evaluate(
    models: Mapping[str, ModelFactory],
    dataset: Dataset,
    protocol: str = "holdout",
    k: int = DEFAULT_K,
    threshold: float | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
    folds: int = 5,
    test_fraction: float | None = None,
    leave_last: int = 1,
    progress: bool = False,
    repeats: int = 1,
    train_min_rating: float | None = None,
) -> dict[str, Any]:
    """Train and measure several models on the same splits.

    Args:
        models: Report name -> a function returning a fresh, unfitted model.
        dataset: The data.
        protocol: "holdout", "kfold", "time" or "time-global".
        k: The ranking cut-off.
        threshold: Relevance threshold on ratings (default 4).
        seed: Seed of the split (models keep their own seeds).
        folds: For kfold: the number of folds.
        test_fraction: For holdout: the share of each user's rows held out
            (default 0.2); for time-global: the share of the log in each test
            window (default 0.1).
        leave_last: For time: the number of each user's latest rows held out.
        progress: Show a progress bar over (split, model) fits on stderr
            (when it is a terminal).
        repeats: Splits to average over (seeds or time windows, see
            ``make_splits``); with more than one the report holds a 95%
            interval of each figure.
        train_min_rating: Fit on training rows rated at least this only
            (None: every training row). The candidate set is unchanged: a
            user's low-rated training products stay excluded from the list.

    Returns:
        ``{"dataset": {...}, "protocol": {...}, "models": {name: {metric: value}},
        "intervals": {name: {metric: half-width}}}``; with several splits, each
        figure is the mean over splits (as Surprise's ``cross_validate`` reports
        it), the interval its 95% Student-t interval, and the split counts are
        per split.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not models:
        raise ValueError("no models to evaluate")
    threshold = DEFAULT_RELEVANCE_THRESHOLD if threshold is None else float(threshold)
    splits = make_splits(
        dataset.feedback, protocol, seed, folds, test_fraction, leave_last, repeats
    )
    per_model: dict[str, list[dict[str, float | int]]] = {name: [] for name in models}
    runs = [(split, name) for split in splits for name in models]
    for split, name in with_progress(runs, progress, "evaluating", "fit"):
        start = time.perf_counter()
        model = models[name]().fit(training_rows(split.train, train_min_rating))
        fit_seconds = time.perf_counter() - start
        scores = score_split(model, split, k, threshold)
        scores["fit_seconds"] = fit_seconds
        per_model[name].append(scores)

    protocol_facts = protocol_facts_of(
        protocol, seed, k, threshold, splits, folds, test_fraction, leave_last, train_min_rating
    )
    return {
        "dataset": dataset.summary(),
        "protocol": protocol_facts,
        "models": {name: _mean_scores(runs) for name, runs in per_model.items()},
        "intervals": {name: interval_half_widths(runs) for name, runs in per_model.items()},
    }


def training_rows(train: pd.DataFrame, min_rating: float | None) -> pd.DataFrame:
    """Return the rows a model fits on: every training row, or those rated at least min_rating.

    Args:
        train: A split's training rows.
        min_rating: None keeps every row (a low rating still says the user
            saw the product); a number keeps the rows rated at least it.
    """
    if min_rating is None:
        return train
    return train[train["rating"] >= float(min_rating)]


def relevance_rule(threshold: float) -> str:
    """Return the relevance rule in words, as every report states it."""
    return f"a test row is relevant when its rating is at least {threshold:g}"


# What every ranked list is drawn from, in words (LensKit's checklist asks for it).
CANDIDATE_SET = (
    "every product of the training rows except the user's own training products "
    "(whatever their rating); test products never seen in training cannot be ranked"
)


def protocol_facts_of(
    protocol: str,
    seed: int,
    k: int,
    threshold: float,
    splits: Sequence[Split],
    folds: int = 5,
    test_fraction: float | None = None,
    leave_last: int = 1,
    train_min_rating: float | None = None,
) -> dict[str, Any]:
    """Return what a report says of its protocol: the split, its knobs, its counts and rules."""
    facts: dict[str, Any] = {
        "name": protocol,
        "seed": seed,
        "k": k,
        "relevance_threshold": threshold,
        "relevance": relevance_rule(threshold),
        "candidates": CANDIDATE_SET,
        "training_input": "every training row"
        if train_min_rating is None
        else f"training rows rated at least {train_min_rating:g}",
        "repeats": len(splits),
        "splits": [split.cold_counts() for split in splits],
    }
    if protocol == "kfold":
        facts["folds"] = folds
    elif protocol == "holdout":
        facts["test_fraction"] = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    elif protocol == "time-global":
        facts["test_fraction"] = DEFAULT_TIME_WINDOW if test_fraction is None else test_fraction
    else:
        facts["leave_last"] = leave_last
    return facts


def interval_half_widths(runs: Sequence[Mapping[str, float | int]]) -> dict[str, float]:
    """Return the half-width of each figure's 95% Student-t interval over runs (splits).

    mean +- t(0.975, n - 1) * sd / sqrt(n), sd with n - 1 in the denominator;
    empty with a single run (no interval can be given).
    """
    if len(runs) < 2:
        return {}
    names = [name for name in runs[0] if all(name in run for run in runs)]
    return {name: half_width([float(run[name]) for run in runs]) for name in names}


def half_width(values: Sequence[float]) -> float:
    """Return the half-width of the 95% Student-t interval of the mean of values."""
    from scipy.stats import t  # only reports with repeats need it

    n = len(values)
    if n < 2:
        return float("nan")
    spread = float(np.std(values, ddof=1))
    return float(t.ppf(0.975, n - 1) * spread / np.sqrt(n))


def with_progress(
    items: Sequence[Any], enabled: bool, description: str, unit: str = "fit"
) -> Iterable[Any]:
    """Return the items, wrapped in a tqdm bar on stderr when enabled and a terminal.

    Args:
        items: What a loop goes over.
        enabled: Whether to show a bar at all.
        description: The bar's label.
        unit: What one item is, for the rate.
    """
    if not enabled:
        return items
    from tqdm import tqdm  # only the command line shows progress

    # disable=None: no bar when stderr is not a terminal (logs, pipes, tests).
    return tqdm(items, desc=description, unit=unit, disable=None)


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


def _mean_scores(runs: Sequence[Mapping[str, float | int]]) -> dict[str, float]:
    """Average each figure over the runs (folds), in the report's column order."""
    names = [name for name in runs[0] if all(name in run for run in runs)]
    names.sort(key=column_position)
    means = {name: float(np.mean([run[name] for run in runs])) for name in names}
    means["ranked_users"] = round(means["ranked_users"])
    return means


def column_position(name: str) -> int:
    # Rating errors, then ranking metrics, then coverage and timings.
    prefix = name.split("@", 1)[0]
    order = [
        "rmse",
        "mae",
        *RANKING_METRICS,
        "coverage",
        "novelty",
        "diversity",
        "popularity_bias",
        "fit_seconds",
        "recommend_seconds",
    ]
    return order.index(prefix) if prefix in order else len(order)
