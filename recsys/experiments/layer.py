"""The experiment layer: serves each user's variant and manages the experiments.

``ExperimentLayer.recommend`` is what ``/recommend`` calls. With no
experiment running it costs one attribute read on top of
``RecommendationService.recommend``; the running experiment is read from
the database when one starts or stops in this process and every
``AB_REFRESH_SECONDS`` otherwise. The layer only routes a user to a
pipeline (each variant is one, see ``definitions`` for the strategies and
``assignment`` for the routing), so a variant's list is made, and cached,
by the same code as any answer; it adds the experiment's name, the variant
and a ``recommendation_id``, and queues the exposure (``exposure_log``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recsys.data.timestamps import utc_now
from recsys.errors import RecsysError, quote
from recsys.experiments.assignment import Assigner
from recsys.experiments.definitions import (
    CHAMPION,
    MODEL,
    POPULAR,
    VERSION,
    Experiment,
    Variant,
    experiment_from_spec,
)
from recsys.experiments.exposure_log import ExposureLog
from recsys.experiments.records import ExperimentStore
from recsys.experiments.report import Guardrails, experiment_report
from recsys.online import (
    Pipeline,
    RecommendationAnswer,
    RecommendationService,
    RecommendRequest,
    compact_json,
)
from recsys.store.artifacts import ArtifactMetadata, LoadedArtifact, ModelRegistry

logger = logging.getLogger(__name__)


class NoSuchExperimentError(RecsysError, LookupError):
    """No experiment has that name (a 404 for the API)."""


@dataclass(frozen=True)
class ExperimentAnswer:
    """An answer served inside an experiment."""

    answer: RecommendationAnswer
    experiment: str
    variant: str
    recommendation_id: str

    def to_dict(self) -> dict[str, Any]:
        body = self.answer.to_dict()
        body["experiment"] = self.experiment
        body["variant"] = self.variant
        body["recommendation_id"] = self.recommendation_id
        return body

    @property
    def json_body(self) -> bytes:
        """Return the answer as compact JSON (made per request: each has its own id)."""
        return compact_json(self.to_dict())


@dataclass
class RunningExperiment:
    """A running experiment as this process serves it."""

    experiment: Experiment
    assigner: Assigner
    pipelines: list[Pipeline]

    def variant_of(self, user_id: int) -> tuple[Variant, Pipeline]:
        i = self.assigner.index(user_id)
        return self.experiment.variants[i], self.pipelines[i]


class ExperimentLayer:
    """Chooses each user's variant while an experiment runs, and logs what it served.

    Args:
        service: The service of the live model (control's ``champion``).
        store: The experiments' tables.
        registry: Published versions, for ``model`` and ``version`` variants.
        log: Where exposures go; None: not recorded (``AB_EXPOSURE_LOG=0``).
        train: Trains and publishes a model type, for a ``model`` variant
            with no published version.
        window: The attribution window of the report.
        guardrails: The report's margins against control.
    """

    def __init__(
        self,
        service: RecommendationService,
        store: ExperimentStore,
        registry: ModelRegistry,
        log: ExposureLog | None,
        train: Callable[[str], ArtifactMetadata],
        window: timedelta = timedelta(hours=24),
        guardrails: Guardrails | None = None,
    ):
        self.service = service
        self.store = store
        self.registry = registry
        self.log = log
        self.train = train
        self.window = window
        self.guardrails = guardrails or Guardrails()
        self.running: RunningExperiment | None = None
        self._refresh_lock = threading.Lock()

    # -- the request path --------------------------------------------------------

    def recommend(self, request: RecommendRequest) -> RecommendationAnswer | ExperimentAnswer:
        """Answer as ``RecommendationService.recommend``, through the user's variant if one runs."""
        running = self.running
        if running is None:
            return self.service.recommend(request)
        user_id = request.user_id
        assert user_id is not None, "sessions are answered by the live model, outside A/B tests"
        variant, pipeline = running.variant_of(user_id)
        recommendation_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            answer = self.service.recommend(request, pipeline)
        except Exception:
            self._record(running, variant, user_id, recommendation_id, None, started)
            raise
        self._record(running, variant, user_id, recommendation_id, answer, started)
        return ExperimentAnswer(answer, running.experiment.name, variant.name, recommendation_id)

    def _record(
        self,
        running: RunningExperiment,
        variant: Variant,
        user_id: int,
        recommendation_id: str,
        answer: RecommendationAnswer | None,
        started: float,
    ) -> None:
        if self.log is None:
            return
        self.log.record(
            {
                "recommendation_id": recommendation_id,
                "experiment": running.experiment.name,
                "variant": variant.name,
                "user_id": user_id,
                "product_ids": " ".join(str(p.product_id) for p in answer.recommendations)
                if answer is not None
                else "",
                "explored_ids": " ".join(
                    str(p.product_id) for p in answer.recommendations if p.explored
                )
                if answer is not None
                else "",
                "model_version": answer.model_version if answer is not None else None,
                "strategy": answer.strategy if answer is not None else None,
                "latency_ms": (time.perf_counter() - started) * 1000,
                "failed": answer is None or answer.degraded is not None,
                "served_at": utc_now(),
            }
        )

    def link_events(self, links: Sequence[tuple[str, int, int, bool, datetime | None]]) -> None:
        """Queue events posted with a recommendation id: (id, user, product, purchased, when)."""
        if self.log is None:
            return
        now = utc_now()
        for recommendation_id, user_id, product_id, purchased, when in links:
            self.log.record_event(
                {
                    "recommendation_id": recommendation_id,
                    "user_id": user_id,
                    "product_id": product_id,
                    "purchased": purchased,
                    "created_at": when or now,
                }
            )

    # -- managing experiments ----------------------------------------------------

    def create(self, spec: Any) -> Experiment:
        """Validate and store a new experiment in draft.

        Raises:
            InvalidExperimentError: The definition is malformed.
            ExperimentExistsError: The name is taken.
        """
        experiment = experiment_from_spec(spec)
        row = experiment.to_dict()
        row.update(
            variants=[v.to_dict() for v in experiment.variants],
            created_at=experiment.created_at,
            started_at=None,
            stopped_at=None,
        )
        row.pop("unit")
        self.store.create(row)
        return experiment

    def get(self, name: str) -> Experiment:
        """Return one experiment.

        Raises:
            NoSuchExperimentError: None has that name.
        """
        row = self.store.get(name)
        if row is None:
            raise NoSuchExperimentError(f"no experiment named {quote(name)}")
        return Experiment.from_row(row)

    def list(self) -> list[Experiment]:
        """Return every experiment, newest first."""
        return [Experiment.from_row(row) for row in self.store.list()]

    def start(self, name: str) -> Experiment:
        """Pin each variant's model version, start the experiment and serve it here now.

        A ``model`` variant serves the newest published version of its type;
        when there is none, one is trained now (this call then takes as long
        as a training run).

        Raises:
            NoSuchExperimentError, ExperimentStateError, ArtifactError,
            NoTrainingDataError.
        """
        experiment = self.get(name)
        pinned = []
        for variant in experiment.variants:
            if variant.strategy == MODEL and variant.model is not None:
                meta = self._newest(variant.model) or self.train(variant.model)
                variant = dataclasses.replace(variant, version=meta.version)
            elif variant.strategy == VERSION and variant.version is not None:
                self.registry.read_metadata(variant.version)  # raises when it is not there
            pinned.append(variant.to_dict())
        try:
            self.store.start(name, pinned, utc_now())
        except LookupError:
            raise NoSuchExperimentError(f"no experiment named {quote(name)}") from None
        self.refresh()
        return self.get(name)

    def stop(self, name: str) -> Experiment:
        """Stop a running experiment; its users get the live model again."""
        try:
            self.store.stop(name, utc_now())
        except LookupError:
            raise NoSuchExperimentError(f"no experiment named {quote(name)}") from None
        self.refresh()
        return self.get(name)

    def report(self, name: str) -> dict[str, Any]:
        """Return an experiment's report (what this process queued is written first).

        Raises:
            NoSuchExperimentError: None has that name.
        """
        experiment = self.get(name)
        if self.log is not None:
            self.log.flush()
        return experiment_report(
            experiment,
            self.store.exposures_frame(name),
            self.store.linked_events_frame(name),
            self.store.exposed_users_purchases(name),
            self.window,
            self.guardrails,
        )

    def _newest(self, model_type: str) -> ArtifactMetadata | None:
        for version in self.registry.versions():
            meta = self.registry.read_metadata(version)
            if meta.model_type == model_type and meta.selected_by is None:
                return meta
        return None

    def refresh(self) -> None:
        """Serve the experiment the database says is running (or none).

        Raises:
            One of ``STORE_OUTAGES`` when the database is unavailable (the
            current state is kept); ``ArtifactError`` when a pinned version
            cannot be loaded (no experiment is served then).
        """
        with self._refresh_lock:
            row = self.store.running()
            current = self.running
            if row is None:
                self.running = None
                return
            experiment = Experiment.from_row(row)
            if (
                current is not None
                and current.experiment.name == experiment.name
                and current.experiment.started_at == experiment.started_at
            ):
                return
            try:
                pipelines = [self._pipeline_for(v) for v in experiment.variants]
            except Exception:
                self.running = None
                raise
            self.running = RunningExperiment(
                experiment,
                Assigner(experiment.name, [v.weight for v in experiment.variants]),
                pipelines,
            )
            logger.info("serving experiment %s", experiment.name)

    def _pipeline_for(self, variant: Variant) -> Pipeline:
        if variant.strategy == CHAMPION:
            return self.service.pipeline
        if variant.strategy == POPULAR:
            return self.service.popular_pipeline
        assert variant.version is not None, "model and version variants are pinned at start"
        artifact: LoadedArtifact = self.registry.load(variant.version)
        return self.service.pinned_pipeline(artifact)
