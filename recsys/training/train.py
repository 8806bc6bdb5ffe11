"""Training from the event store: interactions -> ratings -> model -> metrics -> artifact.

``train_and_publish`` is the whole path, run by a training job
(``recsys.training.jobs``), by ``flask --app app train`` and at first start.
With a ``GatePolicy`` the quality gate (``recsys.training.gate``) compares
the candidate with the live version on the same holdout before it is
published; a rejected candidate is kept on the registry's rejected shelf.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD
from recsys.data.ratings import EventWeights, derive_ratings
from recsys.data.timestamps import format_utc, retention_cutoff
from recsys.errors import RecsysError
from recsys.evaluation.champion import choose_on_validation
from recsys.evaluation.evaluate import score_split
from recsys.evaluation.splits import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_FRACTION,
    Split,
    holdout_split,
)
from recsys.models import AUTO, AUTO_CANDIDATES, MODELS
from recsys.models.base import Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.state import ModelState
from recsys.store.artifacts import ArtifactError, ArtifactMetadata, ModelRegistry
from recsys.store.bulk import read_interactions
from recsys.store.events import EventStore
from recsys.training.gate import VERSIONS_REJECTED, GatePolicy, Measure, judge

# Fits a model by name and parameters on a feedback frame: the default builds
# it from ``MODELS`` and calls ``fit``; another engine (Spark) plugs in here.
ModelFitter = Callable[[str, Mapping[str, Any], pd.DataFrame], Recommender]


def fit_locally(name: str, params: Mapping[str, Any], feedback: pd.DataFrame) -> Recommender:
    """Fit a model of ``MODELS`` in this process (the default ``ModelFitter``)."""
    return MODELS[name](**dict(params)).fit(feedback)


class NoTrainingDataError(RecsysError):
    """The store holds no interaction to learn from."""


@dataclass(frozen=True)
class TrainingSettings:
    """What to train and how to check it.

    Attributes:
        model: A key of ``recsys.models.MODELS`` (checked when the settings are
            read), or "auto": fit every model of ``candidates`` on the holdout
            and serve the one with the best NDCG@``metrics_k``.
        model_params: Keyword arguments for the model's constructor; for
            "auto", model name -> keyword arguments.
        candidates: The models "auto" compares, cheapest first (a tie goes
            to the cheaper).
        weights: The points of each event type (``EventWeights``).
        holdout_fraction: Share of each user's products held out to measure
            the model before the final fit on all data.
        metrics_k: Cut-off for the ranking metrics.
        relevance_threshold: A held-out rating at least this counts as relevant.
        seed: Seed of the holdout split.
        max_eval_users: Rank at most this many held-out users (a seeded
            sample) for the offline metrics: on a million users the metrics
            would cost more than the training; None ranks them all.
        retention_days: Train on the events of the last this many days only
            (``EVENT_RETENTION_DAYS``), whether or not older ones were pruned
            yet; None: on every event.
    """

    model: str = "svd"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] = AUTO_CANDIDATES
    weights: EventWeights = field(default_factory=EventWeights)
    holdout_fraction: float = DEFAULT_TEST_FRACTION
    metrics_k: int = 10
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD
    seed: int = DEFAULT_SPLIT_SEED
    max_eval_users: int | None = 20_000
    retention_days: int | None = None


def reads_times(settings: TrainingSettings) -> bool:
    """Return whether a model these settings fit reads its events' times (``reads_times``)."""
    if settings.model == AUTO:
        fitted = {name: settings.model_params.get(name, {}) for name in settings.candidates}
    else:
        fitted = {settings.model: settings.model_params}
    return any(MODELS[name](**dict(params)).reads_times for name, params in fitted.items())


