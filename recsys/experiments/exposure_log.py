"""The exposure log: lists served inside an A/B test, written in batches off the request path.

A request only appends a row to an in-memory queue (a few microseconds); a
background thread writes whatever has queued every ``flush_seconds`` (or as
soon as ``batch_size`` rows wait) in one multi-row insert. A full queue drops
the row and counts it, so a slow database never slows or blocks answers.
Events posted with a ``recommendation_id`` take the same road.

The price of this: rows queued when a process dies are lost
(``recsys_exposures_dropped_total`` counts what is dropped deliberately), and
a report sees a row up to ``flush_seconds`` after it was served. ``flush``
writes everything queued now (the report and the tests call it).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from recsys.experiments.records import ExperimentStore
from recsys.store.engine import STORE_OUTAGES

logger = logging.getLogger(__name__)

EXPOSURES_WRITTEN = Counter("recsys_exposures_written", "Exposure-log rows written", ["table"])
EXPOSURES_DROPPED = Counter(
    "recsys_exposures_dropped",
    "Exposure-log rows dropped (queue full or database unavailable)",
    ["table"],
)

EXPOSURE = "exposures"
LINKED_EVENT = "exposure_events"


class ExposureLog:
    """Queues exposure rows and linked events, and writes them in batches.

    Args:
        store: Where the rows go.
        batch_size: Rows that make the writer write at once.
        flush_seconds: The longest a row waits when fewer are queued.
        max_queued: Rows kept waiting at most; past it new rows are dropped.
        forgets: Whether a user was deleted after a moment (``ErasedUsers.deleted_since``):
            a row of theirs queued before their deletion is dropped, never
            written after it. None: no user is ever deleted.
    """

    def __init__(
        self,
        store: ExperimentStore,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        max_queued: int = 100_000,
        forgets: Callable[[int, datetime], bool] | None = None,
    ):
        self.store = store
        self.forgets = forgets
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[tuple[str, Mapping[str, Any]]] = queue.Queue(max_queued)
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def record(self, row: Mapping[str, Any]) -> None:
        """Queue one served list (``exposures`` columns); never blocks."""
        self._put(EXPOSURE, row)

    def record_event(self, row: Mapping[str, Any]) -> None:
        """Queue one event posted with a recommendation id (``exposure_events`` columns)."""
        self._put(LINKED_EVENT, row)

    def _put(self, table: str, row: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait((table, row))
        except queue.Full:
            EXPOSURES_DROPPED.labels(table).inc()
            return
        if self._queue.qsize() >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="exposure-log")
            self._thread.start()

    def close(self) -> None:
        """Stop the writer and write what is queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> int:
        """Write every row queued now; return how many were written."""
        written = 0
        with self._flush_lock:
            while True:
                batch = self._take(self.batch_size * 10)
                if not batch:
                    return written
                written += self._write(batch)

    def _take(self, most: int) -> list[tuple[str, Mapping[str, Any]]]:
        taken: list[tuple[str, Mapping[str, Any]]] = []
        while len(taken) < most:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def _write(self, batch: list[tuple[str, Mapping[str, Any]]]) -> int:
        if self.forgets is not None:
            forgets = self.forgets
            batch = [
                (table, row)
                for table, row in batch
                if not forgets(int(row["user_id"]), row.get("served_at") or row["created_at"])
            ]
        exposures = [row for table, row in batch if table == EXPOSURE]
        events = [row for table, row in batch if table == LINKED_EVENT]
        try:
            # Exposures first: an event is only counted with the list it names.
            self.store.add_exposures(exposures)
            self.store.add_exposure_events(events)
        except STORE_OUTAGES as exc:
            logger.warning(
                "exposure log: database unavailable, dropping %d rows: %s",
                len(batch),
                type(exc).__name__,
            )
            EXPOSURES_DROPPED.labels(EXPOSURE).inc(len(exposures))
            EXPOSURES_DROPPED.labels(LINKED_EVENT).inc(len(events))
            return 0
        EXPOSURES_WRITTEN.labels(EXPOSURE).inc(len(exposures))
        EXPOSURES_WRITTEN.labels(LINKED_EVENT).inc(len(events))
        return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                # A bad row must not end the writer; the next batch tries again.
                logger.exception("exposure log: could not write a batch")
