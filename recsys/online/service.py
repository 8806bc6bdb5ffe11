"""The answering service: the live model, the answering pipelines, and their one cache layer.

``RecommendationService.recommend`` answers a request with one pipeline
(``recsys.online.pipeline``: candidates -> filters -> page -> describe, the
personal-or-fallback decision made once by its ranker), the live model's
unless the A/B layer routed the user to another. It reads the live version
once, looks the request up in the cache layer once
(``recsys.online.answer_cache``: a cached answer while it holds, else the
user's history, from Redis or the store, so that a purchase posted a moment
ago is already excluded), and keeps what the pipeline made. When the store is
unreachable the answer still comes from the model, marked ``degraded``. Cold
start is an answer with a reason, never an exception.

This module is the front of the answering path: callers import from it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime

from recsys.data.interactions import CLICK
from recsys.data.timestamps import utc_now
from recsys.online.answer_cache import AnswerCache, NoAnswerCache
from recsys.online.answers import (
    NO_FILTER,
    NOT_IN_MODEL,
    STORE_UNAVAILABLE,
    UNKNOWN_USER,
    ListFilter,
    Reason,
    RecommendationAnswer,
    RecommendedProduct,
    RecommendRequest,
    compact_json,
)
from recsys.online.erasures import ErasedUsers
from recsys.online.exploration import Exploration
from recsys.online.impressions import ImpressionCounter
from recsys.online.live_model import (
    LiveModel,
    NoLiveModelError,
    ServingModel,
    catalog_names,
)
from recsys.online.pipeline import Pipeline
from recsys.online.rankers import PERSONAL_OR_POPULAR, POPULAR_FOR_EVERYONE, PopularRanker
from recsys.store.artifacts import ArtifactMetadata, LoadedArtifact
from recsys.store.engine import STORE_OUTAGES
from recsys.store.events import EventStore, UserHistory

__all__ = [
    "NOT_IN_MODEL",
    "NO_FILTER",
    "STORE_UNAVAILABLE",
    "UNKNOWN_USER",
    "AnswerCache",
    "Exploration",
    "ImpressionCounter",
    "ListFilter",
    "LiveModel",
    "NoAnswerCache",
    "NoLiveModelError",
    "Pipeline",
    "Reason",
    "RecommendRequest",
    "RecommendationAnswer",
    "RecommendationService",
    "RecommendedProduct",
    "ServingModel",
    "catalog_names",
    "compact_json",
]

logger = logging.getLogger(__name__)

# The pipelines' names among cached answers (the A/B strategies they serve).
CHAMPION, POPULAR = "champion", "popular"
_POPULAR_LIST = PopularRanker()
_NONE: frozenset = frozenset()  # no categories asked for, no products left out
_NO_HISTORY = UserHistory()


class RecommendationService:
    """Answers recommendation requests from the live model and the users' histories.

    Args:
        store: Where users' histories and the catalog are read from.
        cache: The cache layer (``AnswerCache``); None: caching off, every
            history read from the store.
        exploration: Gives a share of first pages to new or rarely shown
            products; None: exploration off.
    """

    def __init__(
        self,
        store: EventStore,
        cache: AnswerCache | NoAnswerCache | None = None,
        exploration: Exploration | None = None,
    ):
        self.store = store
        self.cache = cache if cache is not None else NoAnswerCache(store)
        self.exploration = exploration if exploration is not None else Exploration(0.0, 1)
        self.live = LiveModel()
        self.erased = ErasedUsers()
        self.pipeline = Pipeline(
            CHAMPION, self.live, PERSONAL_OR_POPULAR, self.exploration, self.erased
        )
        # The live version's popularity list for everyone (the ``popular`` A/B strategy).
        self.popular_pipeline = Pipeline(
            POPULAR, self.live, POPULAR_FOR_EVERYONE, self.exploration, self.erased
        )
        # Every live model answering here (the A/B test's pinned versions too):
        # each leaves out the unavailable products.
        self._lives: weakref.WeakSet[LiveModel] = weakref.WeakSet([self.live])
        self.cache.on_announcements(self._erased_elsewhere, self._catalog_changed)

    def serve(self, artifact: LoadedArtifact, only_if_newer: bool = False) -> ServingModel:
        """Build a serving version from an artifact and make it live in one step."""
        version = self._serving_model(artifact)
        previous = self.live.swap(version, only_if_newer=only_if_newer)
        if previous is not None and previous is not version and self.live.current() is version:
            # The old version's entries can no longer be asked for: free them.
            self.cache.clear()
        return version

    def pinned_pipeline(self, artifact: LoadedArtifact) -> Pipeline:
        """Return a pipeline that answers with one published version for good (an A/B variant)."""
        live = LiveModel()
        live.swap(self._serving_model(artifact))
        self._lives.add(live)
        return Pipeline(
            f"version {artifact.metadata.version}",
            live,
            PERSONAL_OR_POPULAR,
            self.exploration,
            self.erased,
        )

    def refresh_names(self) -> None:
        """Re-read the catalog so that the live version shows products as the store has them.

        The serving catalog is built when a version goes live; ``PUT /products``
        and the periodic refresh call this, so renamed and new products show
        without a retrain, and exploration can give new ones a slot.

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        catalog = self.store.products_frame()
        hidden = self.store.hidden_products()
        self.exploration.learn_catalog(catalog)
        names = catalog_names(catalog)
        for live in list(self._lives):
            live.rename(names, hidden)

    def refresh_hidden(self) -> None:
        """Re-read which products are unavailable, so that no answer lists them from now on.

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        hidden = self.store.hidden_products()
        for live in list(self._lives):
            live.hide(hidden)

    def products_changed(self, availability_changed: bool) -> None:
        """Show products as the store has them now; every process, at once, when hidden or shown.

        Call it after ``PUT /products`` committed. This process re-reads the
        catalog; when the batch made products unavailable or available again,
        every other process re-reads which are before this returns (through
        the invalidation bus; without Redis, within their refresh period).

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        self.refresh_names()
        if availability_changed:
            self.cache.announce_catalog()

    def forget_deleted_users(self, user_ids: Sequence[int], deleted_at: datetime) -> None:
        """Answer deleted users as unknown from now on, in every process.

        Call it after their deletion committed: their cached answers and
        histories go stale everywhere, and no live version ranks them from a
        training-time row (``ErasedUsers``).
        """
        self.erased.add(user_ids, deleted_at)
        self.cache.forget(user_ids, erased=True)

    def refresh_erased(self) -> None:
        """Learn the deletions recorded since the last look (another process's, or before a start).

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        self.erased.learn_audit(self.store.deletions_after(self.erased.last_audit_id))

    def _erased_elsewhere(self, user_ids: list[int]) -> None:
        # Heard on the bus: the audit row's own time comes with the next refresh;
        # the time heard is later, so it covers every version the audit time does.
        self.erased.add(user_ids, utc_now())

    def _catalog_changed(self) -> None:
        # Heard on the bus, before confirming: the announcer waits for this.
        try:
            self.refresh_hidden()
        except STORE_OUTAGES as exc:
            logger.warning("unavailable products not re-read: %s", type(exc).__name__)

    @property
    def metadata(self) -> ArtifactMetadata:
        """Return the live version's metadata."""
        return self.live.current().metadata

    def recommend(
        self, request: RecommendRequest, pipeline: Pipeline | None = None
    ) -> RecommendationAnswer:
        """Return the n best products for a user from the live model version.

        Products the user bought are left out (unless the filters include
        them), and so is every product the filters rule out, before the list
        is cut: it holds n products whenever n eligible ones exist. A user the
        model does not know gets the most popular eligible products, with
        ``fallback_reason`` saying whether they have events (``not_in_model``)
        or none (``unknown_user``).

        Args:
            request: The user, the list's length and page, the filters, and
                whether to explain or re-rank.
            pipeline: The pipeline the A/B layer routed the user to; None:
                the live model's.

        Raises:
            NoLiveModelError: No version is live yet.
        """
        pipeline = pipeline if pipeline is not None else self.pipeline
        version = pipeline.live.current()  # read once: one whole version throughout
        found = self.cache.lookup(pipeline.name, version, request)
        if found.answer is not None:
            self.exploration.served(found.answer)
            return found.answer
        answer = pipeline.answer(version, request, found.history, found.degraded, self.cache)
        self.cache.keep(found, answer)
        self.exploration.served(answer)
        return answer

    def recommend_session(
        self, items: Sequence[int], request: RecommendRequest
    ) -> RecommendationAnswer:
        """Return a list for an anonymous session from its products alone.

        Each of ``items`` counts as one click (a product twice, two), folded
        into the live model as a user's history is; a product's latest time
        is the position of its last click, so a later one is more recent.
        Nothing is written, and no A/B test routes a session. A session none
        of whose products the model knows gets the most popular products
        (``not_in_model``).

        Args:
            items: The session's product ids (catalog products), most recent last.
            request: The list's length, page and filters (``user_id`` None).

        Raises:
            NoLiveModelError: No version is live yet.
        """
        version = self.pipeline.live.current()
        # One row a click: the counts add up, and the latest is the last position.
        history = UserHistory.of_events((p, CLICK, 1, 0, i) for i, p in enumerate(items))
        answer = self.pipeline.answer(version, request, history, None, self.cache)
        self.exploration.served(answer)
        return answer

    def popular(self, n: int) -> list[RecommendedProduct]:
        """Return the n most-clicked products as of the live version's training."""
        version = self.live.current()
        ranked = self.cache.pick(version, _POPULAR_LIST, None, _NO_HISTORY, _NONE, n, _NONE)
        if ranked is None:
            ranked = _POPULAR_LIST.rank(version, None, _NO_HISTORY, n, _NONE, _NONE)
        return version.describe(ranked)

    def forget_histories(self, user_ids: Iterable[int]) -> None:
        """Make the users' cached histories and answers stale for every worker and server.

        Call it after their new events are committed, before answering: the
        next request of any of them reads the store again.
        """
        self.cache.forget(user_ids)

    def forget_everything(self) -> None:
        """Make every cached history and answer stale (after events came in past the API)."""
        self.cache.forget_everything()

    def _serving_model(self, artifact: LoadedArtifact) -> ServingModel:
        """Build a serving version from an artifact and the freshest catalog at hand."""
        try:
            catalog = self.store.products_frame()
            hidden = self.store.hidden_products()
        except STORE_OUTAGES:
            logger.warning(
                "event store unavailable: serving the catalog saved with %s",
                artifact.metadata.version,
            )
            catalog = None
            # The products hidden so far stay hidden.
            hidden = self.live.current().hidden if self.live.is_live else frozenset()
        known = catalog if catalog is not None else artifact.catalog
        if known is not None:
            self.exploration.learn_catalog(known)
        return ServingModel.from_artifact(artifact, catalog, hidden)
