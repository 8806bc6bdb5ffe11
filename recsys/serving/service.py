"""The one answering path: the live model version, the user's history, one answer.

A ``ServingModel`` is one published version ready to answer: the personal
model, its popularity fallback, product names, and the artifact's metadata.
It is immutable; ``LiveModel`` holds one reference to the current one, and a
retrain builds the next completely, then replaces the reference. A request
reads the reference once and uses that version throughout, so it sees one
whole version, never a mix or a half-built model.

``RecommendationService.recommend`` decides the strategy and the fallback
reason in one place, with one read of the event store: the user's history
(whether they have events at all, and what they bought, so that a purchase
posted a moment ago is already excluded). When the store is unreachable the
answer still comes from the model, marked ``degraded``. Cold start is an
answer with a reason, never an exception.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.models.base import EXPLAIN, SIMILAR_ITEMS, RankedList, Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.rerank import mmr_order
from recsys.serving.artifacts import ArtifactMetadata, LoadedArtifact, version_number
from recsys.store.engine import STORE_OUTAGES
from recsys.store.events import EventStore, UserHistory

logger = logging.getLogger(__name__)

# Why a personal list was not possible.
UNKNOWN_USER = "unknown_user"  # no event of this user was ever recorded
NOT_IN_MODEL = "not_in_model"  # events exist, but the user joined after training
# Why an answer is less than complete.
STORE_UNAVAILABLE = "store_unavailable"  # purchases could not be read: none excluded

# Past products named per recommended product when asked to explain.
EXPLAIN_TOP = 3
# Candidates MMR chooses from: the model's best max(n * 3, 30).
_MMR_POOL_FACTOR = 3
_MMR_POOL_MIN = 30


class NoLiveModelError(RuntimeError):
    """No model version is live yet (``flask --app app init`` has not published one)."""


@dataclass(frozen=True)
class RecommendedProduct:
    """One product in an answer, with the model's score."""

    product_id: int
    name: str | None
    category: str | None
    score: float


@dataclass(frozen=True)
class Reason:
    """One of the user's past products behind a recommendation, and its weight."""

    product_id: int
    name: str | None
    weight: float


