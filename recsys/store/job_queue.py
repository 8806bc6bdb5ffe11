"""Training job records, and the queue of jobs for training workers in other processes.

``TrainingJob`` is one job's snapshot. ``JobQueue`` owns the ``training_jobs``
table: every job's record (``queued``, ``running``, ``succeeded``,
``rejected`` by the quality gate, ``failed``), written by whoever runs the job
and read by every server that reports on it, and, with training in workers,
the queue. A server enqueues a job only when none is queued or running
(checked and inserted under a lock, so two servers cannot both enqueue), and a
worker claims the oldest queued job with ``UPDATE ... SET state = 'running'
WHERE id = :id AND state = 'queued'``: the database lets exactly one such
update change the row, so two workers never run one job.

A claim is a lease: the worker holding the job sets ``heartbeat_at`` to now
every third of the lease (``beat``), and a running job whose last beat is
older than the lease is failed (``fail_expired``): its worker was killed or
lost the database. Every claim and every enqueue fails such jobs first, in
the same transaction, so a dead worker's job leaves ``running`` at the next
poll of a live worker after the lease, or at the next retrain request,
whichever comes first. A job without a beat (claimed before leases existed)
never expires here; the start-up close of orphaned jobs still covers it.
Leases compare the clocks of the processes that beat and expire, so their
hosts' clocks must agree to well within the lease (NTP does).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.data.timestamps import format_utc, to_naive_utc, utc_now
from recsys.store.tables import training_jobs

logger = logging.getLogger(__name__)

UNFINISHED = ("queued", "running")
# What a job record says when the process running it ended mid-job.
INTERRUPTED = "interrupted: the training process ended"
# What a job record says when its worker stopped beating.
LEASE_EXPIRED = "interrupted: the training worker stopped reporting (its lease expired)"
DEFAULT_LEASE_SECONDS = 60.0
# pg_advisory_xact_lock key of enqueueing (the start-up lock has its own).
_ENQUEUE_LOCK_KEY = 0x5EC5_0B5


class JobState(StrEnum):
    """Where a training job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # Trained, but the quality gate kept the version from going live.
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, rejected or failed)."""
        return self.value not in UNFINISHED


@dataclass(frozen=True)
class TrainingJob:
    """A snapshot of one training job.

    Attributes:
        id: The job id.
        state: queued, running, succeeded, rejected or failed.
        trigger: Who asked for it: ``api`` (POST /admin/retrain), ``auto`` (after N new
            events) or ``schedule`` (every T minutes).
        requested_at: When it was submitted.
        started_at: When training began.
        finished_at: When it ended.
        version: The model version it published (or, rejected, kept on the
            registry's rejected shelf).
        metrics: That version's offline metrics.
        error: Why it failed.
        gate: The quality gate's record: decision, metric, tolerance, the
            candidate's and the live version's figures, the split, why.
    """

    id: str
    state: JobState
    trigger: str
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    gate: dict[str, Any] | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Return how long it ran (so far, while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return round((end - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        """Return the job as JSON-able data."""

        return {
            "job_id": self.id,
            "state": self.state.value,
            "trigger": self.trigger,
            "requested_at": format_utc(self.requested_at),
            "started_at": format_utc(self.started_at),
            "finished_at": format_utc(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "version": self.version,
            "metrics": self.metrics,
            "error": split_failure(self.error),
            "gate": self.gate,
        }


def split_failure(error: str | None) -> dict[str, str] | None:
    """Return a recorded failure as ``{"code", "message"}`` (the API's error shape)."""
    if error is None:
        return None
    code, _, message = error.partition(": ")
    if not message or not code.replace("_", "").isalpha():
        return {"code": "training_failed", "message": error}
    return {"code": code, "message": message}


class JobQueue:
    """Save, read, enqueue, claim and close training job records.

    Args:
        engine: The store's engine (schema migrated).
        lease_seconds: How long a claimed job stays running without a beat.
    """

    def __init__(self, engine: Engine, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.engine = engine
        self.lease_seconds = lease_seconds

    def _write(self):
        conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            # IMMEDIATE: the write lock is taken at BEGIN, so the check and
            # the insert of enqueue() see no other writer in between.
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return conn

    def save(self, job: TrainingJob) -> None:
        """Insert or replace one job's record (a claimed job keeps its beat)."""
        values = _row(job)
        with self._write() as conn, conn.begin():
            updated = conn.execute(
                training_jobs.update().where(training_jobs.c.id == values["id"]), values
            )
            if updated.rowcount == 0:
                conn.execute(training_jobs.insert(), values)

    def get(self, job_id: str) -> TrainingJob | None:
        """Return one job's recorded snapshot, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(training_jobs).where(training_jobs.c.id == job_id))
                .mappings()
                .first()
            )
        return None if row is None else _job(row)

    def enqueue(self, job: TrainingJob) -> str | None:
        """Insert a queued job unless one is queued or running.

        Args:
            job: A job in state ``queued``.

        Returns:
            None when the job was queued; else the id of the unfinished job
            that kept it out.
        """
        values = _row(job)
        with self._write() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ENQUEUE_LOCK_KEY}
                )
            self._fail_expired(conn)
            blocking = conn.execute(
                sa.select(training_jobs.c.id)
                .where(training_jobs.c.state.in_(UNFINISHED))
                .order_by(training_jobs.c.requested_at)
                .limit(1)
            ).scalar()
            if blocking is not None:
                return str(blocking)
            conn.execute(training_jobs.insert(), values)
        return None

    def claim_next(self) -> TrainingJob | None:
        """Mark the oldest queued job running and return it, or None if none is queued.

        Running jobs whose lease expired are failed first.

        Returns:
            The claimed job (running from now, its beat set); None when no job
            was queued or another worker claimed it first.
        """
        with self._write() as conn, conn.begin():
            self._fail_expired(conn)
            job_id = conn.execute(
                sa.select(training_jobs.c.id)
                .where(training_jobs.c.state == "queued")
                .order_by(training_jobs.c.requested_at)
                .limit(1)
            ).scalar()
            if job_id is None:
                return None
            now = utc_now()
            claimed = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.id == job_id, training_jobs.c.state == "queued")
                .values(state="running", started_at=now, heartbeat_at=now)
            )
            if claimed.rowcount != 1:
                return None
            row = conn.execute(
                sa.select(training_jobs).where(training_jobs.c.id == job_id)
            ).mappings()
            return _job(row.one())

    def beat(self, job_id: str) -> bool:
        """Renew the lease of a running job (its worker is alive).

        Returns:
            Whether the job is still running; False when it was failed
            meanwhile (its lease expired) or is gone.
        """
        with self._write() as conn, conn.begin():
            result = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.id == job_id, training_jobs.c.state == "running")
                .values(heartbeat_at=utc_now())
            )
            return result.rowcount == 1

    def fail_expired(self) -> int:
        """Mark failed the running jobs whose worker has not beaten for a lease.

        Returns:
            How many records were changed.
        """
        with self._write() as conn, conn.begin():
            return self._fail_expired(conn)

    def _fail_expired(self, conn: Connection) -> int:
        now = utc_now()
        result = conn.execute(
            training_jobs.update()
            .where(
                training_jobs.c.state == "running",
                training_jobs.c.heartbeat_at < now - timedelta(seconds=self.lease_seconds),
            )
            .values(state="failed", error=LEASE_EXPIRED, finished_at=now)
        )
        if result.rowcount:
            logger.warning(
                "failed %d training job(s) whose worker stopped beating for %g s",
                result.rowcount,
                self.lease_seconds,
            )
        return result.rowcount

    def fail_unfinished(self, reason: str, keep_queued: bool = False) -> int:
        """Mark unfinished jobs failed (call only while holding the training lock: none runs).

        Args:
            reason: The records' error, ``"<code>: <message>"``.
            keep_queued: Fail running jobs alone: with training in workers,
                a queued job waits for a worker, not for its dead server.

        Returns:
            How many records were changed.
        """
        states = ["running"] if keep_queued else list(UNFINISHED)
        with self._write() as conn, conn.begin():
            result = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.state.in_(states))
                .values(state="failed", error=reason, finished_at=utc_now())
            )
            return result.rowcount


def _row(job: TrainingJob) -> dict[str, Any]:
    """Return a job as a row of ``training_jobs`` (datetimes as naive UTC)."""
    values = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    values["state"] = job.state.value
    if job.gate is None:
        # Only a finished job has a gate record: the others leave the column
        # out, so a record can still be written to a schema from before it.
        del values["gate"]
    return {k: to_naive_utc(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _job(row: Mapping[Any, Any]) -> TrainingJob:
    """Return a job from its row of ``training_jobs`` (datetimes as aware UTC)."""
    values = {
        f.name: row[f.name].replace(tzinfo=UTC)
        if isinstance(row[f.name], datetime)
        else row[f.name]
        for f in dataclasses.fields(TrainingJob)
    }
    values["state"] = JobState(values["state"])
    return TrainingJob(**values)
