"""The one answering path: the live model version, the user's history, one answer.

A ``ServingModel`` is one published version ready to answer: the personal
model, its popularity fallback, product names, and the artifact's metadata.
It is immutable; ``LiveModel`` holds one reference to the current one, and a
retrain builds the next completely, then replaces the reference. A request
reads the reference once and uses that version throughout, so it sees one
whole version, never a mix or a half-built model.

``RecommendationService.recommend`` decides the strategy and the fallback
reason in one place, with one read of the user's history (whether they have
events at all, and what they bought, so that a purchase posted a moment ago
is already excluded): from the event store, or from the shared Redis that
``forget_histories`` keeps current (``recsys.serving.cache``). With the cache
on, the model's part of an answer (the user's ranked candidates for the live
version) is computed once per version and reused; purchases are left out of
it per request. A finished answer is kept, and a repeated request is answered
with it while no event of the user came since: vouched for by the
invalidation bus without any I/O (``recsys.serving.invalidation``), or else
by comparing the user's history. When the store is unreachable the answer
still comes from the model, marked ``degraded``. Cold start is an answer with
a reason, never an exception.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
from prometheus_client import Gauge

from recsys.models.base import EXPLAIN, SIMILAR_ITEMS, RankedList, Recommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.rerank import mmr_order
from recsys.serving.artifacts import ArtifactMetadata, LoadedArtifact, version_number
from recsys.serving.cache import CANDIDATES, Candidates, HistoryCache, RankingCache
from recsys.serving.invalidation import InvalidationBus, Stamp
from recsys.store.engine import STORE_OUTAGES
from recsys.store.events import EventStore, UserHistory

logger = logging.getLogger(__name__)

# 1 for the version a process serves, 0 for the one it replaced; under
# gunicorn the maximum over the live workers, so during a swap both show 1.
LIVE_MODEL = Gauge(
    "recsys_model_live",
    "The model version this server answers with (1) and the ones it replaced (0)",
    ["version", "model_type"],
    multiprocess_mode="livemax",
)
_POPULAR = "popular"  # the ranking cache's key for the popularity list

# Why a personal list was not possible.
UNKNOWN_USER = "unknown_user"  # no event of this user was ever recorded
NOT_IN_MODEL = "not_in_model"  # events exist, but the user joined after training
# Why an answer is less than complete.
STORE_UNAVAILABLE = "store_unavailable"  # purchases could not be read: none excluded

_UNNAMED = (None, None)
# Sets of categories whose products each version remembers (per model).
_MAX_CATEGORY_SETS = 256

# Past products named per recommended product when asked to explain.
EXPLAIN_TOP = 3
# Candidates MMR chooses from: the model's best max(n * 3, 30).
_MMR_POOL_FACTOR = 3
_MMR_POOL_MIN = 30


class NoLiveModelError(RuntimeError):
    """No model version is live yet (``flask --app app init`` has not published one)."""


def compact_json(body: dict[str, Any]) -> bytes:
    """Return an answer's body as compact UTF-8 JSON with a final newline, as ``jsonify`` ends it.

    orjson, not the standard library: every uncached answer is encoded, and
    orjson does it about ten times faster. Non-ASCII names come as UTF-8, not
    ``\\u`` escapes (the same JSON text), and a non-finite number as null.
    numpy numbers are written as numbers (the standard library takes numpy
    floats too; orjson refuses them unless told).
    """
    return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class ListFilter:
    """Which products a list may hold, besides what the model ranks.

    Attributes:
        categories: Only products of these categories (empty: any category).
            A product the catalog gives no category is in none.
        exclude: Products never to list (a shop's own exclusion list).
        include_purchased: List products the user bought too (left out by default).
    """

    categories: frozenset[str] = frozenset()
    exclude: frozenset[int] = frozenset()
    include_purchased: bool = False

    @functools.cached_property
    def key(self) -> FilterKey:
        """Return what identifies these filters among kept answers, in bounded memory.

        An exclusion list (up to 1,000 ids) is named by a 16-byte BLAKE2 digest
        of its sorted ids: kept answers cost the same whatever a shop excludes.
        Computed when first asked for: without the cache no request needs it.
        """
        digest = None
        if self.exclude:
            digest = _digest(np.sort(np.fromiter(self.exclude, np.int64, len(self.exclude))))
        return FilterKey(self.categories, self.include_purchased, digest)

    def left_out(self, purchased: frozenset[int]) -> frozenset[int]:
        """Return the products left out of a list for a user who bought ``purchased``."""
        if self.include_purchased or not purchased:
            return self.exclude
        return self.exclude | purchased if self.exclude else purchased


NO_FILTER = ListFilter()


class FilterKey(NamedTuple):
    """``ListFilter.key``: the filters as kept answers name them."""

    categories: frozenset[str]
    include_purchased: bool
    exclude_digest: bytes | None  # None: no exclusion list


class AnswerKey(NamedTuple):
    """What names a plain request (no explanation or re-ranking) among kept answers."""

    user_id: int
    n: int
    offset: int
    filters: FilterKey

    @property
    def excluding(self) -> bool:
        """Whether the request has an exclusion list (such answers are kept apart)."""
        return self.filters.exclude_digest is not None


def answer_key(user_id: int, n: int, offset: int, filters: ListFilter) -> AnswerKey:
    """Return what names a plain request among kept answers."""
    return AnswerKey(user_id, n, offset, filters.key)


def _digest(sorted_ids: np.ndarray) -> bytes:
    return hashlib.blake2b(sorted_ids.tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class RecommendedProduct:
    """One product in an answer, with the model's score."""

    product_id: int
    name: str | None
    category: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape (what ``dataclasses.asdict`` gives, without its deep copies)."""
        return {
            "product_id": self.product_id,
            "name": self.name,
            "category": self.category,
            "score": self.score,
        }


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

    @functools.cached_property
    def json_body(self) -> bytes:
        """Return the answer as compact JSON, encoded once however often it is served."""
        return compact_json(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the answer."""
        body: dict[str, Any] = {"user_id": self.user_id, "strategy": self.strategy}
        if self.fallback_reason is not None:
            body["fallback_reason"] = self.fallback_reason
        if self.degraded is not None:
            body["degraded"] = self.degraded
        body["model_version"] = self.model_version
        body["recommendations"] = [item.to_dict() for item in self.recommendations]
        if self.because is not None:
            for item, reasons in zip(body["recommendations"], self.because, strict=True):
                item["because"] = [dataclasses.asdict(reason) for reason in reasons]
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
    # Which products are in each asked-for set of categories, per model,
    # computed once per version and catalog (``dataclasses.replace`` starts anew).
    _allowed: dict[tuple[frozenset[str], bool], np.ndarray] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    @property
    def version(self) -> str:
        return self.metadata.version

    def allowed(self, model: Recommender, categories: frozenset[str]) -> np.ndarray | None:
        """Return which of a model's products are in any of ``categories`` (a boolean mask).

        ``model`` is this version's personal model or its popularity model;
        no categories allow every product (None).
        """
        if not categories:
            return None
        key = (categories, model is self.model)
        found = self._allowed.get(key)
        if found is None:
            names = self.names
            found = np.fromiter(
                (names.get(p, _UNNAMED)[1] in categories for p in model.product_ids.tolist()),
                dtype=bool,
                count=len(model.product_ids),
            )
            found.flags.writeable = False
            if len(self._allowed) >= _MAX_CATEGORY_SETS:
                self._allowed.clear()  # requests name arbitrary sets: keep a bounded few
            self._allowed[key] = found
        return found

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
        names = catalog_names(source) if source is not None else {}
        return cls(artifact.model, popularity, names, artifact.metadata)

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


def catalog_names(catalog: pd.DataFrame) -> dict[int, tuple[str | None, str | None]]:
    """Return product id -> (name, category) from a ``product_id, name, category`` frame."""
    return {
        int(row.product_id): (_text_or_none(row.name), _text_or_none(row.category))
        for row in catalog[["product_id", "name", "category"]].itertuples(index=False)
    }


def _fallback_reason(history: UserHistory) -> str:
    """Return why a user gets the popular list: events but not in the model, or none at all."""
    return NOT_IN_MODEL if history.has_events else UNKNOWN_USER


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
            if previous is not None and previous.version != bundle.version:
                LIVE_MODEL.labels(previous.version, previous.metadata.model_type).set(0)
            LIVE_MODEL.labels(bundle.version, bundle.metadata.model_type).set(1)
        logger.info(
            "serving model %s (was %s)", bundle.version, previous.version if previous else None
        )
        return previous

    def rename(self, names: dict[int, tuple[str | None, str | None]]) -> None:
        """Make the live version show these product names and categories (same model).

        Unchanged names keep the live version object itself, and with it every
        answer kept for it (they are kept per version object).
        """
        with self._swap_lock:
            if self._current is not None and self._current.names != names:
                self._current = dataclasses.replace(self._current, names=names)


class RecommendationService:
    """Answers recommendation requests from the live model and the users' histories.

    Args:
        store: Where users' histories and the catalog are read from.
        rankings: Ranked candidates per (version, user) in this process; None: rank per request.
        histories: Users' histories in the shared Redis; None: read from the store per request.
        invalidations: Tells when a kept answer is still current without reading
            the user's history (``REDIS_URL``); None: check the history.
    """

    def __init__(
        self,
        store: EventStore,
        rankings: RankingCache | None = None,
        histories: HistoryCache | None = None,
        invalidations: InvalidationBus | None = None,
    ):
        self.store = store
        self.rankings = rankings
        self.histories = histories
        self.invalidations = invalidations
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
        previous = self.live.swap(bundle, only_if_newer=only_if_newer)
        swapped = previous is not None and previous is not bundle and self.live.current() is bundle
        if self.rankings is not None and swapped:
            # The old version's entries can no longer be asked for: free them.
            self.rankings.clear()
        return bundle

    def refresh_names(self) -> None:
        """Re-read the catalog so that the live version shows products as the store has them.

        The serving catalog is built when a version goes live; ``PUT /products``
        and the periodic refresh call this, so renamed and new products show
        without a retrain.

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        self.live.rename(catalog_names(self.store.products_frame()))

    @property
    def metadata(self) -> ArtifactMetadata:
        """Return the live version's metadata."""
        return self.live.current().metadata

    def recommend(
        self,
        user_id: int,
        n: int,
        *,
        offset: int = 0,
        filters: ListFilter = NO_FILTER,
        explain: bool = False,
        diversity: float = 0.0,
    ) -> RecommendationAnswer:
        """Return the n best products for a user from the live model version.

        Products the user bought are left out (unless ``filters`` include
        them), and so is every product the filters rule out, before the list
        is cut: it holds n products whenever n eligible ones exist. A user the
        model does not know gets the most popular eligible products, with
        ``fallback_reason`` saying whether they have events (``not_in_model``)
        or none (``unknown_user``).

        Args:
            user_id: The user.
            n: How many products.
            offset: How many of the best eligible products to skip (paging:
                ``offset=10, n=10`` is the second page of ten).
            filters: Categories to keep, products to exclude, and whether
                purchases may be listed.
            explain: Also name, per product, the user's past products that
                contributed most (``because``; models with EXPLAIN).
            diversity: 0 (the plain ranking) to 1: re-rank the model's best
                candidates by maximal marginal relevance, with category
                similarity when the catalog names every candidate's category,
                else the model's item similarity.
        """
        bundle = self.live.current()
        # The cache holds plain rankings; explanations and re-ranking are computed.
        cached = self.rankings is not None and not explain and diversity == 0
        stamp: Stamp | None = None
        if cached:
            assert self.rankings is not None
            request = answer_key(user_id, n, offset, filters)
            if self.invalidations is not None:
                stamp = self.invalidations.stamp(user_id)
            if stamp is not None:
                # No event of the user was announced since the answer was kept:
                # it is current without reading their history.
                found = self._kept(request, lambda k: k.bundle is bundle and k.stamp == stamp)
                if found is not None:
                    return found
        history, degraded = self._history(user_id, stamp)
        left_out = filters.left_out(history.purchased)
        if not cached:
            return self._recommend_uncached(
                bundle,
                user_id,
                n,
                offset,
                filters.categories,
                left_out,
                history,
                degraded,
                explain=explain,
                diversity=diversity,
            )
        assert self.rankings is not None
        if stamp is None:
            found = self._kept(request, lambda k: k.bundle is bundle and k.history == history)
            if found is not None:
                return found
        personal = bundle.model.knows_user(user_id)
        picked = self._pick(
            bundle, user_id if personal else _POPULAR, filters.categories, offset + n, left_out
        )
        if personal:
            strategy, reason = bundle.model.name, None
        else:
            strategy, reason = bundle.popularity.name, _fallback_reason(history)
        answer = RecommendationAnswer(
            user_id,
            strategy,
            bundle.describe_pairs(picked[offset:]),
            bundle.version,
            fallback_reason=reason,
            degraded=degraded,
        )
        if degraded is None:
            self.rankings.keep_answer(
                request, _KeptAnswer(bundle, history, stamp, answer), request.excluding
            )
        return answer

    def kept_answer(self, request: AnswerKey) -> RecommendationAnswer | None:
        """Return the answer kept for a request if the invalidation bus vouches for it, else None.

        ``request`` is ``answer_key``'s key of a plain request (no explanation
        or re-ranking). None is no verdict: ``recommend`` answers the request (and counts the miss).
        Without Redis there is never a kept answer here: checking one needs
        the user's history.
        """
        if self.rankings is None or self.invalidations is None:
            return None
        stamp = self.invalidations.stamp(request.user_id)
        if stamp is None:
            return None
        bundle = self.live.current()
        return self._kept(
            request, lambda k: k.bundle is bundle and k.stamp == stamp, count_miss=False
        )

    def popular(self, n: int) -> list[RecommendedProduct]:
        """Return the n most-clicked products as of the live version's training."""
        bundle = self.live.current()
        if self.rankings is None:
            return bundle.describe(bundle.popularity.top(n))
        return bundle.describe_pairs(self._pick(bundle, _POPULAR, frozenset(), n, frozenset()))

    def forget_histories(self, user_ids: Iterable[int]) -> None:
        """Make the users' cached histories stale for every worker and server.

        Call it after their new events are committed, before answering: the
        next request of any of them reads the store again.
        """
        users = list(user_ids)
        if self.histories is not None:
            self.histories.invalidate(users)
        if self.invalidations is not None:
            self.invalidations.announce(users)

    def forget_everything(self) -> None:
        """Make every cached history and kept answer stale (after events came in past the API)."""
        if self.histories is not None:
            self.histories.invalidate_all()
        if self.invalidations is not None:
            self.invalidations.announce_everything()

    # -- parts of an answer ------------------------------------------------------

    def _kept(
        self,
        request: AnswerKey,
        usable: Callable[[_KeptAnswer], bool],
        count_miss: bool = True,
    ) -> RecommendationAnswer | None:
        """Return the answer kept for a request if ``usable`` accepts what it was made with."""
        assert self.rankings is not None
        kept = self.rankings.answer(request, usable, request.excluding, count_miss)
        return None if kept is None else kept.answer

    def _history(self, user_id: int, stamp: Stamp | None = None) -> tuple[UserHistory, str | None]:
        """Return the user's history, and why it is incomplete if it is.

        With a ``stamp`` (the invalidation bus vouches for this process), a
        history kept in the process under the same stamp is current; one read
        from Redis or the store is kept under it.
        """
        if stamp is not None and self.rankings is not None:
            kept = self.rankings.history(user_id, stamp)
            if kept is not None:
                return kept, None
            history, degraded = self._shared_history(user_id)
            if degraded is None:
                self.rankings.keep_history(user_id, stamp, history)
            return history, degraded
        return self._shared_history(user_id)

    def _shared_history(self, user_id: int) -> tuple[UserHistory, str | None]:
        """Return the user's history from Redis or the store, and why it is incomplete if it is."""
        lookup = self.histories.lookup(user_id) if self.histories is not None else None
        if lookup is not None and lookup.history is not None:
            return lookup.history, None
        try:
            history = self.store.user_history(user_id)
        except STORE_OUTAGES as exc:
            logger.warning("event store unavailable for a user's history: %s", type(exc).__name__)
            return UserHistory(has_events=False, purchased=frozenset()), STORE_UNAVAILABLE
        if lookup is not None and self.histories is not None:
            self.histories.save(user_id, history, lookup.stamp)
        return history, None

    def _pick(
        self,
        bundle: ServingModel,
        user: int | str,
        categories: frozenset[str],
        wanted: int,
        left_out: frozenset[int],
    ) -> list[tuple[int, float]]:
        """Return the ``wanted`` best (product, score) pairs of a user (or ``"popular"``).

        From the cached candidates when enough remain in them after
        ``left_out`` (or they hold every product); otherwise the model ranks
        ``wanted + len(left_out)`` (at least ``CANDIDATES`` more), which is
        always enough, and the deeper list replaces the cached one.
        """
        assert self.rankings is not None
        found = self.rankings.get(bundle.version, user, categories)
        picked = found.pick(wanted, left_out) if found is not None else None
        if picked is not None:
            return picked
        depth = max(CANDIDATES, wanted) + len(left_out)
        if user == _POPULAR:
            popularity = bundle.popularity
            # The popularity list is short and shared by every unknown user: rank it whole.
            allowed = bundle.allowed(popularity, categories)
            ranked = popularity.top(len(popularity.product_ids), allowed=allowed)
            found = Candidates.of(ranked.product_ids, ranked.scores, complete=True)
        else:
            model = bundle.model
            allowed = bundle.allowed(model, categories)
            ranked = model.rank_user(int(user), depth, allowed=allowed)
            assert ranked is not None, "only users the model knows are ranked personally"
            found = Candidates.of(ranked.product_ids, ranked.scores, len(ranked) < depth)
        self.rankings.put(bundle.version, user, found, categories)
        picked = found.pick(wanted, left_out)
        assert picked is not None, "ranked deep enough for the request"
        return picked

    def _recommend_uncached(
        self,
        bundle: ServingModel,
        user_id: int,
        n: int,
        offset: int,
        categories: frozenset[str],
        left_out: frozenset[int],
        history: UserHistory,
        degraded: str | None,
        *,
        explain: bool = False,
        diversity: float = 0.0,
    ) -> RecommendationAnswer:
        wanted = offset + n
        pool = wanted if diversity == 0 else max(wanted * _MMR_POOL_FACTOR, _MMR_POOL_MIN)
        model = bundle.model
        personal = model.rank_user(
            user_id, pool, exclude=left_out, allowed=bundle.allowed(model, categories)
        )
        if personal is not None:
            ranked = _page(bundle.diversify(personal, model, wanted, diversity), offset)
            return RecommendationAnswer(
                user_id,
                bundle.model.name,
                bundle.describe(ranked),
                bundle.version,
                degraded=degraded,
                because=bundle.explain(user_id, ranked) if explain else None,
            )
        reason = _fallback_reason(history)
        allowed = bundle.allowed(bundle.popularity, categories)
        ranked = bundle.popularity.top(pool, exclude=left_out, allowed=allowed)
        ranked = _page(bundle.diversify(ranked, bundle.popularity, wanted, diversity), offset)
        return RecommendationAnswer(
            user_id,
            bundle.popularity.name,
            bundle.describe(ranked),
            bundle.version,
            fallback_reason=reason,
            degraded=degraded,
            because=[[] for _ in ranked.product_ids] if explain else None,
        )


@dataclass(frozen=True)
class _KeptAnswer:
    """A finished answer, and the version and history it was made with."""

    bundle: ServingModel
    history: UserHistory
    stamp: Stamp | None  # the user's stamp when the request began, if there was one
    answer: RecommendationAnswer


def _page(ranked: RankedList, offset: int) -> RankedList:
    """Return a ranked list without its first ``offset`` products."""
    if offset == 0:
        return ranked
    return RankedList(ranked.product_ids[offset:], ranked.scores[offset:])
