"""What the dashboard and ``GET /stats`` show: the store's figures and charts, the live model.

The figures are the EDA report's (``recsys.data.eda.eda_summary``) computed on
the event store, and the charts are the report's (``recsys.data.charts``).
Reading every interaction and drawing costs far more than an answer, so a
``StoreStats`` keeps one snapshot per process for ``ttl_seconds``: the page,
its charts and ``/stats`` then show the same numbers, at most that old.
Charts are drawn on first request and kept with their snapshot.

Nothing here imports Flask; ``recsys.web.dashboard`` renders it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recsys.data.charts import chart_names, render_chart
from recsys.data.eda import eda_summary
from recsys.data.timestamps import utc_now
from recsys.experiments import NoSuchExperimentError
from recsys.online import (
    NoLiveModelError,
    RecommendationAnswer,
    RecommendationService,
    RecommendRequest,
)
from recsys.runtime.wiring import ServingRuntime
from recsys.store.artifacts import ModelRegistry
from recsys.store.events import EventStore, HistoryEntry
from recsys.training import describe_gate

# How old the figures may be: a retrain-free page view must not read the whole store.
STATS_TTL_SECONDS = 30.0
# A user's latest interactions shown beside their recommendations.
HISTORY_SHOWN = 20
# Products listed by a lookup.
LOOKUP_LIST_LENGTH = 10


@dataclass
class StoreSnapshot:
    """The store's figures at one moment, and the charts drawn from them so far.

    Attributes:
        summary: ``eda_summary`` of every interaction, named by the store's catalog.
        taken_at: When it was read (ISO-8601 UTC).
        chart_names: The charts this data has (the heatmap needs categories).
    """

    summary: dict[str, Any]
    taken_at: str
    chart_names: tuple[str, ...]
    interactions: pd.DataFrame = field(repr=False)
    catalog: pd.DataFrame = field(repr=False)
    _charts: dict[str, bytes] = field(default_factory=dict, repr=False)
    _draw_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_empty(self) -> bool:
        """Whether the store holds no interaction (then there is nothing to draw)."""
        return self.summary["interactions"] == 0

    def chart(self, name: str) -> bytes | None:
        """Return a chart as PNG bytes, drawn once per snapshot; None when it has no data."""
        if self.is_empty or name not in self.chart_names:
            return None
        with self._draw_lock:
            if name not in self._charts:
                self._charts[name] = render_chart(name, self.interactions, self.catalog)
            return self._charts[name]


class StoreStats:
    """One process's cached snapshot of the event store's figures.

    Args:
        store: The event store.
        ttl_seconds: How long a snapshot is served before the store is read again.
        clock: Seconds from any fixed point (tests pass their own).
    """

    def __init__(
        self,
        store: EventStore,
        ttl_seconds: float = STATS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._snapshot: StoreSnapshot | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def snapshot(self) -> StoreSnapshot:
        """Return the current snapshot, reading the store when the last is too old.

        Raises:
            One of ``STORE_OUTAGES`` when the store must be read and cannot be.
        """
        with self._lock:  # one reader at a time: the others wait for its snapshot
            now = self.clock()
            if self._snapshot is None or now - self._read_at >= self.ttl_seconds:
                self._snapshot = self._read()
                self._read_at = now
            return self._snapshot

    def _read(self) -> StoreSnapshot:
        interactions = self.store.interactions_frame()
        catalog = self.store.products_frame()
        return StoreSnapshot(
            summary=eda_summary(interactions, catalog),
            taken_at=utc_now().replace(microsecond=0).isoformat() + "Z",
            chart_names=chart_names(catalog),
            interactions=interactions,
            catalog=catalog,
        )


def live_model_summary(service: RecommendationService) -> dict[str, Any] | None:
    """Return what the dashboard shows of the live model, or None when none is live.

    Returns:
        ``version``, ``model_type``, ``trained_at``, ``selected_by``, the offline
        ``metrics`` measured at training, and for an automatic selection its
        ``selection_reason`` and each candidate's metrics (``candidates``).
    """
    try:
        meta = service.metadata
    except NoLiveModelError:
        return None
    selection = meta.selection or {}
    return {
        "version": meta.version,
        "model_type": meta.model_type,
        "trained_at": meta.trained_at,
        "selected_by": meta.selected_by,
        "metrics": dict(meta.metrics),
        "selection_reason": selection.get("reason"),
        "candidates": selection.get("candidates"),
    }


def last_gate_decision(registry: ModelRegistry) -> dict[str, Any] | None:
    """Return the quality gate's last decision, or None when it has judged no version yet.

    Returns:
        The judged version (``version``, ``model_type``, ``trained_at``), the
        gate's record (``decision``, ``metric``, ``tolerance``, ``candidate``,
        ``live``, ``live_version``, ``least``, ``split``, ``reason``) and that
        record in one line (``summary``). A rejected version is on the
        registry's rejected shelf: it never served.
    """
    meta = registry.last_gate_decision()
    if meta is None:
        return None
    return {
        "version": meta.version,
        "model_type": meta.model_type,
        "trained_at": meta.trained_at,
        **meta.gate,
        "summary": describe_gate(meta.gate),
    }


def running_experiment_report(runtime: ServingRuntime) -> Mapping[str, Any] | None:
    """Return the report of the A/B experiment running now, or None when none runs.

    The dashboard and ``/stats`` show it, and nothing when it is None. The
    report is read from the store on each call (the dashboard is not on the
    request path of the shop).

    Raises:
        One of ``STORE_OUTAGES`` when the database is unavailable.
    """
    running = runtime.experiments.running
    if running is None:
        return None
    try:
        return runtime.experiments.report(running.experiment.name)
    except NoSuchExperimentError:
        return None  # stopped and removed between the two reads


def stats(runtime: ServingRuntime, store_stats: StoreStats) -> dict[str, Any]:
    """Return the body of ``GET /stats``: the dashboard's numbers as JSON."""
    snapshot = store_stats.snapshot()
    experiment = running_experiment_report(runtime)
    return {
        "computed_at": snapshot.taken_at,
        "data": snapshot.summary,
        "model": live_model_summary(runtime.service),
        "gate": last_gate_decision(runtime.registry),
        "experiment": dict(experiment) if experiment is not None else None,
    }


@dataclass(frozen=True)
class UserLookup:
    """A user's latest interactions beside the list the service answers them with.

    Attributes:
        user_id: The user.
        history: Their latest interactions, newest first (empty for a user never seen).
        names: Product id -> name (None: shown by id) for the history's products.
        answer: What ``GET /recommend`` answers: strategy, fallback reason, products.
    """

    user_id: int
    history: list[HistoryEntry]
    names: dict[int, str | None]
    answer: RecommendationAnswer


def lookup_user(runtime: ServingRuntime, user_id: int) -> UserLookup:
    """Return a user's history and recommendations, as the dashboard shows them.

    Raises:
        NoLiveModelError: No model is live.
    """
    answer = runtime.service.recommend(RecommendRequest(user_id, LOOKUP_LIST_LENGTH))
    history = runtime.store.user_interactions(user_id, HISTORY_SHOWN)
    names = runtime.service.live.current().names
    return UserLookup(
        user_id,
        history,
        {entry.product_id: names.get(entry.product_id, (None, None))[0] for entry in history},
        answer,
    )
