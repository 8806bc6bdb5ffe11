"""Training jobs: one at a time across processes, one lifecycle, with records.

``Trainer`` is the one way into training: it holds the ``TrainingLock``
(one process trains at a time) and runs a job's lifecycle (``execute``: mark
it running, train, publish, record how it ended: ``succeeded``, ``failed``,
or ``rejected`` when the quality gate kept the version from going live), the same in this process's
``TrainingJobRunner`` (a background thread) and in a training worker
(``recsys.training.worker``). ``AutoRetrainer`` submits jobs after N new
events, or when the last training is T minutes old.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Histogram

from recsys.errors import RecsysError
from recsys.store.artifacts import ArtifactMetadata
from recsys.store.engine import STORE_OUTAGES
from recsys.store.job_queue import INTERRUPTED, JobQueue, JobState, TrainingJob
from recsys.training.train import NoTrainingDataError

logger = logging.getLogger(__name__)

RETRAIN_SECONDS = Histogram(
    "recsys_retrain_duration_seconds",
    "How long training jobs took, from start to the new version served (or the failure)",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
RETRAIN_FAILURES = Counter("recsys_retrain_failures", "Training jobs that failed")


class RetrainInProgressError(RecsysError):
    """A training job is already queued or running, here or in another process.

    Args:
        job_id: The id of this process's running job; None when another
            process (a server worker, ``flask train``) holds the training lock.
    """

    def __init__(self, job_id: str | None):
        self.job_id = job_id
        who = f"training job {job_id} is" if job_id else "another process is"
        super().__init__(f"{who} still training; one retrain at a time")


def public_failure(exc: Exception, job_id: str) -> str:
    """Return what a job record says about a failure: ``"<code>: <short message>"``."""
    if isinstance(exc, STORE_OUTAGES):
        return "store_unavailable: the event store was unavailable; retry later"
    if isinstance(exc, NoTrainingDataError):
        return f"no_training_data: {exc}"
    return f"training_failed: training failed; the server log has the details (job {job_id})"


class TrainingLock:
    """An exclusive, non-blocking lock on a file, held by one process at a time.

    Server workers and ``flask train`` share one artifact directory; taking
    this lock before training keeps them to one retrain at a time. The
    operating system releases it when the holder exits, even on SIGKILL.

    Args:
        path: The lock file (created when missing).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._mutex = threading.Lock()

    def try_acquire(self) -> bool:
        """Take the lock if it is free; return whether it was taken."""
        with self._mutex:
            if self._fd is not None:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        """Give the lock back (a no-op when it is not held)."""
        with self._mutex:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None


class JobSubmitter(Protocol):
    """What submits training jobs: ``TrainingJobRunner`` here, or a queue for workers."""

    def submit(self, trigger: str = "api") -> TrainingJob: ...


