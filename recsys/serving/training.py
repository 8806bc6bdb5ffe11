"""Training from the event store: interactions -> ratings -> model -> metrics -> artifact.

``train_and_publish`` is the whole path, run by a training job
(``recsys.serving.jobs``), by ``flask --app app train`` and at first start.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD
from recsys.data.ratings import RatingWeights, derive_ratings
from recsys.errors import RecsysError
from recsys.evaluation.evaluate import score_split
from recsys.evaluation.splits import DEFAULT_SPLIT_SEED, DEFAULT_TEST_FRACTION, holdout_split
from recsys.models import MODELS
from recsys.models.popularity import PopularityRecommender
from recsys.serving.artifacts import ArtifactMetadata, ModelRegistry
from recsys.store.events import EventStore


class NoTrainingDataError(RecsysError):
    """The store holds no interaction to learn from."""


@dataclass(frozen=True)
class TrainingSettings:
    """What to train and how to check it.

    Attributes:
        model: A key of ``recsys.models.MODELS`` (checked when the settings are read).
        model_params: Keyword arguments for the model's constructor.
        weights: How clicks and purchases become ratings.
        holdout_fraction: Share of each user's products held out to measure
            the model before the final fit on all data.
        metrics_k: Cut-off for the ranking metrics.
        relevance_threshold: A held-out rating at least this counts as relevant.
        seed: Seed of the holdout split.
    """

    model: str = "svd"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    weights: RatingWeights = field(default_factory=RatingWeights)
    holdout_fraction: float = DEFAULT_TEST_FRACTION
    metrics_k: int = 10
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD
    seed: int = DEFAULT_SPLIT_SEED


def fingerprint_interactions(log: pd.DataFrame) -> str:
    """Return a digest that changes whenever the training interactions change.

    Args:
        log: ``user_id, product_clicked, purchased`` in a stable order.
    """
    digest = hashlib.sha256()
    digest.update(str(len(log)).encode())
    for column in ("user_id", "product_clicked", "purchased"):
        digest.update(np.ascontiguousarray(log[column].to_numpy(dtype=np.int64)).tobytes())
    return f"sha256:{digest.hexdigest()}"


def train_and_publish(
    store: EventStore, registry: ModelRegistry, settings: TrainingSettings | None = None
) -> ArtifactMetadata:
    """Train a model on every interaction in the store and publish it.

    The artifact also holds a popularity model fitted on the same data, the
    fallback for users the main model does not know.

    Args:
        store: Where the interactions are.
        registry: Where the artifact goes.
        settings: What to train (default: SVD with its default parameters).

    Returns:
        The published artifact's metadata.

    Raises:
        NoTrainingDataError: The store has no interaction.
    """
    settings = settings or TrainingSettings()
    started = time.perf_counter()
    log = store.interactions_frame()
    if log.empty:
        raise NoTrainingDataError("the event store has no interactions to train on")
    feedback = derive_ratings(log, settings.weights)
    model_cls = MODELS[settings.model]

    # The same protocol and metrics as `recommendation_system.py evaluate`.
    split = holdout_split(feedback, settings.holdout_fraction, settings.seed)
    checked = model_cls(**dict(settings.model_params)).fit(split.train)
    scores = score_split(checked, split, settings.metrics_k, settings.relevance_threshold)
    scores.pop("recommend_seconds", None)  # a timing, not a property of the model
    metrics = {
        name: value if isinstance(value, int) else round(float(value), 4)
        for name, value in scores.items()
    }
    metrics.update(split.cold_counts())
    model = model_cls(**dict(settings.model_params)).fit(feedback)
    fallback = None
    if not isinstance(model, PopularityRecommender):
        fallback = PopularityRecommender().fit(feedback).get_state()
    seconds = time.perf_counter() - started
    # A model whose arrays every server would refuse (NaN factors, say) fails
    # the job here instead of being published and skipped by every worker.
    state = model.get_state()
    model_cls.validate_state(state)
    return registry.publish(
        state,
        fallback=fallback,
        catalog=store.products_frame(),
        data_fingerprint=fingerprint_interactions(log),
        metrics=metrics,
        training={
            "interactions": len(log),
            "users": int(feedback["user_id"].nunique()),
            "products": int(feedback["product_id"].nunique()),
            "seconds": round(seconds, 3),
            "click_weight": settings.weights.click_weight,
            "purchase_weight": settings.weights.purchase_weight,
        },
    )
