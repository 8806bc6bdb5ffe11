"""The default pipeline: simulate -> top-5 by clicks -> SVD -> RMSE on evaluate's split.

Beside SVD (the design's model) it measures the blend of rating models
(``recsys.models.blend``) and a global-mean baseline on the same split. The
RMSE is measured exactly as ``recommendation_system.py evaluate`` measures
SVD: the same holdout split (``holdout_split`` with ``DEFAULT_TEST_FRACTION``
and ``DEFAULT_SPLIT_SEED``), the same model construction (``model_factory``
with the data's rating scale) and the same scoring (``score_split``), so one
data set gives one RMSE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.eda import clicks_by_product
from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD, Dataset, simulated_dataset
from recsys.data.ratings import EventWeights, derive_ratings
from recsys.data.simulate import SimulatedShop, SimulationConfig, simulate_shop
from recsys.evaluation import metrics
from recsys.evaluation.evaluate import DEFAULT_K, score_split
from recsys.evaluation.model_params import model_factory
from recsys.evaluation.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, holdout_split
from recsys.models.base import Recommender


@dataclass(frozen=True)
class RatingAccuracy:
    """Error of predicted ratings on a held-out set.

    Attributes:
        rmse: Root mean squared error.
        mae: Mean absolute error.
        n_test: Number of held-out ratings.
    """

    rmse: float
    mae: float
    n_test: int


@dataclass(frozen=True)
class RatingEvaluation:
    """SVD, the blend and a global-mean baseline on one train/test split."""

    svd: RatingAccuracy
    blend: RatingAccuracy
    baseline: RatingAccuracy
    n_train: int

    def report(self) -> str:
        """Return the RMSE block the CLI prints."""
        gain = 1 - self.svd.rmse / self.baseline.rmse
        blend_gain = 1 - self.blend.rmse / self.baseline.rmse
        svd, blend, base = self.svd, self.blend, self.baseline
        return "\n".join(
            [
                f"Rating accuracy on a {self.svd.n_test}-pair test set "
                f"({self.n_train} training pairs):",
                f"  {'model':<22}{'RMSE':>8}{'MAE':>8}",
                f"  {'SVD (Surprise)':<22}{svd.rmse:>8.4f}{svd.mae:>8.4f}",
                f"  {'blend (SVD + kNN)':<22}{blend.rmse:>8.4f}{blend.mae:>8.4f}",
                f"  {'global-mean baseline':<22}{base.rmse:>8.4f}{base.mae:>8.4f}",
                f"  SVD lowers RMSE by {gain:.1%}",
                f"  the blend lowers it by {blend_gain:.1%}",
            ]
        )


def svd_against_baseline(
    dataset: Dataset,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> RatingEvaluation:
    """Measure SVD, the blend and the training mean on evaluate's holdout split.

    Args:
        dataset: The data.
        params: Model name -> keyword arguments (default: the class defaults).
        seed: Seed of the holdout split.
        test_fraction: Share of each user's rows held out.

    Returns:
        RMSE and MAE of SVD and of the blend (each fitted on the training
        part, as ``evaluate`` fits it) and of predicting the training part's
        mean rating.
    """
    split = holdout_split(dataset.feedback, test_fraction, seed)
    actual = split.test["rating"].to_numpy()
    accuracy = {}
    for name in ("svd", "blend"):
        model = model_factory(name, params, dataset.rating_scale)().fit(split.train)
        scores = score_split(model, split, DEFAULT_K, DEFAULT_RELEVANCE_THRESHOLD)
        accuracy[name] = RatingAccuracy(
            rmse=float(scores["rmse"]), mae=float(scores["mae"]), n_test=len(actual)
        )
    mean = np.full(len(actual), split.train["rating"].mean())
    return RatingEvaluation(
        svd=accuracy["svd"],
        blend=accuracy["blend"],
        baseline=RatingAccuracy(
            rmse=metrics.rmse(mean, actual), mae=metrics.mae(mean, actual), n_test=len(actual)
        ),
        n_train=len(split.train),
    )


@dataclass(frozen=True)
class PipelineResult:
    """What the default pipeline builds.

    Attributes:
        shop: The simulated catalog, users and log.
        feedback: One rating per (user, product).
        top5: The five most-clicked products with names and click counts.
        model: SVD trained on all ratings (the one to serve).
        evaluation: SVD, the blend and a baseline: RMSE/MAE on evaluate's holdout split.
    """

    shop: SimulatedShop
    feedback: pd.DataFrame
    top5: pd.DataFrame
    model: Recommender
    evaluation: RatingEvaluation


def run_pipeline(
    config: SimulationConfig | None = None, weights: EventWeights | None = None
) -> PipelineResult:
    """Simulate the shop, rank the top 5, train SVD and measure its RMSE (and the blend's).

    Args:
        config: The simulated shop (default: 100 users, 20 products, seed 42).
        weights: The points of each event type (``EventWeights``).
    """
    config = config or SimulationConfig()
    shop = simulate_shop(config)
    feedback = derive_ratings(shop.interactions, weights or EventWeights())
    dataset = simulated_dataset(feedback)
    top5 = (
        clicks_by_product(shop.interactions)
        .head(5)[["product_id", "clicks"]]
        .merge(shop.catalog[["product_id", "name", "category"]], on="product_id", how="left")
    )
    evaluation = svd_against_baseline(dataset)
    model = model_factory("svd", rating_scale=dataset.rating_scale)().fit(feedback)
    return PipelineResult(
        shop=shop, feedback=feedback, top5=top5, model=model, evaluation=evaluation
    )