class Trainer:
    """The one way into training: trains and publishes under the training lock.

    ``held`` is the one place the lock is taken. Everything that trains goes
    through it: a job (``execute``, in this process's runner or in a worker),
    training at once (``now``: ``flask train``, the first model, an
    experiment's variant), and the close of job records a dead process left
    open, which is safe only while no process trains.

    Args:
        train: Trains and publishes the configured model, returning its metadata.
        lock: Shared by every process on the artifact directory; None: no
            other process trains there.
        poll_seconds: How often a waiting ``held`` tries the lock again.
    """

    def __init__(
        self,
        train: Callable[[], ArtifactMetadata],
        lock: TrainingLock | None = None,
        poll_seconds: float = 1.0,
    ):
        self._train = train
        self._lock = lock
        self._poll_seconds = poll_seconds

    @contextlib.contextmanager
    def held(self, until: threading.Event | None = None) -> Iterator[None]:
        """Hold the training lock for the block.

        Args:
            until: Wait for the lock until this event is set; None: do not wait.

        Raises:
            RetrainInProgressError: Another process holds the lock (and, when
                waiting, ``until`` was set before it was free).
        """
        if self._lock is not None:
            while not self._lock.try_acquire():
                if until is None or until.wait(self._poll_seconds):
                    raise RetrainInProgressError(None)
        try:
            yield
        finally:
            if self._lock is not None:
                self._lock.release()

    def now(self, train: Callable[[], ArtifactMetadata] | None = None) -> ArtifactMetadata:
        """Train and publish now, unless another process or job is training.

        Args:
            train: What to train instead of the configured model (an
                experiment's variant, a progress bar).

        Raises:
            RetrainInProgressError: The training lock is held.
        """
        with self.held():
            return (train or self._train)()

    def close_orphaned(self, queue: JobQueue, keep_queued: bool) -> int:
        """Fail the job records a dead process left unfinished; 0 while a process trains.

        Only when no process holds the training lock: then no job can really
        be running, whatever its record says.

        Args:
            queue: Where the records are.
            keep_queued: Leave queued jobs alone (a worker will run them).

        Returns:
            How many records were closed.
        """
        try:
            with self.held():
                return queue.fail_unfinished(INTERRUPTED, keep_queued=keep_queued)
        except RetrainInProgressError:
            return 0

    def execute(
        self,
        job: TrainingJob,
        record: Callable[[TrainingJob], None],
        turn: contextlib.AbstractContextManager[object],
        on_published: Callable[[ArtifactMetadata], None] | None = None,
    ) -> TrainingJob | None:
        """Run one job: take its turn at the lock, train, publish, and record how it ended.

        Args:
            job: A queued job, marked running here, or one a worker claimed
                (already running).
            record: Writes the job's record (when it starts and when it ends).
            turn: What the job holds while it trains: the training lock
                (``held(...)``, or one already taken: ``submit`` takes it to
                refuse at once), and a worker's lease.
            on_published: Called with the metadata after training (to serve
                the new model) before the job is marked succeeded.

        Returns:
            The finished job; None when the wait for the lock was stopped.
        """
        try:
            with turn:
                finished = self._run(job, record, on_published)
        except RetrainInProgressError:
            return None
        # Once the turn is over: a worker's lease no longer beats, so a beat
        # cannot find the job finished and take the lease for lost.
        record(finished)
        return finished

    def _run(
        self,
        job: TrainingJob,
        record: Callable[[TrainingJob], None],
        on_published: Callable[[ArtifactMetadata], None] | None,
    ) -> TrainingJob:
        if job.state is JobState.QUEUED:
            job = dataclasses.replace(job, state=JobState.RUNNING, started_at=datetime.now(UTC))
            record(job)
        started = time.perf_counter()
        try:
            meta = self._train()
            # A rejected version is on the registry's rejected shelf: nothing to serve.
            if on_published is not None and not meta.rejected:
                on_published(meta)
        except Exception as exc:  # a failed job is recorded, not raised
            # The details (driver messages with SQL and hosts) go to the log;
            # the job record, readable over HTTP, gets a code and a short message.
            logger.exception("training job %s failed", job.id)
            RETRAIN_FAILURES.inc()
            RETRAIN_SECONDS.labels("failed").observe(time.perf_counter() - started)
            job = dataclasses.replace(
                job,
                state=JobState.FAILED,
                finished_at=datetime.now(UTC),
                error=public_failure(exc, job.id),
            )
        else:
            job = _ended(job, meta, time.perf_counter() - started)
        return job


def _ended(job: TrainingJob, meta: ArtifactMetadata, seconds: float) -> TrainingJob:
    """Return a job whose training produced ``meta``: succeeded, or rejected by the gate."""
    state = JobState.REJECTED if meta.rejected else JobState.SUCCEEDED
    RETRAIN_SECONDS.labels(state.value).observe(seconds)
    if meta.rejected:
        logger.warning(
            "training job %s: the quality gate rejected %s (%s %s, live %s %s)",
            job.id,
            meta.version,
            meta.gate.get("metric"),
            meta.gate.get("candidate"),
            meta.gate.get("live_version"),
            meta.gate.get("live"),
        )
    else:
        logger.info("training job %s published %s", job.id, meta.version)
    return dataclasses.replace(
        job,
        state=state,
        finished_at=datetime.now(UTC),
        version=meta.version,
        metrics=dict(meta.metrics),
        gate=dict(meta.gate) or None,
    )