def live_reads_times(registry: ModelRegistry, model_type: str) -> bool:
    """Return whether the version the gate would judge against reads its events' times.

    The gate ranks the live version on the same frame as the candidate: it
    must carry the times if the live model weighs them, or the live version
    would be judged weaker than it serves. Read from the newest metadata
    that serves ``model_type`` (the version ``load_latest`` returns, unless
    it is damaged).
    """
    for version in registry.versions():
        try:
            metadata = registry.read_metadata(version)
        except ArtifactError:
            continue
        if not metadata.serves(model_type):
            continue
        model_class = MODELS.get(metadata.model_type)
        try:
            return model_class is not None and model_class(**metadata.params).reads_times
        except (TypeError, ValueError):
            return False  # parameters this release does not build: the gate skips it too
    return False


def describe_window(settings: TrainingSettings) -> str:
    """Return the phrase naming the retention window training reads ("" without one).

    Both engines' messages use it, so they name the window alike.
    """
    if settings.retention_days is None:
        return ""
    return f" of the last {settings.retention_days} days (EVENT_RETENTION_DAYS)"


def window_record(settings: TrainingSettings, since: datetime | None) -> dict[str, Any]:
    """Return an artifact's record of the retention window its events were read in ({}: none)."""
    if since is None:
        return {}
    return {"retention_days": settings.retention_days, "events_since": format_utc(since)}


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
    store: EventStore,
    registry: ModelRegistry,
    settings: TrainingSettings | None = None,
    progress: bool = False,
    fitter: ModelFitter = fit_locally,
    gate: GatePolicy | None = None,
) -> ArtifactMetadata:
    """Train a model on every interaction in the store and publish it.

    The model is measured on the evaluate holdout first, then refitted on all
    data. With ``settings.model == "auto"`` every candidate is measured; the
    best by NDCG@k (a tie to the cheaper) is refitted and published with
    ``selected_by="auto"`` and every candidate's metrics. The artifact also
    holds a popularity model fitted on the same data, the fallback for users
    the main model does not know.

    Args:
        store: Where the interactions are.
        registry: Where the artifact goes.
        settings: What to train (default: SVD with its default parameters).
        progress: Show a progress bar over the steps on stderr (when it is a
            terminal): reading, each holdout fit, the final fit, publishing.
        fitter: Fits the model (holdout and final fit); the popularity
            fallback is always fitted here.
        gate: Compare with the live version first (None: publish unjudged).

    Returns:
        The published artifact's metadata (``rejected`` when the gate kept it back).

    Raises:
        NoTrainingDataError: The store has no interaction.
    """
    started = time.perf_counter()
    settings = settings or TrainingSettings()
    fits = len(settings.candidates) + 1 if settings.model == AUTO else 1
    steps = _Steps(progress, total=fits + 3 + (gate is not None))
    steps.begin("reading the store")
    # Read in pages into int64 arrays: a ten-million-event log as Python rows
    # would cost gigabytes.
    since = retention_cutoff(settings.retention_days)
    times = reads_times(settings) or (
        gate is not None and live_reads_times(registry, settings.model)
    )
    log = read_interactions(store.engine, since=since, times=times)
    if log.empty:
        raise NoTrainingDataError(
            f"the event store has no interactions{describe_window(settings)} to train on; "
            "record some first "
            "(POST /interactions or `flask --app app import-interactions FILE`)"
        )
    return publish_trained(
        log,
        store.products_frame,
        registry,
        settings,
        fitter,
        started,
        steps=steps,
        gate=gate,
        since=since,
    )


