"""The live model kept current: the first one loaded, newer versions served, the threads.

``ServingRuntime`` owns one ``LiveModelRefresher`` and delegates its serving
moments to it (``load_live_model``, ``start``, ``start_threads``, ``refresh``):
see ``recsys.runtime.wiring`` for when each runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from recsys.config import Settings
from recsys.experiments import ExperimentLayer, ExposureLog
from recsys.online import RecommendationService
from recsys.store.artifacts import ArtifactError, ArtifactMetadata, ModelRegistry
from recsys.store.engine import STORE_OUTAGES, describe_outage
from recsys.training import AutoRetrainer

logger = logging.getLogger(__name__)


class LiveModelRefresher:
    """Loads the live model, serves newer published versions, and runs the process's threads.

    Args:
        settings: The service settings.
        service: The answering service whose live model this keeps current.
        registry: Where published versions are read from.
        model_type: The configured model type.
        experiments: The A/B layer, refreshed in the background.
        auto_retrain: The automatic retrain timer, started with the threads.
        exposure_log: The served lists' log, if the settings keep one.
    """

    def __init__(
        self,
        settings: Settings,
        service: RecommendationService,
        registry: ModelRegistry,
        model_type: str,
        experiments: ExperimentLayer,
        auto_retrain: AutoRetrainer,
        exposure_log: ExposureLog | None,
    ):
        self.settings = settings
        self.service = service
        self.registry = registry
        self.model_type = model_type
        self.experiments = experiments
        self.auto_retrain = auto_retrain
        self.exposure_log = exposure_log
        self._started = False
        self._start_lock = threading.Lock()
        self._threads_started = False
        self._threads_lock = threading.Lock()
        self._stop = threading.Event()

    def load_live_model(self) -> bool:
        """Serve the newest valid published model of the configured type.

        Returns:
            Whether a model is live.
        """
        self._refresh_erased()
        artifact = self.registry.load_latest(model_type=self.model_type)
        if artifact is None:
            logger.warning(
                "no published %s model in %s yet: run `flask --app app init`, or, on an "
                "empty store, send events (the first model is trained when they arrive)",
                self.model_type,
                self.registry.root,
            )
        else:
            self.service.serve(artifact)
        return self.service.live.is_live

    def start(self) -> bool:
        """Serve a model and start the background threads, once per process.

        Returns:
            Whether a model is live.
        """
        if self._started:
            if not self.service.live.is_live:
                self._serve_first_published()
            return self.service.live.is_live
        with self._start_lock:
            if not self._started:
                if not self.service.live.is_live:
                    self.load_live_model()
                self.start_threads()
                self._started = True
        return self.service.live.is_live

    def _serve_first_published(self) -> None:
        # Only while nothing is live: a directory listing per request, and one
        # thread loads while the others wait for it (and then find it live).
        with self._start_lock:
            if not self.service.live.is_live:
                self._refresh_logging_errors()

    def start_threads(self) -> None:
        """Start this process's refresh poller and auto-retrain timer (once per process)."""
        with self._threads_lock:
            if self._threads_started:
                return
            self.auto_retrain.start()
            if self.settings.jobs.model_refresh_seconds > 0:
                threading.Thread(
                    target=self._refresh_periodically, daemon=True, name="model-refresh"
                ).start()
            # The experiment running now, then whatever other processes start or stop.
            self._refresh_experiment()
            threading.Thread(
                target=self._refresh_experiment_periodically, daemon=True, name="experiment-refresh"
            ).start()
            if self.exposure_log is not None:
                self.exposure_log.start()
            if self.service.exploration.enabled:
                threading.Thread(
                    target=self._sync_impressions_periodically,
                    daemon=True,
                    name="impressions-sync",
                ).start()
            self.service.cache.start()
            self._threads_started = True

    def stop(self) -> None:
        """Stop the refresh pollers (they end at their next wake-up)."""
        self._stop.set()

    def refresh(self) -> bool:
        """Serve a version another process published after the live one, if any.

        Returns:
            Whether a newer version was made live.
        """
        live = self.service.live
        current = live.current().version if live.is_live else ""
        newer = self.registry.newer_than(current, model_type=self.model_type)
        if newer is None:
            return False
        try:
            artifact = self.registry.load(newer)
        except ArtifactError as exc:
            # The registry remembers the rejection, so newer_than passes over this
            # version from now on: one warning, and the live model keeps serving.
            logger.warning("not serving model artifact %s: %s", newer, exc)
            return False
        self.service.serve(artifact, only_if_newer=True)
        return True

    def serve_version(self, version: str) -> None:
        """Serve a version a worker published (or a newer one), unless already live."""
        # Versions sort by their zero-padded number.
        live = self.service.live
        if not live.is_live or live.current().version < version:
            self._refresh_logging_errors()

    def serve_published(self, meta: ArtifactMetadata) -> None:
        """Serve a version this process just published, as loaded back from disk."""
        # Not the object training built in memory: the live model is then
        # exactly what a restart would serve.
        self.service.serve(self.registry.load(meta.version))

    def _refresh_periodically(self) -> None:
        # A worker forked long after its master loaded the model (a
        # replacement for one that died, say) may hold an old version: look
        # at once, then every period.
        if self.service.live.is_live:
            self._refresh_logging_errors()
        while not self._stop.wait(self.settings.jobs.model_refresh_seconds):
            # A new version read the catalog as it went live: no second read.
            if not self._refresh_logging_errors():
                self._refresh_names()
            self._refresh_erased()

    def _refresh_logging_errors(self) -> bool:
        try:
            return self.refresh()
        except Exception:
            # A damaged new version must not stop the poller; the live one stays.
            logger.exception("could not refresh the live model")
            return False

    def _refresh_names(self) -> None:
        # Products another process wrote (PUT /products) show here within a period.
        # When the store is down the names already live stay; the next period tries again.
        with contextlib.suppress(*STORE_OUTAGES):
            self.service.refresh_names()

    def _refresh_erased(self) -> None:
        # Deletions another process announced while this one was not listening
        # (or before it started); when the store is down the next period tries again.
        with contextlib.suppress(*STORE_OUTAGES):
            self.service.refresh_erased()

    def sync_impressions(self) -> None:
        """Add this process's impression counts to the store's and read everyone's back."""
        try:
            self.service.exploration.sync()
        except STORE_OUTAGES as exc:
            # The counts wait in memory; the next period tries again.
            logger.warning("impressions not synced: %s", type(exc).__name__)

    def _sync_impressions_periodically(self) -> None:
        while not self._stop.wait(self.settings.exploration.sync_seconds):
            self.sync_impressions()

    def _refresh_experiment_periodically(self) -> None:
        while not self._stop.wait(self.settings.experiments.refresh_seconds):
            self._refresh_experiment()

    def _refresh_experiment(self) -> None:
        try:
            self.experiments.refresh()
        except STORE_OUTAGES as exc:
            # The next period tries again; the requests' own 503s say more.
            logger.warning("could not refresh the running experiment: %s", describe_outage(exc))
        except Exception:
            # A missing pinned version: the next period tries again.
            logger.exception("could not refresh the running experiment")
