"""Hyper-parameter search for SVD and ALS, on the split and metric evaluate reports.

A search scores candidates exactly as ``recommendation_system.py evaluate``
scores a model (``--protocol holdout``, the same ``--seed``):

- candidates: the model's current class defaults first, then up to
  ``n_trials - 1`` distinct other points of its search space, drawn with
  ``numpy.random.default_rng(seed)``; the models keep their own
  ``random_state``, so the same seed gives the same search on every run;
- each candidate is built by ``model_factory`` (with the data's rating
  scale), fitted on the training part of ``holdout_split(feedback,
  DEFAULT_TEST_FRACTION, seed)`` and scored by ``score_split`` on its test
  part with the metric asked for: "rmse" (lower is better) or "ndcg@k";
- the best wins; on a tie the earlier candidate does, so the defaults are
  only replaced by something strictly better.

So saving the winner (``save_model_params``) never makes the model worse than
its defaults on evaluate's split for that seed. The price: the winner is
picked on the rows evaluate tests on, so evaluate's figure for it is
optimistic; ``evaluate --seed`` with another seed gives an unbiased check.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD, Dataset
from recsys.evaluation.evaluate import DEFAULT_K, score_split, with_progress
from recsys.evaluation.model_params import model_factory
from recsys.evaluation.splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    Split,
    holdout_split,
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
}
SEARCH_SPACES = {"svd": SVD_SEARCH_SPACE, "als": ALS_SEARCH_SPACE}

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
        seed: Seed of the holdout split and of the candidate draw.
        train_rows: Rows each candidate was fitted on.
        test_rows: Held-out rows each candidate was scored on.
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
    test_rows: int

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
) -> TuningResult:
    """Search a model's hyper-parameters on evaluate's holdout split.

    Args:
        dataset: The data.
        model: "svd" or "als" (or any registered model with a search space).
        metric: "rmse" (models that predict ratings) or "ndcg@k" such as "ndcg@10".
        n_trials: How many candidates to score, the defaults included (fewer
            if the space is smaller).
        seed: Seed of the holdout split (as ``evaluate --seed``) and of the
            candidate draw.
        threshold: For NDCG: relevance threshold on ratings (default 4).
        space: Values to try per parameter (default: the model's built-in space).
        progress: Show a progress bar over candidates on stderr (when it is a terminal).

    Returns:
        The best candidate, the defaults' score and every candidate's score.

    Raises:
        ValueError: Unknown model or metric, a model without a search space, a space key
            it does not take, RMSE of a model without ratings, NDCG without relevant items.
    """
    name = canonical_model_name(model)
    space = _search_space(name) if space is None else space
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    k = _check_metric(name, metric)
    threshold = DEFAULT_RELEVANCE_THRESHOLD if threshold is None else float(threshold)
    split = holdout_split(dataset.feedback, DEFAULT_TEST_FRACTION, seed)
    defaults = class_defaults(name, space)
    trials = []
    candidates = _candidates(defaults, space, n_trials, seed)
    for params in with_progress(candidates, progress, "tuning", "candidate"):
        fitted = model_factory(name, {name: params}, dataset.rating_scale)().fit(split.train)
        score, is_default = _score(fitted, split, metric, k, threshold), params == defaults
        trials.append({"params": params, "score": score, "defaults": is_default})
    ranked = rank_trials(trials, metric)
    return TuningResult(
        model=name,
        metric=metric,
        method=f"{len(trials)} candidates, the defaults first, each fitted on "
        f"{len(split.train)} rows and scored on {len(split.test)} held-out rows of "
        f"evaluate's holdout split, seed {seed}",
        best_params=ranked[0]["params"],
        best_score=ranked[0]["score"],
        defaults_score=trials[0]["score"],
        trials=ranked,
        seed=seed,
        train_rows=len(split.train),
        test_rows=len(split.test),
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


def _score(fitted: Recommender, split: Split, metric: str, k: int, threshold: float) -> float:
    """Return a fitted candidate's figure of ``metric`` on the split.

    Raises:
        ValueError: The metric is undefined here (no known test user has a relevant item).
    """
    scores = score_split(fitted, split, k, threshold)
    if metric not in scores:
        raise ValueError(
            f"no test user the model knows has a relevant item (rating >= {threshold:g}), "
            f"so {metric} is undefined on this split"
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