def publish_trained(
    log: pd.DataFrame,
    catalog: Callable[[], pd.DataFrame],
    registry: ModelRegistry,
    settings: TrainingSettings | None = None,
    fitter: ModelFitter = fit_locally,
    started: float | None = None,
    steps: _Steps | None = None,
    gate: GatePolicy | None = None,
    since: datetime | None = None,
) -> ArtifactMetadata:
    """Train on an interaction log and publish the model (``train_and_publish`` after its read).

    Args:
        log: ``user_id, product_clicked, purchased`` (not empty).
        catalog: Returns the catalog to store with the model, called at publish time.
        registry: Where the artifact goes.
        settings: What to train.
        fitter: Fits the model (holdout and final fit).
        started: ``time.perf_counter()`` when training began (default: now).
        steps: The progress bar to move along (default: none shown).
        gate: Compare with the live version first (None: publish unjudged).
        since: The retention window's cutoff the log was read from (None: no
            window), recorded with the artifact.

    Returns:
        The published artifact's metadata; a version the gate rejected is
        kept on the rejected shelf instead (``metadata.rejected``).
    """
    settings = settings or TrainingSettings()
    started = time.perf_counter() if started is None else started
    steps = steps or _Steps(False, total=0)
    feedback = derive_ratings(log, settings.weights)

    # The same protocol and metrics as `recommendation_system.py evaluate`.
    split = sample_test_users(
        holdout_split(feedback, settings.holdout_fraction, settings.seed),
        settings.max_eval_users,
        settings.seed,
    )
    chosen = _choose_and_measure(split, settings, fitter, steps)
    measure = _gate_measure(split, log, feedback, settings)
    judged = _judge(chosen, measure, registry, settings, fitter, gate, steps)
    metrics = {k: v for k, v in chosen.metrics.items() if k != "fit_seconds"}
    metrics.update(split.cold_counts())
    steps.begin(f"fitting {chosen.name} on all data")
    state, fallback = _fit_on_all_data(chosen, feedback, fitter)
    seconds = time.perf_counter() - started
    steps.begin("publishing")
    published = registry.publish(
        state,
        fallback=fallback,
        catalog=catalog(),
        data_fingerprint=fingerprint_interactions(log),
        metrics=metrics,
        training={
            **_training_record(log, feedback, seconds, settings.weights),
            **window_record(settings, since),
        },
        selected_by=chosen.selected_by,
        selection=chosen.selection,
        gate=judged,
    )
    if published.rejected:
        VERSIONS_REJECTED.inc()
    steps.close()
    return published


def _gate_measure(
    split: Split, log: pd.DataFrame, feedback: pd.DataFrame, settings: TrainingSettings
) -> Measure:
    """Return what the gate measures on: the holdout, the log, and how the split was made."""
    facts = {
        "protocol": "holdout",
        "test_fraction": settings.holdout_fraction,
        "seed": settings.seed,
        "max_eval_users": settings.max_eval_users,
        "relevant": "every held-out product of the users the live version never saw",
    }
    return Measure(split, log, feedback, settings.metrics_k, facts)


def _judge(
    chosen: _Chosen,
    measure: Measure,
    registry: ModelRegistry,
    settings: TrainingSettings,
    fitter: ModelFitter,
    policy: GatePolicy | None,
    steps: _Steps,
) -> dict[str, Any]:
    """Return the gate's record: the candidate against the version serving now, on its split.

    Returns:
        The record; empty without a policy (nothing is judged).
    """
    if policy is None:
        return {}
    steps.begin("comparing with the live version")
    # The version every server serves (and would after a restart): the newest
    # published one of the configured type.
    live = registry.load_latest(model_type=settings.model)
    fit = None if measure.split.test.empty else partial(fitter, chosen.name, chosen.params)
    return judge(fit, live, measure, policy)