@dataclass(frozen=True)
class RecommendationAnswer:
    """A ranked product list for one user, and how it was made.

    Attributes:
        user_id: Who asked.
        strategy: The model that made the list (``svd``, ``popular``, ...).
        recommendations: Best first.
        model_version: The published model version that answered.
        fallback_reason: Why a personal list was not possible, if it was not.
        degraded: Why the answer is incomplete (``store_unavailable``: the
            user's purchases could not be read, so none were excluded).
        because: When explanations were asked for: per recommendation (same
            order), the user's past products that contributed most (empty
            when the model cannot explain, as for popularity).
    """

    user_id: int
    strategy: str
    recommendations: list[RecommendedProduct]
    model_version: str
    fallback_reason: str | None = None
    degraded: str | None = None
    because: list[list[Reason]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the answer."""
        body: dict[str, Any] = {"user_id": self.user_id, "strategy": self.strategy}
        if self.fallback_reason is not None:
            body["fallback_reason"] = self.fallback_reason
        if self.degraded is not None:
            body["degraded"] = self.degraded
        body["model_version"] = self.model_version
        body["recommendations"] = [asdict(item) for item in self.recommendations]
        if self.because is not None:
            for item, reasons in zip(body["recommendations"], self.because, strict=True):
                item["because"] = [asdict(reason) for reason in reasons]
        return body


@dataclass(frozen=True)
class ServingModel:
    """One published version, ready to answer.

    Attributes:
        model: The personal model.
        popularity: The cold-start fallback fitted on the same data.
        names: Product id -> (name, category); missing ids are shown by id only.
        metadata: The artifact's metadata.
    """

    model: Recommender
    popularity: PopularityRecommender
    names: dict[int, tuple[str | None, str | None]]
    metadata: ArtifactMetadata

    @property
    def version(self) -> str:
        return self.metadata.version

    @classmethod
    def from_artifact(cls, artifact: LoadedArtifact, catalog: pd.DataFrame | None) -> ServingModel:
        """Build a serving version from a loaded artifact and the freshest catalog at hand.

        Args:
            artifact: The loaded artifact.
            catalog: ``product_id, name, category`` from the store, or None to
                use the catalog saved with the artifact.

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
        names: dict[int, tuple[str | None, str | None]] = {}
        if source is not None:
            for row in source[["product_id", "name", "category"]].itertuples(index=False):
                names[int(row.product_id)] = (_text_or_none(row.name), _text_or_none(row.category))
        return cls(artifact.model, popularity, names, artifact.metadata)

    def describe(self, ranked: RankedList) -> list[RecommendedProduct]:
        """Return ranked ids as named products with rounded scores."""
        items = []
        for product_id, score in zip(ranked.product_ids, ranked.scores, strict=True):
            name, category = self.names.get(int(product_id), (None, None))
            items.append(
                RecommendedProduct(int(product_id), name, category, round(float(score), 4))
            )
        return items

    def explain(self, user_id: int, ranked: RankedList) -> list[list[Reason]]:
        """Return, per ranked product, the user's past products behind it (top EXPLAIN_TOP)."""
        if EXPLAIN not in self.model.capabilities:
            return [[] for _ in ranked.product_ids]
        reasons = []
        for product_id in ranked.product_ids.tolist():
            because = self.model.explain(user_id, product_id, EXPLAIN_TOP)
            reasons.append(
                [
                    Reason(int(past), self.names.get(int(past), (None, None))[0], round(w, 4))
                    for past, w in zip(
                        because.product_ids.tolist(), because.scores.tolist(), strict=True
                    )
                ]
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
        bundle = self._current
        if bundle is None:
            raise NoLiveModelError("no model version is live yet")
        return bundle

    def swap(self, bundle: ServingModel, only_if_newer: bool = False) -> ServingModel | None:
        """Make a fully built version the live one and return the one it replaced.

        Args:
            bundle: The new version.
            only_if_newer: Keep the live version when it is the same or a later
                one (a slow poller must not undo a fresher swap).
        """
        with self._swap_lock:
            previous = self._current
            if (
                only_if_newer
                and previous is not None
                and (
                    (version_number(bundle.version) or 0) <= (version_number(previous.version) or 0)
                )
            ):
                return previous
            self._current = bundle
        logger.info(
            "serving model %s (was %s)", bundle.version, previous.version if previous else None
        )
        return previous


class RecommendationService:
    """Answers recommendation requests from the live model and the event store.

    Args:
        store: Where users' histories and the catalog are read from.
    """

    def __init__(self, store: EventStore):
        self.store = store
        self.live = LiveModel()

    def serve(self, artifact: LoadedArtifact, only_if_newer: bool = False) -> ServingModel:
        """Build a serving version from an artifact and make it live in one step."""
        try:
            catalog = self.store.products_frame()
        except STORE_OUTAGES:
            logger.warning(
                "event store unavailable: serving the catalog saved with %s",
                artifact.metadata.version,
            )
            catalog = None
        bundle = ServingModel.from_artifact(artifact, catalog)
        self.live.swap(bundle, only_if_newer=only_if_newer)
        return bundle

    @property
    def metadata(self) -> ArtifactMetadata:
        """Return the live version's metadata."""
        return self.live.current().metadata

    def recommend(
        self, user_id: int, n: int, *, explain: bool = False, diversity: float = 0.0
    ) -> RecommendationAnswer:
        """Return the n best products for a user from the live model version.

        Products the user bought are left out. A user the model does not know
        gets the most popular products, with ``fallback_reason`` saying
        whether they have events (``not_in_model``) or none (``unknown_user``).

        Args:
            user_id: The user.
            n: How many products.
            explain: Also name, per product, the user's past products that
                contributed most (``because``; models with EXPLAIN).
            diversity: 0 (the plain ranking) to 1: re-rank the model's best
                candidates by maximal marginal relevance, with category
                similarity when the catalog names every candidate's category,
                else the model's item similarity.
        """
        bundle = self.live.current()
        degraded = None
        try:
            history = self.store.user_history(user_id)
        except STORE_OUTAGES as exc:
            logger.warning("event store unavailable for a user's history: %s", type(exc).__name__)
            history = UserHistory(has_events=False, purchased=frozenset())
            degraded = STORE_UNAVAILABLE
        pool = n if diversity == 0 else max(n * _MMR_POOL_FACTOR, _MMR_POOL_MIN)
        if bundle.model.knows_user(user_id):
            exclude = {user_id: history.purchased}
            ranked = bundle.model.recommend([user_id], pool, exclude=exclude).lists[user_id]
            ranked = bundle.diversify(ranked, bundle.model, n, diversity)
            return RecommendationAnswer(
                user_id,
                bundle.model.name,
                bundle.describe(ranked),
                bundle.version,
                degraded=degraded,
                because=bundle.explain(user_id, ranked) if explain else None,
            )
        reason = NOT_IN_MODEL if history.has_events else UNKNOWN_USER
        ranked = bundle.popularity.top(pool, exclude=history.purchased)
        ranked = bundle.diversify(ranked, bundle.popularity, n, diversity)
        return RecommendationAnswer(
            user_id,
            bundle.popularity.name,
            bundle.describe(ranked),
            bundle.version,
            fallback_reason=reason,
            degraded=degraded,
            because=[[] for _ in ranked.product_ids] if explain else None,
        )

    def popular(self, n: int) -> list[RecommendedProduct]:
        """Return the n most-clicked products as of the live version's training."""
        bundle = self.live.current()
        return bundle.describe(bundle.popularity.top(n))
