"""The live model: one published version ready to answer, and the reference to the current one.

A ``ServingModel`` is one published version ready to answer: the personal
model, its popularity fallback, product names, and the artifact's metadata.
It is immutable; ``LiveModel`` holds one reference to the current one, and a
retrain builds the next completely, then replaces the reference. A request
reads the reference once and uses that version throughout, so it sees one
whole version, never a mix or a half-built model.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Gauge

from recsys.data.ratings import EventWeights
from recsys.data.timestamps import to_naive_utc
from recsys.models.base import EXPLAIN, SIMILAR_ITEMS, Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.profile import Profile
from recsys.models.ranked import RankedList, lookup_ids
from recsys.models.rerank import mmr_order
from recsys.online.answers import Reason, RecommendedProduct
from recsys.store.artifacts import ArtifactMetadata, LoadedArtifact, version_number
from recsys.store.events import UserHistory

logger = logging.getLogger(__name__)

# 1 for the version a process serves, 0 for the one it replaced; under
# gunicorn the maximum over the live workers, so during a swap both show 1.
LIVE_MODEL = Gauge(
    "recsys_model_live",
    "The model version this server answers with (1) and the ones it replaced (0)",
    ["version", "model_type"],
    multiprocess_mode="livemax",
)

_UNNAMED = (None, None)
# Sets of categories whose products each version remembers (per model).
_MAX_CATEGORY_SETS = 256

# Past products named per recommended product when asked to explain.
EXPLAIN_TOP = 3

# Where a history keeps its profile under one version's weights (see ServingModel.profile).
_PROFILE = "_profile"


class NoLiveModelError(RuntimeError):
    """No model version is live yet (``flask --app app init`` has not published one)."""


@dataclass(frozen=True)
class ServingModel:
    """One published version, ready to answer.

    Attributes:
        model: The personal model.
        popularity: The cold-start fallback fitted on the same data.
        names: Product id -> (name, category); missing ids are shown by id only.
        metadata: The artifact's metadata.
        hidden: Products marked unavailable: never ranked, explored, named as
            a reason or listed as similar.
    """

    model: Recommender
    popularity: PopularityRecommender
    names: dict[int, tuple[str | None, str | None]]
    metadata: ArtifactMetadata
    hidden: frozenset[int] = frozenset()
    # Which products are in each asked-for set of categories, per model,
    # computed once per version and catalog (``dataclasses.replace`` starts anew).
    _allowed: dict[tuple[frozenset[str], bool], np.ndarray] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    @property
    def version(self) -> str:
        return self.metadata.version

    @functools.cached_property
    def weights(self) -> EventWeights:
        """Return how events became engagement when this version was trained.

        Fold-in scores a user's history with the same weights, so a user
        whose events have not changed is scored as at training time (a
        version from before event types recorded a click's and a purchase's).
        """
        return EventWeights.from_record(self.metadata.training)

    def profile(self, history: UserHistory) -> Profile:
        """Return the user's products and engagement as this version's weights make them.

        Made once per history: choosing the ranker, folding the user in,
        exploring and explaining all read it. It is kept on the history (an
        immutable object, read once per request) beside its other derived
        values, its arrays read-only since they are shared.
        """
        weights = self.weights
        kept = history.__dict__.get(_PROFILE)
        if kept is not None and (kept[0] is weights or kept[0] == weights):
            return kept[1]
        profile = history.profile(weights)
        profile.engagement.flags.writeable = False
        history.__dict__[_PROFILE] = (weights, profile)
        return profile

    @functools.cached_property
    def training_began(self) -> datetime:
        """Return when this version's training began (naive UTC): it read the events after.

        ``trained_at`` minus the training's seconds; a version that does not
        record them counts as begun at the earliest moment.
        """
        seconds = self.metadata.training.get("seconds")
        try:
            finished = to_naive_utc(datetime.fromisoformat(self.metadata.trained_at))
        except (TypeError, ValueError):
            return datetime.min
        if not isinstance(seconds, int | float):
            return datetime.min
        return finished - timedelta(seconds=float(seconds))

    @functools.cached_property
    def hidden_ids(self) -> np.ndarray:
        """The unavailable products' ids, sorted (an int64 array)."""
        return np.array(sorted(self.hidden), dtype=np.int64)

    def allowed(self, model: Recommender, categories: frozenset[str]) -> np.ndarray | None:
        """Return which of a model's products may be listed: available, in any of ``categories``.

        ``model`` is this version's personal model or its popularity model;
        no categories and no unavailable product allow every product (None).
        """
        if not categories and not self.hidden:
            return None
        key = (categories, model is self.model)
        found = self._allowed.get(key)
        if found is None:
            names = self.names
            if categories:
                found = np.fromiter(
                    (names.get(p, _UNNAMED)[1] in categories for p in model.product_ids.tolist()),
                    dtype=bool,
                    count=len(model.product_ids),
                )
            else:
                found = np.ones(len(model.product_ids), dtype=bool)
            if self.hidden:
                found &= ~np.isin(model.product_ids, self.hidden_ids)
            found.flags.writeable = False
            if len(self._allowed) >= _MAX_CATEGORY_SETS:
                self._allowed.clear()  # requests name arbitrary sets: keep a bounded few
            self._allowed[key] = found
        return found

    @classmethod
    def from_artifact(
        cls,
        artifact: LoadedArtifact,
        catalog: pd.DataFrame | None,
        hidden: frozenset[int] = frozenset(),
    ) -> ServingModel:
        """Build a serving version from a loaded artifact and the freshest catalog at hand.

        Args:
            artifact: The loaded artifact.
            catalog: ``product_id, name, category`` from the store, or None to
                use the catalog saved with the artifact.
            hidden: The products marked unavailable.

        Raises:
            ValueError: The artifact has no popularity model to serve unknown users.
        """
        popularity = artifact.fallback if artifact.fallback is not None else artifact.model
        if not isinstance(popularity, PopularityRecommender):
            raise ValueError(
                f"artifact {artifact.metadata.version} has no popularity fallback to serve "
                "unknown users"
            )
        source = catalog if catalog is not None else artifact.catalog
        names = catalog_names(source) if source is not None else {}
        return cls(artifact.model, popularity, names, artifact.metadata, frozenset(hidden))

    def unknown_products(self, product_ids: Iterable[int]) -> list[int]:
        """Return the ids, in order, that are neither in the catalog nor in the model."""
        names, known = self.names, self.model.product_ids
        unknown = [p for p in product_ids if p not in names]
        if unknown:
            found = lookup_ids(known, np.array(unknown, dtype=np.int64))[1]
            unknown = [p for p, f in zip(unknown, found.tolist(), strict=True) if not f]
        return unknown

    def describe(self, ranked: RankedList) -> list[RecommendedProduct]:
        """Return ranked ids as named products with rounded scores."""
        pairs = zip(ranked.product_ids.tolist(), ranked.scores.tolist(), strict=True)
        return self.describe_pairs(pairs)

    def describe_pairs(self, pairs: Iterable[tuple[int, float]]) -> list[RecommendedProduct]:
        """Return (product id, score) pairs, best first, as named products with rounded scores."""
        names = self.names
        items = []
        for product_id, score in pairs:
            name, category = names.get(product_id, (None, None))
            items.append(RecommendedProduct(product_id, name, category, round(score, 4)))
        return items

    def explain(
        self, model: Recommender, history: UserHistory, ranked: RankedList
    ) -> list[list[Reason]]:
        """Return, per ranked product, the user's past products behind it (top EXPLAIN_TOP).

        ``model`` is the one that ranked the list; one that cannot explain
        (as popularity) names no products.
        """
        if EXPLAIN not in model.capabilities:
            return [[] for _ in ranked.product_ids]
        profile = self.profile(history)
        reasons = []
        hidden = self.hidden
        for product_id in ranked.product_ids.tolist():
            because = model.explain(profile, product_id, EXPLAIN_TOP + len(hidden))
            reasons.append(
                [
                    Reason(int(past), self.names.get(int(past), (None, None))[0], round(w, 4))
                    for past, w in zip(
                        because.product_ids.tolist(), because.scores.tolist(), strict=True
                    )
                    if int(past) not in hidden
                ][:EXPLAIN_TOP]
            )
        return reasons

    def diversify(
        self, ranked: RankedList, model: Recommender, n: int, diversity: float
    ) -> RankedList:
        """Return the n products MMR picks from a ranked list (the first n at diversity 0).

        Similarity is 1 for two products of the same category when the
        catalog names every candidate's category, else the model's item
        similarity; a model with neither keeps its plain ranking.
        """
        if diversity == 0 or len(ranked) <= 1:
            if len(ranked) <= n:
                return ranked  # already the page (a new list would cost a microsecond or two)
            return RankedList(ranked.product_ids[:n], ranked.scores[:n])
        ids = ranked.product_ids
        categories = [self.names.get(int(p), (None, None))[1] for p in ids.tolist()]
        if all(category is not None for category in categories):
            labels = np.array(categories)
            similarity = (labels[:, None] == labels[None, :]).astype(np.float64)
        elif SIMILAR_ITEMS in model.capabilities:
            similarity = model.item_similarities(ids)
        else:
            return RankedList(ids[:n], ranked.scores[:n])
        order = mmr_order(ranked.scores, similarity, n, diversity)
        return RankedList(ids[order], ranked.scores[order])