@dataclass(frozen=True)
class _Chosen:
    """The model to fit on all data, and what its holdout said."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    selected_by: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)


def _choose_and_measure(
    split: Split, settings: TrainingSettings, fitter: ModelFitter, steps: _Steps
) -> _Chosen:
    """Measure the configured model (or, for "auto", every candidate) on the holdout."""
    # A store's first few events may leave nothing to hold out (one event per
    # user): the first model is then published unmeasured rather than not at all.
    measurable = not split.test.empty
    if settings.model != AUTO:
        name, params = settings.model, dict(settings.model_params)
        metrics = {}
        if measurable:
            steps.begin(f"measuring {name} on the holdout")
            metrics = holdout_metrics(name, params, split, settings, fitter)
        return _Chosen(name, params, metrics)

    # The champion is chosen on validation rows carved from the holdout's
    # training part; the holdout's test rows then measure the champion alone.
    def measure(name: str, part: Split) -> dict[str, Any]:
        steps.begin(f"measuring {name} on validation")
        return holdout_metrics(name, settings.model_params.get(name, {}), part, settings, fitter)

    choice = choose_on_validation(
        split.train,
        settings.candidates,
        measure,
        f"ndcg@{settings.metrics_k}",
        "holdout",
        settings.seed,
    )
    params = dict(settings.model_params.get(choice.champion, {}))
    metrics = {}
    if measurable:
        steps.begin(f"measuring {choice.champion} on the holdout")
        metrics = holdout_metrics(choice.champion, params, split, settings, fitter)
    return _Chosen(
        choice.champion,
        params,
        metrics,
        selected_by=AUTO,
        selection={
            "metric": choice.metric,
            "reason": choice.reason,
            "measured_on": "validation rows carved from the holdout's training part",
            "candidates": choice.candidates,
        },
    )


def _fit_on_all_data(
    chosen: _Chosen, feedback: pd.DataFrame, fitter: ModelFitter
) -> tuple[ModelState, ModelState | None]:
    """Fit the chosen model on all data, and the popularity fallback unless it is one.

    Returns:
        Their states, the model's validated.
    """
    model = fitter(chosen.name, chosen.params, feedback)
    # A model whose arrays every server would refuse (NaN factors, say) fails
    # the job here instead of being published and skipped by every worker.
    state = model.get_state()
    MODELS[chosen.name].validate_state(state)
    fallback = None
    if not isinstance(model, PopularityRecommender):
        fallback = PopularityRecommender().fit(feedback).get_state()
    return state, fallback


def _training_record(
    log: pd.DataFrame, feedback: pd.DataFrame, seconds: float, weights: EventWeights
) -> dict[str, Any]:
    """Return what the artifact records of its training: sizes, time and weights."""
    return {
        "interactions": len(log),
        "users": int(feedback["user_id"].nunique()),
        "products": int(feedback["product_id"].nunique()),
        "seconds": round(seconds, 3),
        "event_weights": weights.as_dict(),
    }


def sample_test_users(split: Split, max_users: int | None, seed: int) -> Split:
    """Keep the test rows of at most ``max_users`` test users (a seeded sample)."""
    users = split.test["user_id"].unique()
    if max_users is None or len(users) <= max_users:
        return split
    chosen = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    return Split(split.train, split.test[split.test["user_id"].isin(chosen)], split.index)


def holdout_metrics(
    name: str,
    params: Mapping[str, Any],
    split: Split,
    settings: TrainingSettings,
    fitter: ModelFitter = fit_locally,
) -> dict[str, Any]:
    """Fit one model on a split's training rows and return its rounded metrics.

    Args:
        name: A key of ``MODELS``.
        params: Keyword arguments of its constructor.
        split: The holdout split.
        settings: The cut-off and relevance threshold.
        fitter: Fits the model.

    Returns:
        ``score_split``'s figures (rounded to 4 decimals) plus ``fit_seconds``.
    """
    start = time.perf_counter()
    model = fitter(name, params, split.train)
    fit_seconds = time.perf_counter() - start
    scores = score_split(model, split, settings.metrics_k, settings.relevance_threshold)
    scores.pop("recommend_seconds", None)  # a timing, not a property of the model
    metrics: dict[str, Any] = {
        metric: value if isinstance(value, int) else round(float(value), 4)
        for metric, value in scores.items()
    }
    metrics["fit_seconds"] = round(fit_seconds, 3)
    return metrics


class _Steps:
    """A tqdm bar over named steps on stderr, or nothing when progress is off."""

    def __init__(self, enabled: bool, total: int):
        self._bar = None
        self._open = False
        if enabled:
            from tqdm import tqdm  # only the command line shows progress

            # disable=None: no bar when stderr is not a terminal.
            self._bar = tqdm(total=total, desc="training", unit="step", disable=None)

    def begin(self, step: str) -> None:
        """Count the step before as done and name the one starting now."""
        if self._bar is None:
            return
        if self._open:
            self._bar.update(1)
        self._bar.set_postfix_str(step)
        self._open = True

    def close(self) -> None:
        if self._bar is not None:
            if self._open:
                self._bar.update(1)
            self._bar.close()
