"""The serving process's moving parts, wired together: store, artifacts, live model, jobs.

``ServingRuntime.start`` is what a server does once at start-up: migrate the
schema, fill an empty store from the bundled data, then serve the newest valid
published model, training one only when none exists. Nothing here imports
Flask; ``recsys.api.persistence`` builds a runtime from the app's config.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.data import load_interactions
from recsys.live import LiveRecommendationService, ServingModel
from recsys.migrate import upgrade_to_head
from recsys.registry import ArtifactError, ArtifactMetadata, ModelRegistry
from recsys.simulate import SimulationConfig, simulate_shop
from recsys.store import EventStore
from recsys.training import (
    AutoRetrainer,
    RetrainInProgressError,
    TrainingJobRunner,
    TrainingLock,
    TrainingSettings,
    train_and_publish,
)

logger = logging.getLogger(__name__)

_MAX_SIMULATED_PRODUCTS = 100_000


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the data lives and how models are trained.

    Attributes:
        database_url: The event store (``sqlite:///...`` or ``postgresql+psycopg://...``).
        model_dir: The artifact directory.
        keep_versions: How many published versions to keep.
        training: What to train.
        bootstrap_log: The interactions CSV loaded into an empty store (None:
            the simulator's default log).
        retrain_every_events: Retrain automatically after this many new events.
        retrain_every_minutes: Retrain automatically on this period.
        refresh_seconds: How often to look for a version published by another
            process (another server worker, ``flask train``); 0 turns it off.
    """

    database_url: str
    model_dir: Path
    keep_versions: int = 5
    training: TrainingSettings = field(default_factory=TrainingSettings)
    bootstrap_log: Path | None = None
    retrain_every_events: int | None = None
    retrain_every_minutes: float | None = None
    refresh_seconds: float = 0


class ServingRuntime:
    """Owns the store, the registry, the live model and the training jobs.

    Args:
        settings: Where things are and what to train.
    """

    def __init__(self, settings: RuntimeSettings):
        self.settings = settings
        self.store = EventStore.from_url(settings.database_url)
        self.registry = ModelRegistry(settings.model_dir, keep=settings.keep_versions)
        self.service = LiveRecommendationService(self.store)
        self.training_lock = TrainingLock(Path(settings.model_dir) / ".training.lock")
        # Late-bound so the job always runs the runtime's current ``train``.
        self.jobs = TrainingJobRunner(
            train=lambda: self.train(), on_published=self._serve_published,
            lock=self.training_lock, recorder=self.store,
        )
        self.auto_retrain = AutoRetrainer(
            self.jobs, settings.retrain_every_events, settings.retrain_every_minutes
        )
        self.trained_at_start = False
        self._stop_refresh = threading.Event()
        self._unloadable: set[str] = set()

    def start(self) -> ServingModel:
        """Prepare everything a server needs and make a model live.

        Returns:
            The live bundle.
        """
        upgrade_to_head(self.store.engine)
        self.bootstrap_if_empty()
        self.close_orphaned_jobs()
        bundle = self.load_or_train()
        self.auto_retrain.start()
        if self.settings.refresh_seconds > 0:
            threading.Thread(target=self._refresh_periodically, daemon=True,
                             name="model-refresh").start()
        return bundle

    def close(self) -> None:
        """Stop the background threads and release database connections."""
        self.auto_retrain.stop()
        self._stop_refresh.set()
        self.store.dispose()

    def refresh(self) -> bool:
        """Serve a version another process published after the live one, if any.

        Returns:
            Whether a newer version was made live.
        """
        live = self.service.metadata.version
        newer = self.registry.newer_than(live, model_type=self.settings.training.model)
        if newer is None or newer in self._unloadable:
            return False
        try:
            artifact = self.registry.load(newer)
        except ArtifactError as exc:
            # Warn once per damaged version; the live model keeps serving.
            self._unloadable.add(newer)
            logger.warning("not serving model artifact %s: %s", newer, exc)
            return False
        self.service.serve(artifact, only_if_newer=True)
        return True

    def _refresh_periodically(self) -> None:
        while not self._stop_refresh.wait(self.settings.refresh_seconds):
            try:
                self.refresh()
            except Exception:
                # A damaged new version must not stop the poller; the live one stays.
                logger.exception("could not refresh the live model")

    def bootstrap_if_empty(self) -> bool:
        """Load the simulated catalog, users and the bundled log into an empty store.

        Returns:
            Whether the store was filled.
        """
        if not self.store.is_empty():
            return False
        path = self.settings.bootstrap_log
        log = load_interactions(path) if path else None
        shop = simulate_shop(_config_covering(log))
        filled = self.store.bootstrap(
            shop.catalog, shop.users, log if log is not None else shop.interactions
        )
        if filled:
            logger.info("filled the empty event store from %s", path or "the simulator")
        return filled

    def close_orphaned_jobs(self) -> int:
        """Mark jobs failed whose process died mid-training.

        Only when no process holds the training lock: then no job can really
        be running, whatever its record says.

        Returns:
            How many job records were closed.
        """
        if not self.training_lock.try_acquire():
            return 0
        try:
            return self.store.fail_unfinished_jobs("interrupted: the training process ended")
        finally:
            self.training_lock.release()

    def train(self) -> ArtifactMetadata:
        """Train on the store's interactions and publish (does not change the live model)."""
        return train_and_publish(self.store, self.registry, self.settings.training)

    def train_exclusively(self) -> ArtifactMetadata:
        """Train and publish now, unless another process or job is training.

        Raises:
            RetrainInProgressError: The training lock is held.
        """
        if not self.training_lock.try_acquire():
            raise RetrainInProgressError(None)
        try:
            return self.train()
        finally:
            self.training_lock.release()

    def load_or_train(self) -> ServingModel:
        """Serve the newest valid artifact of the configured model type; train only if none."""
        model_type = self.settings.training.model
        artifact = self.registry.load_latest(model_type=model_type)
        if artifact is None:
            logger.info("no valid %s artifact in %s: training one", model_type, self.registry.root)
            artifact = self.registry.load(self.train().version)
            self.trained_at_start = True
        return self.service.serve(artifact)

    def record_events(self, count: int) -> None:
        """Tell the automatic retrain how many events were just recorded."""
        self.auto_retrain.record_events(count)

    def _serve_published(self, meta: ArtifactMetadata) -> None:
        self.service.serve_version(self.registry, meta.version)


def _config_covering(log: pd.DataFrame | None) -> SimulationConfig:
    """Return the simulator settings whose catalog covers a log's product ids.

    The bundled log is the default simulation's output, so the default
    settings name every product in it; a log naming more products gets a
    larger (equally seeded) simulated catalog. Users need no profile: the
    store creates unknown users on the fly.

    Raises:
        ValueError: The log names product ids too large to simulate a catalog for.
    """
    default = SimulationConfig()
    if log is None or log.empty:
        return default
    highest = int(log["product_clicked"].max())
    if highest > _MAX_SIMULATED_PRODUCTS:
        raise ValueError(
            f"the bootstrap log names product {highest}; a simulated catalog covers ids up to "
            f"{_MAX_SIMULATED_PRODUCTS}: load a real catalog into the store instead"
        )
    return SimulationConfig(products=max(default.products, highest))
