"""Training jobs as a queue in the database, for training workers in other processes.

The ``training_jobs`` table already records every job (``queued``,
``running``, ``succeeded``, ``failed``); here it is also the queue. A server
enqueues a job only when none is queued or running (checked and inserted
under a lock, so two servers cannot both enqueue), and a worker claims the
oldest queued job with ``UPDATE ... SET state = 'running' WHERE id = :id AND
state = 'queued'``: the database lets exactly one such update change the row,
so two workers never run one job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.timestamps import to_naive_utc, utc_now
from recsys.store.tables import training_jobs

UNFINISHED = ("queued", "running")
# pg_advisory_xact_lock key of enqueueing (the start-up lock has its own).
_ENQUEUE_LOCK_KEY = 0x5EC5_0B5


class JobQueue:
    """Enqueue, claim and close training job records.

    Args:
        engine: The store's engine (schema migrated).
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def _write(self):
        conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            # IMMEDIATE: the write lock is taken at BEGIN, so the check and
            # the insert of enqueue() see no other writer in between.
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return conn

    def enqueue(self, record: Mapping[str, Any]) -> str | None:
        """Insert a queued job unless one is queued or running.

        Args:
            record: Every column of ``training_jobs``; state ``queued``.

        Returns:
            None when the job was queued; else the id of the unfinished job
            that kept it out.
        """
        values = {k: to_naive_utc(v) if isinstance(v, datetime) else v for k, v in record.items()}
        with self._write() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ENQUEUE_LOCK_KEY}
                )
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

    def claim_next(self) -> dict[str, Any] | None:
        """Mark the oldest queued job running and return its record, or None if none is queued.

        Returns:
            The claimed record (with ``started_at`` set); None when no job was
            queued or another worker claimed it first.
        """
        with self._write() as conn, conn.begin():
            job_id = conn.execute(
                sa.select(training_jobs.c.id)
                .where(training_jobs.c.state == "queued")
                .order_by(training_jobs.c.requested_at)
                .limit(1)
            ).scalar()
            if job_id is None:
                return None
            claimed = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.id == job_id, training_jobs.c.state == "queued")
                .values(state="running", started_at=utc_now())
            )
            if claimed.rowcount != 1:
                return None
            row = conn.execute(
                sa.select(training_jobs).where(training_jobs.c.id == job_id)
            ).mappings()
            return dict(row.one())

    def fail_running(self, reason: str) -> int:
        """Mark running jobs failed (call only while holding the training lock: none runs).

        Queued jobs stay queued: a worker will run them.

        Returns:
            How many records were changed.
        """
        with self._write() as conn, conn.begin():
            result = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.state == "running")
                .values(state="failed", error=reason, finished_at=utc_now())
            )
            return result.rowcount