class TrainingJobRunner:
    """Runs training jobs on a background thread, one at a time.

    Args:
        trainer: Trains, under the training lock.
        on_published: Called with the metadata after a successful job (to
            swap the live model) before the job is marked succeeded.
        history: How many finished job records to keep in memory.
        records: Where job records are also written, so other processes can
            report on them; a failure to write is logged, never raised.
    """

    def __init__(
        self,
        trainer: Trainer,
        on_published: Callable[[ArtifactMetadata], None] | None = None,
        history: int = 100,
        records: JobQueue | None = None,
    ):
        self._trainer = trainer
        self._records = records
        self._on_published = on_published
        self._history = history
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, TrainingJob] = OrderedDict()
        self._active: str | None = None
        self._threads: dict[str, threading.Thread] = {}

    def submit(self, trigger: str = "api") -> TrainingJob:
        """Start a training job in the background.

        Args:
            trigger: Who asked, recorded on the job.

        Returns:
            The queued job.

        Raises:
            RetrainInProgressError: A job is already queued or running, here
                or in another process.
        """
        with self._lock:
            if self._active is not None:
                raise RetrainInProgressError(self._active)
            # Taken now, so a busy lock is a refusal, not a failed job; the
            # job's thread gives it back.
            turn = contextlib.ExitStack()
            turn.enter_context(self._trainer.held())
            job = TrainingJob(
                id=uuid.uuid4().hex,
                state=JobState.QUEUED,
                trigger=trigger,
                requested_at=datetime.now(UTC),
            )
            self._jobs[job.id] = job
            self._active = job.id
            while len(self._jobs) > self._history:
                self._jobs.popitem(last=False)
            thread = threading.Thread(
                target=self._run, args=(job, turn), daemon=True, name=f"training-{job.id[:8]}"
            )
            self._threads = {job.id: thread}
        self._record(job)
        thread.start()
        return job

    def get(self, job_id: str) -> TrainingJob | None:
        """Return a job's current snapshot (this process's or a recorded one), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None or self._records is None:
            return job
        return self._records.get(job_id)

    def wait_all(self, timeout: float | None = None) -> None:
        """Block until every job this runner started has finished (or the timeout passes)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def wait(self, job_id: str, timeout: float | None = None) -> TrainingJob | None:
        """Block until a job has finished (or the timeout passes) and return it."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    def _run(self, job: TrainingJob, turn: contextlib.ExitStack) -> None:
        try:
            self._trainer.execute(job, self._keep, turn, self._on_published)
        finally:
            with self._lock:
                self._active = None

    def _keep(self, job: TrainingJob) -> None:
        with self._lock:
            if job.id not in self._jobs:
                return
            self._jobs[job.id] = job
        self._record(job)

    def _record(self, job: TrainingJob) -> None:
        if self._records is None:
            return
        try:
            self._records.save(job)
        except Exception:
            # The record is for other processes' eyes; this one keeps serving it.
            logger.warning("could not record training job %s", job.id, exc_info=True)


class AutoRetrainer:
    """Submits a training job after N new events, or when the last training is T minutes old.

    A trigger that fires while a job runs is dropped (the running job will
    include most of the new events). Events are counted by each process. The
    period is measured from ``last_trained``, which every process reads alike
    (the newest version in the registry, rejected ones included): several
    servers and workers then retrain once a period between them, not once
    each, and a rejected version waits a period like a published one.

    Args:
        runner: The job runner (or queue) to submit to.
        every_events: Retrain after this many newly recorded events (None: off).
        every_minutes: Retrain when the last training is this old (None: off).
        last_trained: Returns when the last training finished (None: never);
            without it the period runs from this process's start.
        check_seconds: How often the period is checked, at most (a check
            reads a few small files).
    """

    def __init__(
        self,
        runner: JobSubmitter,
        every_events: int | None = None,
        every_minutes: float | None = None,
        last_trained: Callable[[], datetime | None] | None = None,
        check_seconds: float = 600.0,
    ):
        if every_events is not None and every_events < 1:
            raise ValueError(f"every_events must be at least 1, got {every_events}")
        if every_minutes is not None and every_minutes <= 0:
            raise ValueError(f"every_minutes must be positive, got {every_minutes}")
        self._runner = runner
        self._every_events = every_events
        self._every_minutes = every_minutes
        self._last_trained = last_trained
        self._check_seconds = check_seconds
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def start(self) -> None:
        """Start the periodic trigger, when one is configured."""
        if self._every_minutes is None or self._timer is not None:
            return
        self._timer = threading.Thread(target=self._tick, daemon=True, name="auto-retrain")
        self._timer.start()

    def stop(self) -> None:
        """Stop the periodic trigger."""
        self._stop.set()

    def record_events(self, count: int) -> TrainingJob | None:
        """Count newly recorded events; submit a job when the threshold is reached.

        Returns:
            The submitted job, if this call triggered one.
        """
        if self._every_events is None:
            return None
        with self._lock:
            self._pending += count
            if self._pending < self._every_events:
                return None
            self._pending = 0
        return self._submit("auto")

    def _tick(self) -> None:
        period = (self._every_minutes or 0.0) * 60
        if self._last_trained is None:
            while not self._stop.wait(period):
                self._submit("schedule")
            return
        while not self._stop.wait(min(period, self._check_seconds)):
            if self.due(period):
                self._submit("schedule")

    def due(self, period: float) -> bool:
        """Return whether the last training is at least ``period`` seconds old.

        Never when no model was trained yet: the first one is ``init``'s, or
        comes with the first events.
        """
        try:
            last = self._last_trained() if self._last_trained is not None else None
        except Exception:
            # An unreadable registry must not end the timer: the next check retries.
            logger.warning("could not tell when the model was last trained", exc_info=True)
            return False
        return last is not None and (datetime.now(UTC) - last).total_seconds() >= period

    def _submit(self, trigger: str) -> TrainingJob | None:
        try:
            return self._runner.submit(trigger=trigger)
        except RetrainInProgressError:
            return None
        except STORE_OUTAGES:
            # A queue in the database (training in workers) may be down: the
            # events that triggered this are recorded; a later trigger retries.
            logger.warning("could not queue an automatic retrain: the store is unavailable")
            return None