def catalog_names(catalog: pd.DataFrame) -> dict[int, tuple[str | None, str | None]]:
    """Return product id -> (name, category) from a ``product_id, name, category`` frame."""
    return {
        int(row.product_id): (_text_or_none(row.name), _text_or_none(row.category))
        for row in catalog[["product_id", "name", "category"]].itertuples(index=False)
    }


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


class LiveModel:
    """Holds the serving version; readers never lock, writers swap one reference."""

    def __init__(self) -> None:
        self._current: ServingModel | None = None
        self._swap_lock = threading.Lock()

    @property
    def is_live(self) -> bool:
        return self._current is not None

    def current(self) -> ServingModel:
        """Return the version to answer with (read it once per request).

        Raises:
            NoLiveModelError: Nothing was made live yet.
        """
        # One attribute read is atomic in CPython: no lock on the hot path.
        current = self._current
        if current is None:
            raise NoLiveModelError("no model version is live yet")
        return current

    def swap(self, version: ServingModel, only_if_newer: bool = False) -> ServingModel | None:
        """Make a fully built version the live one and return the one it replaced.

        Args:
            version: The new version.
            only_if_newer: Keep the live version when it is the same or a later
                one (a slow poller must not undo a fresher swap).
        """
        with self._swap_lock:
            previous = self._current
            if (
                only_if_newer
                and previous is not None
                and (
                    (version_number(version.version) or 0)
                    <= (version_number(previous.version) or 0)
                )
            ):
                return previous
            self._current = version
            if previous is not None and previous.version != version.version:
                LIVE_MODEL.labels(previous.version, previous.metadata.model_type).set(0)
            LIVE_MODEL.labels(version.version, version.metadata.model_type).set(1)
        logger.info(
            "serving model %s (was %s)", version.version, previous.version if previous else None
        )
        return previous

    def rename(
        self,
        names: dict[int, tuple[str | None, str | None]],
        hidden: frozenset[int] | None = None,
    ) -> None:
        """Make the live version show these product names and categories (same model).

        Unchanged names (and unavailable products) keep the live version
        object itself, and with it every answer cached for it (they are
        cached per version object); a change replaces it, so no answer made
        before it is served again.

        Args:
            names: Product id -> (name, category).
            hidden: The products marked unavailable; None keeps the live version's.
        """
        with self._swap_lock:
            current = self._current
            if current is None:
                return
            hidden = current.hidden if hidden is None else frozenset(hidden)
            if current.names != names or current.hidden != hidden:
                self._current = dataclasses.replace(current, names=names, hidden=hidden)

    def hide(self, hidden: frozenset[int]) -> None:
        """Make the live version leave out these products (and only these), same names."""
        with self._swap_lock:
            current = self._current
            if current is not None and current.hidden != hidden:
                self._current = dataclasses.replace(current, hidden=frozenset(hidden))
