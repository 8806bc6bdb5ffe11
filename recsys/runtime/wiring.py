"""The serving process's moving parts, wired together: store, artifacts, live model, jobs.

Its moments, kept apart:

- ``ServingRuntime(settings)`` opens nothing: it connects to no database,
  creates no file and trains nothing (``flask --app app routes`` stays free).
- ``init()`` is the explicit, idempotent start-up step (``flask --app app
  init``, the gunicorn configuration's ``on_starting`` hook, ``python app.py``):
  migrate the schema, fill an empty store from the bundled log, close jobs a
  dead process left open, and train a first model when none is published. An
  empty store (``DATA_PATH=``) has nothing to train on yet: ``init`` says so
  and the service starts without a model, training its first one when the
  first events arrive. It runs under an exclusive file lock, so processes
  starting together do it once: the first does the work, the others wait and
  find it done.
- ``load_live_model()`` serves the newest valid published model. gunicorn's
  master calls it after ``init`` and before forking, so every worker starts
  with the model in memory pages they share (copy-on-write). It needs no
  database: the artifact carries the model, its fallback and the catalog, so
  a server whose database is down still answers.
- ``start_threads()`` starts one process's refresh poller and auto-retrain
  timer. Threads do not survive a fork, so they start in each worker after it
  (gunicorn's ``post_worker_init`` hook), never in the master.
- ``start()`` runs once per serving process, at its first request: it loads
  the model when none is live yet (no master loaded one: ``flask run``, or a
  master whose ``init`` met a database that was down) and starts the threads.
  While no model is live, every request looks for one first: a version
  ``init``, a training job or another process published is served at the
  next request, not a refresh period later.

``init``'s work is in ``recsys.runtime.startup``; loading, refreshing and the
threads in ``recsys.runtime.refresh`` (``LiveModelRefresher``, which the
runtime owns and delegates to). Nothing here imports Flask; ``recsys.web``
calls these from the app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client import Counter

from recsys.config import Settings
from recsys.data.events import Event
from recsys.data.timestamps import retention_cutoff
from recsys.evaluation.model_params import load_model_params
from recsys.experiments import ExperimentLayer, ExperimentStore, ExposureLog, Guardrails
from recsys.models import AUTO
from recsys.online import (
    AnswerCache,
    Exploration,
    HistoryCache,
    ImpressionCounter,
    InvalidationBus,
    NoAnswerCache,
    RecommendationService,
    RedisOutage,
)
from recsys.runtime.memory import then_give_back_memory
from recsys.runtime.refresh import LiveModelRefresher
from recsys.runtime.startup import InitReport, bootstrap_if_empty, initialise
from recsys.store.artifacts import ArtifactMetadata, ModelRegistry
from recsys.store.engine import INIT_REMEDY, STORE_OUTAGES, describe_outage, is_missing_schema
from recsys.store.events import EventStore, Ingested
from recsys.store.impressions import ImpressionCounts
from recsys.store.job_queue import JobQueue
from recsys.store.user_data import PrunedExposures, UserDeletion
from recsys.training import (
    AutoRetrainer,
    GatePolicy,
    QueuedTrainingJobs,
    RetrainInProgressError,
    Trainer,
    TrainingJobRunner,
    TrainingLock,
    TrainingSettings,
    TrainingWorker,
    train_and_publish,
)

EVENTS_INGESTED = Counter(
    "recsys_events_ingested", "Interactions recorded in the event store", ["purchased"]
)


def answer_cache(
    settings: Settings, store: EventStore, outage: RedisOutage
) -> AnswerCache | NoAnswerCache:
    """Return the cache layer the settings ask for: in-process, with histories in Redis if set.

    With Redis, also the bus that tells every process which cached answers
    an event made stale. Both skip Redis while ``outage`` says so, and tell
    it when Redis fails, as the rate limiter does.
    """
    if not settings.cache.enabled:
        return NoAnswerCache(store)
    ttl, max_entries = settings.cache.ttl_seconds, settings.cache.max_entries
    url = settings.redis.url
    if not url:
        return AnswerCache(store, ttl, max_entries)
    prefix = settings.cache.key_prefix
    timeout = settings.redis.timeout_seconds
    return AnswerCache(
        store,
        ttl,
        max_entries,
        HistoryCache(url, prefix, ttl, timeout, outage),
        InvalidationBus(url, prefix, timeout, outage),
    )


def training_settings(settings: Settings) -> TrainingSettings:
    """Return what to train, from the service settings (and the parameter file they name)."""
    model = settings.training.model
    params_path = settings.model_params_path
    per_model = load_model_params(params_path) if params_path else {}
    # "auto" trains every candidate, each with its own entry of the file.
    params = dict(per_model) if model == AUTO else dict(per_model.get(model, {}))
    return TrainingSettings(
        model=model,
        model_params=params,
        weights=settings.training.event_weights,
        retention_days=settings.store.event_retention_days,
    )


logger = logging.getLogger(__name__)


class ServingRuntime:
    """Owns the store, the registry, the live model and the training jobs.

    Args:
        settings: The service settings.

    Raises:
        DataFileError: The parameter file the settings name is unusable.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.training = training_settings(settings)
        self.store = EventStore.from_url(settings.database_url, settings.store.timeout_seconds)
        self.experiment_store = ExperimentStore(self.store.engine)
        self.registry = ModelRegistry(
            settings.model_dir,
            keep=settings.registry.keep_versions,
            in_use=self._versions_in_use,
        )
        # Every user of Redis in the process shares it: a request that finds
        # Redis failing waits for it once, not once per user.
        self.redis_outage = RedisOutage()
        self.service = RecommendationService(
            self.store,
            answer_cache(settings, self.store, self.redis_outage),
            Exploration(
                settings.exploration.share,
                settings.exploration.impressions,
                ImpressionCounter(ImpressionCounts(self.store.engine)),
            ),
        )
        # Late-bound so a job always runs the runtime's current ``train``;
        # a serving process keeps nothing of what training freed.
        self.trainer = Trainer(
            lambda: then_give_back_memory(self.train),
            TrainingLock(settings.model_dir / ".training.lock"),
            poll_seconds=settings.jobs.worker_poll_seconds,
        )
        self.job_queue = JobQueue(self.store.engine, lease_seconds=settings.jobs.lease_seconds)
        self.jobs: TrainingJobRunner | QueuedTrainingJobs
        if self.trains_in_worker:
            # Jobs wait in the database for `flask --app app worker`.
            self.jobs = QueuedTrainingJobs(self.job_queue, on_succeeded=self._serve_version)
        else:
            self.jobs = TrainingJobRunner(
                self.trainer, on_published=self._serve_published, records=self.job_queue
            )
        auto = settings.jobs.auto_retrain
        self.auto_retrain = AutoRetrainer(
            self.jobs,
            settings.jobs.retrain_every_events if auto else None,
            settings.jobs.retrain_every_minutes if auto else None,
            last_trained=self.last_trained,
        )
        self.exposure_log = (
            ExposureLog(self.experiment_store, forgets=self.service.erased.deleted_since)
            if settings.experiments.exposure_log
            else None
        )
        self.experiments = ExperimentLayer(
            self.service,
            self.experiment_store,
            self.registry,
            self.exposure_log,
            train=self.train_model_type,
            window=timedelta(hours=settings.experiments.attribution_hours),
            guardrails=Guardrails(
                settings.experiments.latency_margin, settings.experiments.error_margin
            ),
        )
        self.refresher = LiveModelRefresher(
            settings,
            self.service,
            self.registry,
            self.model_type,
            self.experiments,
            self.auto_retrain,
            self.exposure_log,
        )
        self.init_report: InitReport | None = None

    @property
    def trains_in_worker(self) -> bool:
        """Whether retraining runs in a worker process (``TRAINING_MODE=worker``)."""
        return self.settings.jobs.mode == "worker"

    def worker(self) -> TrainingWorker:
        """Return a worker that runs this configuration's queued training jobs here."""
        return TrainingWorker(
            self.trainer, self.job_queue, poll_seconds=self.settings.jobs.worker_poll_seconds
        )

    @property
    def model_type(self) -> str:
        """The configured model type; "auto" serves whatever the selection chose."""
        return self.training.model

    # -- the start-up step -----------------------------------------------------

    def init(self) -> InitReport:
        """Prepare the store and the first model; safe to run by many processes at once.

        Raises:
            One of ``STORE_OUTAGES`` when the database is unreachable,
            ``DataFileError`` when the bootstrap log is unusable.
        """
        self.init_report = initialise(self)
        return self.init_report

    def init_before_workers(self) -> bool:
        """Run ``init`` once before a production server forks; return whether it could.

        A database outage does not stop the server: each worker loads the
        published model at its first request and recovers when the database
        returns (a warning says so).
        """
        try:
            self.init()
        except STORE_OUTAGES as exc:
            logger.warning("serving the published model: %s", describe_outage(exc))
            return False
        return True

    def bootstrap_if_empty(self) -> bool:
        """Load the bundled log (and its catalog, if it has one) into an empty store.

        Returns:
            Whether the store was filled.
        """
        return bootstrap_if_empty(
            self.store, self.settings.store.data_path, self.settings.catalog_path
        )

    def close_orphaned_jobs(self) -> int:
        """Mark jobs failed whose process died mid-training.

        Only when no process holds the training lock: then no job can really
        be running, whatever its record says. With training in workers,
        queued jobs stay queued: a worker will run them.

        Returns:
            How many job records were closed.
        """
        return self.trainer.close_orphaned(self.job_queue, keep_queued=self.trains_in_worker)

    # -- serving -----------------------------------------------------------------

    def load_live_model(self) -> bool:
        """Serve the newest valid published model of the configured type.

        Returns:
            Whether a model is live.
        """
        return self.refresher.load_live_model()

    def start(self) -> bool:
        """Serve a model and start the background threads, once per process.

        Called at every request. At a process's first, a model already live
        (loaded by the gunicorn master before it forked this worker) is kept;
        otherwise the newest published one is loaded now. Without a published
        model the service answers 503, and each later request looks for one
        again: the first a process publishes (``init``, a training job) or
        another process does is served at once.

        Returns:
            Whether a model is live.
        """
        return self.refresher.start()

    def start_threads(self) -> None:
        """Start this process's refresh poller and auto-retrain timer (once per process)."""
        self.refresher.start_threads()

    def close(self) -> None:
        """Stop the background threads and release database connections."""
        self.auto_retrain.stop()
        self.refresher.stop()
        if self.exposure_log is not None:
            self.exposure_log.close()
        self.service.cache.stop()
        self.refresher.sync_impressions()
        self.store.dispose()

    def refresh(self) -> bool:
        """Serve a version another process published after the live one, if any.

        Returns:
            Whether a newer version was made live.
        """
        return self.refresher.refresh()

    def check_ready(self) -> dict[str, str | None]:
        """Return what keeps this process from answering fully, each with why if known.

        Returns:
            ``model`` and ``database``, in that order, for those missing (empty:
            ready). The database's why is the remedy when the store lacks the
            service's tables, else None: the driver's own words (a host, a
            port) are for the logs, not for whoever calls the probe.
        """
        missing: dict[str, str | None] = {}
        if not self.start():
            missing["model"] = None
        try:
            self.store.ping()
        except STORE_OUTAGES as exc:
            missing["database"] = (
                f"the event store lacks the service's tables: {INIT_REMEDY}"
                if is_missing_schema(exc)
                else None
            )
        return missing

    # -- training ----------------------------------------------------------------

    def train(
        self,
        progress: bool = False,
        engine: str | None = None,
        spark_master: str | None = None,
        data: str | None = None,
        force: bool = False,
    ) -> ArtifactMetadata:
        """Train on the store's interactions (or a Parquet dataset) and publish.

        Does not change the live model. With the spark engine on PostgreSQL
        the executors read the store over JDBC and the driver never holds the
        log; on SQLite (a file of this machine) this process reads it.

        The quality gate judges the new version first: one worse than the
        live version is kept as rejected instead (``metadata.rejected``).

        Args:
            progress: Show a progress bar over the training steps (the ``train`` command).
            engine: ``local`` or ``spark`` (default: the ``TRAINING_ENGINE`` setting).
            spark_master: The Spark master (default: the ``SPARK_MASTER`` setting).
            data: A Parquet dataset (path or URI) the executors read instead of
                the store (spark engine only).
            force: Publish even a version the gate would reject.

        Raises:
            ValueError: The spark engine was asked for a model other than ALS,
                or a dataset without the spark engine.
        """
        engine = engine or self.settings.jobs.engine
        gate = GatePolicy(self.settings.jobs.gate_tolerance, force=force)
        if engine != "spark":
            if data is not None:
                raise ValueError("a Parquet dataset is read by the spark engine only")
            return train_and_publish(
                self.store, self.registry, self.training, progress=progress, gate=gate
            )
        if self.model_type != "als":
            raise ValueError(
                f"the spark engine trains als; the configured model is {self.model_type!r} "
                "(set RECSYS_MODEL=als, which the servers then serve)"
            )
        # Imported here: pyspark is an optional requirement of this engine alone.
        from recsys.training import (
            EventSource,
            SparkALSEngine,
            jdbc_url_of,
            refuse_arrivals,
            train_on_spark,
        )

        refuse_arrivals(self.training.model_params)  # before Spark starts

        jobs = self.settings.jobs
        jdbc = jdbc_url_of(self.settings.database_url)
        master = spark_master or jobs.spark_master
        with SparkALSEngine(master, staging_uri=jobs.spark_staging_uri) as spark:
            if data is None and jdbc is None:
                return train_and_publish(
                    self.store, self.registry, self.training, progress, fitter=spark, gate=gate
                )
            # The distributed path publishes without the quality gate: the gate
            # ranks held-out users in this process, which would hold the log.
            source = EventSource(
                parquet=data,
                jdbc_url=None if data is not None else jdbc,
                partitions=jobs.spark_jdbc_partitions,
            )
            catalog = self.settings.store.catalog_path if data is not None else None
            return train_on_spark(spark, source, self.registry, self.training, catalog)

    def train_model_type(self, model_type: str) -> ArtifactMetadata:
        """Train and publish one model type (an experiment's variant), unless training is busy.

        Raises:
            RetrainInProgressError: The training lock is held.
        """
        params_path = self.settings.model_params_path
        params = load_model_params(params_path).get(model_type, {}) if params_path else {}
        settings = dataclasses.replace(self.training, model=model_type, model_params=dict(params))
        return self.trainer.now(
            lambda: then_give_back_memory(
                lambda: train_and_publish(self.store, self.registry, settings)
            )
        )

    def train_exclusively(
        self, progress: bool = False, force: bool = False, **engine: str | None
    ) -> ArtifactMetadata:
        """Train and publish now (through the quality gate), unless another process is training.

        Args:
            progress: Show a progress bar.
            force: Publish even a version the gate would reject.
            **engine: ``engine`` and ``spark_master`` for ``train``.

        Raises:
            RetrainInProgressError: The training lock is held.
            ModelDirectoryError: The model directory (where the lock lives) cannot be written.
        """
        self.registry.ensure_root()
        return self.trainer.now(lambda: self.train(progress, force=force, **engine))

    def last_trained(self) -> datetime | None:
        """Return when the newest version, published or rejected, was trained (None: none yet)."""
        newest = [
            self.registry.read_metadata(shelf[0], rejected)
            for shelf, rejected in (
                (self.registry.versions(), False),
                (self.registry.rejected_versions(), True),
            )
            if shelf
        ]
        return max((datetime.fromisoformat(meta.trained_at) for meta in newest), default=None)

    def _versions_in_use(self) -> set[str] | None:
        """Return the versions the running A/B test pins (None when the store cannot tell)."""
        try:
            running = self.experiment_store.running()
        except STORE_OUTAGES:
            return None
        if running is None:
            return set()
        return {v["version"] for v in running["variants"] if v.get("version")}

    def record_events(self, count: int) -> None:
        """Tell the automatic retrain how many events were just recorded.

        While no model is live (a store that started empty), recorded events
        start the first training job, whatever the automatic retrain's
        settings: a service with data should not wait for a retrain nobody
        may have configured.
        """
        if count and not self.service.live.is_live:
            # Another process training (or a queued job) will publish it; a
            # store outage leaves it to the next events.
            with contextlib.suppress(RetrainInProgressError, *STORE_OUTAGES):
                self.jobs.submit(trigger="auto")
        self.auto_retrain.record_events(count)

    def add_interactions(self, events: Sequence[Event]) -> Ingested:
        """Record a batch of events, all or nothing, and make every answer see them.

        Once this returns, the users' purchases and dislikes are left out of
        their next answer by every worker and server: their cached histories
        are stale. Events the store already held (by event_id) are not
        stored again.

        Returns:
            How many events were stored, and how many were already known.

        Raises:
            UnknownProductError: An event names a product not in the catalog;
                nothing is written.
            EventIdConflictError: An event_id names another event; nothing is written.
        """
        ingested = self.store.ingest(events)
        self.service.forget_histories(event.user_id for event in events)
        EVENTS_INGESTED.labels("1").inc(ingested.purchases)
        EVENTS_INGESTED.labels("0").inc(ingested.new - ingested.purchases)
        self.record_events(ingested.new)
        return ingested

    def delete_user(self, user_id: int, deleted_by: str) -> UserDeletion | None:
        """Delete every row about a user and make every process answer them as unknown.

        Once this returns, the user's next request, to any worker or server
        sharing the store and Redis, gets the ``unknown_user`` list: their
        cached answers and histories are stale everywhere, and no live
        version ranks them from a training-time row. The next training
        reads none of their events.

        Args:
            user_id: The user.
            deleted_by: Who asks (an API key's name, or the command line), for the audit.

        Returns:
            The audit record, or None when the store knows nothing of the user.
        """
        if self.exposure_log is not None:
            # Their exposures queued here go first, so the deletion takes them;
            # any queued later (here or elsewhere) is dropped (ErasedUsers).
            self.exposure_log.flush()
        record = self.store.delete_user(user_id, deleted_by)
        if record is not None:
            self.service.forget_deleted_users([user_id], record.deleted_at)
        return record

    def retention_cutoff(self, days: int | None = None) -> datetime | None:
        """Return the moment before which events are past their retention (None: kept for ever).

        Args:
            days: The retention in days; None: ``EVENT_RETENTION_DAYS``.
        """
        if days is None:
            days = self.settings.store.event_retention_days
        return retention_cutoff(days)

    def prune_events(
        self, before: datetime, on_chunk: Callable[[int, int], object] | None = None
    ) -> tuple[int, PrunedExposures]:
        """Delete the events, A/B exposures and linked events from before a moment.

        In short transactions. Every cached history and answer is made stale
        afterwards, in every process: pruned events no longer count in
        anyone's list.

        Returns:
            How many events went, and how many exposures and linked events.
        """
        deleted = self.store.prune_events(before, on_chunk=on_chunk)
        if deleted:
            self.service.forget_everything()
        return deleted, self.store.prune_exposures(before)

    def _serve_version(self, version: str) -> None:
        # A worker published it: serve it (or a newer one) unless already live.
        self.refresher.serve_version(version)

    def _serve_published(self, meta: ArtifactMetadata) -> None:
        self.refresher.serve_published(meta)
