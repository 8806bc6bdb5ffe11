"""Impressions: the products each answer shows, counted in process and summed in the store.

A request adds its list to an in-memory counter (a dictionary update under a
lock: microseconds). ``sync``, run every few seconds by a background thread
of each serving process (``recsys.runtime``), adds what was counted since the
last sync to the store's totals in one upsert and reads every total back, so
that each process sees what all workers and servers showed, a period late.
When the store is down the counts wait in memory for the next sync.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable

from prometheus_client import Counter as PrometheusCounter

from recsys.store.engine import STORE_OUTAGES
from recsys.store.impressions import ImpressionCounts

logger = logging.getLogger(__name__)

IMPRESSIONS = PrometheusCounter(
    "recsys_impressions", "Products shown in answers (exploration's exposure counts)"
)


class ImpressionCounter:
    """Counts the products shown in this process and adds them to the store's totals.

    Args:
        store: Where every process's counts are summed.
    """

    def __init__(self, store: ImpressionCounts):
        self.store = store
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()

    def count(self, product_ids: Iterable[int]) -> None:
        """Count one impression of each product (one answer's list); never touches the store."""
        # Pending counts stay bounded by the catalog: one entry per product shown.
        ids = list(product_ids)
        with self._lock:
            self._pending.update(ids)
        IMPRESSIONS.inc(len(ids))

    def sync(self) -> dict[int, int]:
        """Add this process's new counts to the store and return every product's total.

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable (the counts
            stay pending for the next sync).
        """
        with self._sync_lock:
            with self._lock:
                taken, self._pending = self._pending, Counter()
            try:
                self.store.add(taken)
            except STORE_OUTAGES:
                with self._lock:
                    self._pending.update(taken)
                raise
            return self.store.totals()
