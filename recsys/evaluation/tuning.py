"""Hyper-parameter search for SVD and ALS.

Both searches see only the training part of ``evaluate``'s holdout split for
the same seed, so the rows ``evaluate --seed S`` tests on never pick the
parameters that are then evaluated on them:

- SVD on RMSE: Surprise's own ``RandomizedSearchCV`` over ``SVD_SEARCH_SPACE``
  with K-fold cross-validation (``KFold(folds, random_state=seed)``).
- Any model on NDCG@k (and ALS always, since it predicts no ratings): a
  seeded random search over the model's space, each candidate scored by
  ``recsys.evaluation.evaluate`` on a per-user holdout validation split.

The best parameters can be saved with ``recsys.model_params.save_model_params``
as the configuration the service trains with.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from surprise import SVD, Reader
from surprise import Dataset as SurpriseDataset
from surprise.model_selection import KFold, RandomizedSearchCV

from recsys.data.loaders import Dataset
from recsys.evaluation.evaluate import evaluate
from recsys.evaluation.params import model_factory
from recsys.evaluation.splits import holdout_split
from recsys.models import MODELS, canonical_model_name

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
        best_score: The winner's score.
        trials: Every candidate tried, as {"params": ..., "score": ...}, best first.
        rows: How many feedback rows the search used (the holdout training part).
    """

    model: str
    metric: str
    method: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data."""
        return asdict(self)

    def report(self) -> str:
        """Return a short human-readable summary, best candidates first."""
        lines = [
            f"tuned {self.model} on {self.metric} ({self.method}; {self.rows} rows)",
            f"best {self.metric}: {self.best_score:.4f} with {self.best_params}",
            f"{len(self.trials)} candidates, best first:",
        ]
        lines += [f"  {t['score']:.4f}  {t['params']}" for t in self.trials[:10]]
        return "\n".join(lines)


def tune(
    dataset: Dataset,
    model: str,
    metric: str = "rmse",
    n_trials: int = 10,
    folds: int = 3,
    seed: int = 0,
    threshold: float | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
) -> TuningResult:
    """Search a model's hyper-parameters on a dataset.

    Args:
        dataset: The data.
        model: "svd" or "als" (or any registered model with a search space).
        metric: "rmse" (SVD only) or "ndcg@k" such as "ndcg@10".
        n_trials: How many distinct candidates to try (fewer if the space is smaller).
        folds: For RMSE: cross-validation folds.
        seed: Seed of the held-back holdout split, the candidate sampling, the
            folds or validation split, and the models.
        threshold: For NDCG: relevance threshold on ratings (default 4).
        space: Values to try per parameter (default: the model's built-in space).

    Raises:
        ValueError: Unknown model or metric, a model without a search space,
            or RMSE asked of a model that predicts no ratings.
    """
    name = canonical_model_name(model)
    if space is None:
        if name not in SEARCH_SPACES:
            raise ValueError(
                f"no search space for {name!r}; tunable: {', '.join(sorted(SEARCH_SPACES))}"
            )
        space = SEARCH_SPACES[name]
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if metric == "rmse":
        if not MODELS[name].predicts_ratings:
            raise ValueError(
                f"{name} predicts no ratings, so it cannot be tuned on rmse; use ndcg@10"
            )
        if name != "svd":
            raise ValueError(f"rmse tuning uses Surprise's SVD search; {name!r} is not svd")
        return _tune_svd_rmse(_training_part(dataset, seed), space, n_trials, folds, seed)
    match = _NDCG.match(metric)
    if not match:
        raise ValueError(f"unknown metric {metric!r}; expected rmse or ndcg@K such as ndcg@10")
    return _tune_ranking(
        _training_part(dataset, seed), name, space, int(match.group(1)), n_trials, seed, threshold
    )


def _training_part(dataset: Dataset, seed: int) -> Dataset:
    """Return the dataset without the rows ``evaluate``'s holdout of this seed tests on."""
    train = holdout_split(dataset.feedback, seed=seed).train
    return replace(dataset, feedback=train, name=f"{dataset.name} (training part)")


def _tune_svd_rmse(
    dataset: Dataset, space: Mapping[str, Sequence[Any]], n_trials: int, folds: int, seed: int
) -> TuningResult:
    ratings = dataset.feedback[["user_id", "product_id", "rating"]]
    data = SurpriseDataset.load_from_df(ratings, Reader(rating_scale=dataset.rating_scale))
    distributions = {key: list(values) for key, values in space.items()}
    distributions["random_state"] = [seed]
    search = RandomizedSearchCV(
        SVD,
        distributions,
        n_iter=min(n_trials, _space_size(distributions)),
        measures=["rmse"],
        cv=KFold(n_splits=folds, random_state=seed),
        random_state=seed,
        n_jobs=1,
    )
    search.fit(data)
    trials = sorted(
        (
            {"params": _plain(params), "score": float(score)}
            for params, score in zip(
                search.cv_results["params"], search.cv_results["mean_test_rmse"], strict=True
            )
        ),
        key=lambda trial: trial["score"],
    )
    return TuningResult(
        model="svd",
        metric="rmse",
        method=f"Surprise RandomizedSearchCV, {folds}-fold CV on the holdout training part, "
        f"seed {seed}",
        best_params=_plain(search.best_params["rmse"]),
        best_score=float(search.best_score["rmse"]),
        trials=trials,
        rows=len(dataset.feedback),
    )


def _tune_ranking(
    dataset: Dataset,
    name: str,
    space: Mapping[str, Sequence[Any]],
    k: int,
    n_trials: int,
    seed: int,
    threshold: float | None,
) -> TuningResult:
    keys = list(space)
    grid = list(itertools.product(*(space[key] for key in keys)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(grid), size=min(n_trials, len(grid)), replace=False)
    seed_key = "random_state" if "random_state" in _accepted(name) else None
    metric = f"ndcg@{k}"
    trials = []
    for index in chosen:
        params = _plain(dict(zip(keys, grid[index], strict=True)))
        if seed_key:
            params[seed_key] = seed
        factory = model_factory(name, {name: params}, dataset.rating_scale)
        report = evaluate({name: factory}, dataset, "holdout", k=k, threshold=threshold, seed=seed)
        trials.append({"params": params, "score": report["models"][name][metric]})
    trials.sort(key=lambda trial: -trial["score"])
    return TuningResult(
        model=name,
        metric=metric,
        method=f"seeded random search, validation split of the holdout training part, seed {seed}",
        best_params=trials[0]["params"],
        best_score=trials[0]["score"],
        trials=trials,
        rows=len(dataset.feedback),
    )


def _accepted(name: str) -> set[str]:
    return set(inspect.signature(MODELS[name]).parameters)


def _space_size(space: Mapping[str, Sequence[Any]]) -> int:
    return int(np.prod([len(values) for values in space.values()]))


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return parameters with numpy scalars turned into Python numbers (JSON-able)."""
    return {
        key: value.item() if isinstance(value, np.generic) else value
        for key, value in params.items()
    }
