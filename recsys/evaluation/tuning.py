"""Hyper-parameter search, on a validation split carved from the training rows only.

A search never sees a test row. ``tune`` makes ``evaluate``'s outer split
for the protocol and seed (``--protocol``, ``--seed``) and hands only its
training rows to ``tune_on_training``, which carves the validation split
from them (``splits.validation_splits``: the last 10% in time, three such
windows rolled back for the global time split, each user's latest rows for
``time``, a seeded 10% of each user's training rows otherwise) and:

- builds the candidates: the model's current class defaults first, then up
  to ``n_trials - 1`` distinct other points of its search space, drawn with
  ``numpy.random.default_rng(seed)``; the models keep their own
  ``random_state``, so the same seed gives the same search on every run;
- fits each (``model_factory``, with the data's rating scale) on the
  validation split's fitting rows and scores it (``score_split``) on its
  validation rows (the mean over the windows when there are several) with
  the metric asked for: "rmse" (lower is better) or "ndcg@k"; candidates
  that differ only in a model's ``ranking_params`` (parameters of its
  ranking score alone) share one fit, re-ranked with ``rank_with``, which
  gives the figures of separate fits;
- the best wins; on a tie the earlier candidate does, so the defaults are
  only replaced by something strictly better on validation.

``evaluate`` with the same protocol and seed then reports the winner on the
test rows, which the search never read: an honest figure, which may be
below the defaults' on a given test split (validation is not the test).
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD, Dataset
from recsys.evaluation.evaluate import DEFAULT_K, score_split, with_progress
from recsys.evaluation.model_params import model_factory
from recsys.evaluation.splits import (
    DEFAULT_SPLIT_SEED,
    Split,
    make_splits,
    validation_splits,
)
from recsys.models import MODELS, canonical_model_name
from recsys.models.base import PREDICT, Recommender

# Values to search, per model; keys are the model class's keyword arguments.
SVD_SEARCH_SPACE: dict[str, list[Any]] = {
    "n_factors": [5, 20, 50, 100],
    "n_epochs": [20, 50, 100],
    "lr_all": [0.005, 0.01],
    "reg_all": [0.02, 0.05, 0.1, 0.2],
}
ALS_SEARCH_SPACE: dict[str, list[Any]] = {
    "factors": [16, 32, 64, 128],
    "regularization": [0.1, 1.0, 5.0, 10.0, 15.0, 20.0, 50.0],
    "alpha": [0.25, 0.5, 1.0, 2.0, 5.0],
    "iterations": [15, 30],
    "weighting": ["engagement", "binary"],
    # 0 lifts no product; the others share one fit per learned setting (rank_with).
    "arrival_days": [0.0, 180.0, 365.0, 730.0],
    "arrival_lift": [0.5, 1.0, 2.0],
    "uptake_lift": [0.0, 1.0, 2.0],
}
EASE_SEARCH_SPACE: dict[str, list[Any]] = {
    "l2": [250.0, 500.0, 1000.0, 2500.0, 5000.0],
    # 0 weights every product alike; the others share one fit per l2 (rank_with).
    "recency": [0.0, 5.0, 10.0, 20.0, 50.0],
}
ITEMKNN_SEARCH_SPACE: dict[str, list[Any]] = {
    "neighbours": [20, 50, 100, 200],
    "shrinkage": [0.0, 10.0, 50.0],
}
SEARCH_SPACES = {
    "svd": SVD_SEARCH_SPACE,
    "als": ALS_SEARCH_SPACE,
    "ease": EASE_SEARCH_SPACE,
    "itemknn": ITEMKNN_SEARCH_SPACE,
}

_NDCG = re.compile(r"^ndcg@([1-9][0-9]*)$")


@dataclass(frozen=True)
class TuningResult:
    """The outcome of a search.

    Attributes:
        model: The model's registry name.
        metric: "rmse" (lower is better) or "ndcg@k" (higher is better).
        method: How candidates were scored, in words.
        best_params: The winning keyword arguments of the model's class.
        best_score: The winner's score, as ``evaluate`` reports it.
        defaults_score: The score of the model's class defaults.
        trials: Every candidate, as {"params", "score", "defaults"}, best
            first (ties in the order tried).
        seed: Seed of the splits and of the candidate draw.
        train_rows: Rows each candidate was fitted on (validation's fitting part).
        validation_rows: Validation rows each candidate was scored on.
        protocol: The outer protocol the validation split mirrors.
    """

    model: str
    metric: str
    method: str
    best_params: dict[str, Any]
    best_score: float
    defaults_score: float
    trials: list[dict[str, Any]]
    seed: int
    train_rows: int
    validation_rows: int
    protocol: str = "holdout"

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data."""
        return asdict(self)

    def report(self) -> str:
        """Return a short human-readable summary, best candidates first."""
        lines = [
            f"tuned {self.model} on {self.metric} ({self.method})",
            f"best {self.metric}: {self.best_score:.4f} with {self.best_params} "
            f"(the defaults: {self.defaults_score:.4f})",
            f"{len(self.trials)} candidates, best first:",
        ]
        lines += [
            f"  {t['score']:.4f}  {t['params']}{'  (defaults)' if t['defaults'] else ''}"
            for t in self.trials[:10]
        ]
        return "\n".join(lines)


def tune(
    dataset: Dataset,
    model: str,
    metric: str = "rmse",
    n_trials: int = 10,
    seed: int = DEFAULT_SPLIT_SEED,
    threshold: float | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = False,
    protocol: str = "holdout",
    leave_last: int = 1,
) -> TuningResult:
    """Search a model's hyper-parameters on validation rows of evaluate's training part.

    Only the training rows of evaluate's first split for ``protocol`` and
    ``seed`` go on to ``tune_on_training``; the test rows are dropped here.

    Args:
        dataset: The data.
        model: A model with a search space (``SEARCH_SPACES``).
        metric: "rmse" (models that predict ratings) or "ndcg@k" such as "ndcg@10".
        n_trials: How many candidates to score, the defaults included (fewer
            if the space is smaller).
        seed: Seed of the splits (as ``evaluate --seed``) and of the candidate draw.
        threshold: For NDCG: relevance threshold on ratings (default 4).
        space: Values to try per parameter (default: the model's built-in space).
        progress: Show a progress bar over candidates on stderr (when it is a terminal).
        protocol: The outer protocol ("holdout", "kfold", "time", "time-global").
        leave_last: For ``time``: rows per user held out (outer and validation).

    Returns:
        The best candidate, the defaults' score and every candidate's score.

    Raises:
        ValueError: Unknown model, metric or protocol, a model without a search
            space, a space key it does not take, RMSE of a model without
            ratings, NDCG without relevant items.
    """
    outer = make_splits(dataset.feedback, protocol, seed, leave_last=leave_last)[0]
    return tune_on_training(
        outer.train,
        model,
        metric,
        protocol=protocol,
        n_trials=n_trials,
        seed=seed,
        threshold=threshold,
        space=space,
        progress=progress,
        rating_scale=dataset.rating_scale,
        leave_last=leave_last,
    )


def tune_on_training(
    train: pd.DataFrame,
    model: str,
    metric: str = "rmse",
    protocol: str = "holdout",
    n_trials: int = 10,
    seed: int = DEFAULT_SPLIT_SEED,
    threshold: float | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
    progress: bool = False,
    rating_scale: tuple[float, float] | None = None,
    leave_last: int = 1,
    grid: Sequence[Mapping[str, Any]] | None = None,
) -> TuningResult:
    """Search a model's hyper-parameters on a validation split of training rows.

    It receives the training rows and nothing else: the validation split is
    carved from them (``validation_split``), so no test row can inform the
    choice.

    Args:
        train: The training rows of an outer split.
        model: A model with a search space.
        metric: "rmse" or "ndcg@k".
        protocol: The outer protocol, whose rule the validation split follows.
        n_trials: Candidates to score, the defaults included.
        seed: Seed of the validation draw and of the candidate draw.
        threshold: For NDCG: relevance threshold on ratings (default 4).
        space: Values to try per parameter (default: the model's built-in space).
        progress: Show a progress bar over candidates.
        rating_scale: The data's rating scale, for models that clip predictions.
        leave_last: For ``time``: rows per user held out for validation.
        grid: Explicit candidates instead of draws from a space (parameters a
            point leaves out keep the class default); the defaults still come
            first, and at most ``n_trials`` are scored.
    """
    name = canonical_model_name(model)
    if grid is not None:
        space = {key: [point[key] for point in grid if key in point] for p in grid for key in p}
    space = _search_space(name) if space is None else space
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    k = _check_metric(name, metric)
    threshold = DEFAULT_RELEVANCE_THRESHOLD if threshold is None else float(threshold)
    splits = validation_splits(train, protocol, seed, leave_last=leave_last)
    defaults = class_defaults(name, space)
    if grid is None:
        candidates = _candidates(defaults, space, n_trials, seed)
    else:
        points = [_plain({**defaults, **point}) for point in grid]
        others = [point for i, point in enumerate(points) if point not in [defaults, *points[:i]]]
        candidates = [dict(defaults), *others[: n_trials - 1]]
    # Candidates that differ only in a model's ranking parameters share one
    # fit per validation split: scored together, so that only one set of
    # fits is held at a time, and listed in the order drawn (ties go to the
    # earlier candidate).
    ranking_params = getattr(MODELS[name], "ranking_params", ())

    def learned(params: Mapping[str, Any]) -> str:
        return repr(sorted((key, v) for key, v in params.items() if key not in ranking_params))

    groups: dict[str, list[int]] = {}
    for index, params in enumerate(candidates):
        groups.setdefault(learned(params), []).append(index)
    order = [index for indices in groups.values() for index in indices]
    scores: dict[int, float] = {}
    fitted_for, fitted = "", list[Recommender]()
    for index in with_progress(order, progress, "tuning", "candidate"):
        params = candidates[index]
        if learned(params) != fitted_for:
            fitted = []  # the previous group's fits go before the next are made
            factory = model_factory(name, {name: params}, rating_scale)
            fitted = [factory().fit(split.train) for split in splits]
            fitted_for = learned(params)
        else:
            ranking = {key: v for key, v in params.items() if key in ranking_params}
            for fit in fitted:
                fit.rank_with(**ranking)  # type: ignore[attr-defined]
        scores[index] = _mean_score(fitted, splits, metric, k, threshold)
    trials: list[dict[str, Any]] = [
        {"params": params, "score": scores[index], "defaults": params == defaults}
        for index, params in enumerate(candidates)
    ]
    ranked = rank_trials(trials, metric)
    split = splits[0]
    windows = (
        f"; the mean over {len(splits)} validation windows rolled back in time"
        if len(splits) > 1
        else ""
    )
    return TuningResult(
        model=name,
        metric=metric,
        method=f"{len(trials)} candidates, the defaults first, each fitted on "
        f"{len(split.train)} rows and scored on {len(split.test)} validation rows carved "
        f"from the training part of evaluate's {protocol} split, seed {seed}{windows} "
        "(the test rows are never read)",
        best_params=ranked[0]["params"],
        best_score=ranked[0]["score"],
        defaults_score=trials[0]["score"],
        trials=ranked,
        seed=seed,
        train_rows=len(split.train),
        validation_rows=len(split.test),
        protocol=protocol,
    )


def _search_space(name: str) -> Mapping[str, Sequence[Any]]:
    """Return a model's built-in search space.

    Raises:
        ValueError: The model has none.
    """
    if name not in SEARCH_SPACES:
        raise ValueError(
            f"no search space for {name!r}; tunable: {', '.join(sorted(SEARCH_SPACES))}"
        )
    return SEARCH_SPACES[name]


def _mean_score(
    fitted: Sequence[Recommender], splits: Sequence[Split], metric: str, k: int, threshold: float
) -> float:
    """Return a candidate's mean figure over the validation splits where it is defined.

    Raises:
        ValueError: It is defined on none of them (``_score``'s error).
    """
    figures, error = [], None
    for fit, split in zip(fitted, splits, strict=True):
        try:
            figures.append(_score(fit, split, metric, k, threshold))
        except ValueError as exc:
            error = exc  # a cut with no user to rank here: the others decide
    if not figures:
        assert error is not None
        raise error
    return float(np.mean(figures))


def _score(fitted: Recommender, split: Split, metric: str, k: int, threshold: float) -> float:
    """Return a fitted candidate's figure of ``metric`` on the split.

    Raises:
        ValueError: The metric is undefined here (no known test user has a relevant item).
    """
    scores = score_split(fitted, split, k, threshold)
    if metric not in scores:
        raise ValueError(
            f"no validation user the model knows has a relevant item "
            f"(rating >= {threshold:g}), so {metric} is undefined on this split"
        )
    return float(scores[metric])


def rank_trials(trials: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Return trials best first; equal scores keep their order (the earlier candidate wins).

    Args:
        trials: Dicts with a ``score``, in the order they were tried.
        metric: "rmse" (lower is better) or "ndcg@k" (higher is better).
    """
    sign = 1 if metric == "rmse" else -1
    # sorted() is stable: among equal scores the order tried is kept.
    return [dict(trial) for trial in sorted(trials, key=lambda trial: sign * trial["score"])]


def class_defaults(name: str, space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Return the model class's default value of every parameter of a search space.

    Raises:
        ValueError: A key of the space is not a parameter of the model's class.
    """
    parameters = inspect.signature(MODELS[name]).parameters
    unknown = [key for key in space if key not in parameters]
    if unknown:
        raise ValueError(
            f"{name} takes no parameter(s) {unknown}; it takes {', '.join(parameters)}"
        )
    return {key: parameters[key].default for key in space}


def _check_metric(name: str, metric: str) -> int:
    """Return the ranking cut-off scores need for the metric, after checking it."""
    if metric == "rmse":
        if PREDICT not in MODELS[name].capabilities:
            raise ValueError(
                f"{name} predicts no ratings, so it cannot be tuned on rmse; use ndcg@10"
            )
        return DEFAULT_K
    match = _NDCG.match(metric)
    if not match:
        raise ValueError(f"unknown metric {metric!r}; expected rmse or ndcg@K such as ndcg@10")
    return int(match.group(1))


def _candidates(
    defaults: Mapping[str, Any], space: Mapping[str, Sequence[Any]], n_trials: int, seed: int
) -> list[dict[str, Any]]:
    """Return the defaults, then up to n_trials - 1 other grid points drawn with the seed."""
    keys = list(space)
    grid = [
        _plain(dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(space[key] for key in keys))
    ]
    others = [point for point in grid if point != defaults]
    size = min(n_trials - 1, len(others))
    chosen = np.random.default_rng(seed).choice(len(others), size=size, replace=False)
    return [dict(defaults), *(others[i] for i in chosen)]


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return parameters with numpy scalars turned into Python numbers (JSON-able)."""
    return {
        key: value.item() if isinstance(value, np.generic) else value
        for key, value in params.items()
    }
