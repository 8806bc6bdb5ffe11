"""Training out of the serving process: jobs queued in the database, run by a worker.

With ``TRAINING_MODE=worker`` a server does not train. ``POST /admin/retrain``
and the automatic triggers enqueue a job record (``QueuedTrainingJobs``, the
same interface and states as ``TrainingJobRunner``), and a separate process,
``flask --app app worker``, claims queued jobs one at a time
(``TrainingWorker``) and runs each as a server's runner would
(``Trainer.execute``: train, publish, record). Servers serve the new version
as they serve any version another process published: their refresh poller,
or at once when they report the job succeeded. A long training then takes CPU
from no request (the worker also lowers its own scheduling priority), and a
queued job outlives a server restart: only the worker runs it.

Two workers never run one job: claiming is an update only one of them can
win (``recsys.store.job_queue``). The training lock still keeps one training
at a time across workers and ``flask train``. A claim is a lease the worker
renews (``Heartbeat``) from the claim until its training ends: a job left
``running`` by a worker that was killed is failed by a live worker's next
poll after the lease (``JOB_LEASE_SECONDS``), or by the next retrain request,
so within the lease plus ``WORKER_POLL_SECONDS`` of the death; the next start
(server or worker) that finds the lock free fails it too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from recsys.store.engine import STORE_OUTAGES, describe_outage
from recsys.store.job_queue import JobQueue, JobState, TrainingJob
from recsys.training.jobs import RetrainInProgressError, Trainer

logger = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``beat`` every period on a thread, until the block ends.

    A worker holds a claimed job's lease with it: the lease is renewed while
    the process lives, whatever the training thread is doing, and lapses when
    the process dies. A failing beat (the database is down) is logged, and
    the next period tries again.

    Args:
        beat: Renews the lease; returns False when the lease was lost (the
            job was failed by another process meanwhile).
        period: Seconds between beats (a third of the lease leaves two
            missed beats of slack).
        name: The thread's name.
    """

    def __init__(self, beat: Callable[[], bool], period: float, name: str = "heartbeat"):
        self._beat = beat
        self._period = period
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, daemon=True, name=self._name)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._beat_logging_errors()

    def _beat_logging_errors(self) -> None:
        try:
            alive = self._beat()
        except Exception:
            logger.warning("could not renew a training job's lease", exc_info=True)
            return
        if not alive and not self.lost:
            self.lost = True
            logger.warning("a training job's lease was lost: another process failed the job")


class QueuedTrainingJobs:
    """A server's view of jobs run by workers: submit enqueues, get reads the record.

    Args:
        queue: Where jobs are enqueued and their records read.
        on_succeeded: Called with a succeeded job's version when this
            process reports it, so the reporting server already serves it.
        poll_seconds: How often ``wait`` reads the record.
    """

    def __init__(
        self,
        queue: JobQueue,
        on_succeeded: Callable[[str], object] | None = None,
        poll_seconds: float = 0.2,
    ):
        self._queue = queue
        self._on_succeeded = on_succeeded
        self._poll_seconds = poll_seconds

    def submit(self, trigger: str = "api") -> TrainingJob:
        """Queue a training job for a worker.

        Raises:
            RetrainInProgressError: A job is already queued or running.
        """
        job = TrainingJob(
            id=uuid.uuid4().hex,
            state=JobState.QUEUED,
            trigger=trigger,
            requested_at=datetime.now(UTC),
        )
        blocking = self._queue.enqueue(job)
        if blocking is not None:
            raise RetrainInProgressError(blocking)
        return job

    def get(self, job_id: str) -> TrainingJob | None:
        """Return a job's recorded snapshot, or None."""
        job = self._queue.get(job_id)
        if job is None:
            return None
        if job.state is JobState.SUCCEEDED and job.version and self._on_succeeded is not None:
            self._on_succeeded(job.version)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> TrainingJob | None:
        """Block until the job has finished (or the timeout passes) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            finished = job is None or job.state.finished
            if finished or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(self._poll_seconds)

    def wait_all(self, timeout: float | None = None) -> None:
        """Return at once: this process runs no job."""


class TrainingWorker:
    """Claims queued jobs and runs them, one at a time, in this process.

    Args:
        trainer: Trains, under the training lock shared with servers and
            ``flask train`` (its poll is how often a claimed job tries the lock).
        queue: Where jobs are claimed and their records written.
        poll_seconds: How long to sleep when no job is queued.
    """

    def __init__(self, trainer: Trainer, queue: JobQueue, poll_seconds: float = 2.0):
        self._trainer = trainer
        self._queue = queue
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()

    def run_once(self) -> TrainingJob | None:
        """Run the oldest queued job, if one can be claimed now.

        Waits for the training lock when ``flask train`` or another worker
        holds it (the claimed job stays ``running`` meanwhile).

        Returns:
            The finished job, or None when no job was claimed (or ``stop``
            was called while it waited for the lock).
        """
        job = self._queue.claim_next()
        if job is None:
            return None
        logger.info("training job %s claimed (trigger %s)", job.id, job.trigger)
        lease = Heartbeat(
            lambda: self._queue.beat(job.id),
            self._queue.lease_seconds / 3,
            name=f"lease-{job.id[:8]}",
        )
        finished = self._trainer.execute(job, self._queue.save, self._holding(lease))
        if finished is not None and lease.lost:
            # Recorded all the same: the record says what really happened
            # (a succeeded job's version is published and served).
            logger.warning(
                "training job %s ended %s after another process failed it for a lapsed lease",
                job.id,
                finished.state.value,
            )
        return finished

    @contextlib.contextmanager
    def _holding(self, lease: Heartbeat) -> Iterator[None]:
        # Beats from the claim: a job waiting for the training lock is held too.
        with lease, self._trainer.held(until=self._stop):
            yield

    def run_forever(self) -> None:
        """Run queued jobs until ``stop`` is called; sleep between polls when idle.

        An outage of the database does not end the worker: it says so once,
        in one line, polls on, and says when the database answers again.
        """
        outage: str | None = None
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except STORE_OUTAGES as exc:
                reason = describe_outage(exc)
                if reason != outage:
                    logger.warning(
                        "could not claim or record a training job: %s; trying again every %g s",
                        reason,
                        self._poll_seconds,
                    )
                outage, ran = reason, None
            except Exception:
                logger.exception("could not claim or record a training job")
                ran = None
            else:
                if outage is not None:
                    logger.info("the event store answers again: training jobs are claimed")
                    outage = None
            if ran is None:
                self._stop.wait(self._poll_seconds)

    def stop(self) -> None:
        """Make ``run_forever`` return after the current job."""
        self._stop.set()
