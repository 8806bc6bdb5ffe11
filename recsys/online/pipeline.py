"""The answering pipeline: candidates -> filters -> page -> describe, from one live model.

A ``Pipeline`` answers a request from one version of its live model. Its
ranker (``recsys.online.rankers``) chooses, once, who ranks the user: the
personal model, or its fallback for users it does not know. Then:

1. candidates: the ranker's best products for the user, from the cached
   candidates when the request is plain and the cache is on, else ranked now;
2. filters: the request's categories and exclusions and the user's purchases
   are left out as the candidates are taken, so a list holds n products
   whenever n eligible ones exist;
3. page: re-ranked by maximal marginal relevance when asked, then the first
   ``offset`` products skipped; a share of a first page's slots explored
   (new or rarely shown products: ``recsys.online.exploration``);
4. describe: names, categories and rounded scores, and the user's past
   products behind each one when asked.

The A/B layer routes a user to a pipeline (each variant is one); the
service looks the request up in its cache once, and runs the pipeline only
when no cached answer holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from recsys.models.base import Recommender
from recsys.models.ranked import RankedList
from recsys.online.answers import RecommendationAnswer, RecommendRequest
from recsys.online.erasures import ErasedUsers
from recsys.online.exploration import Exploration, ShownList
from recsys.online.live_model import LiveModel, ServingModel
from recsys.online.rankers import FallbackRanker, Ranker, folds_in
from recsys.store.events import UserHistory

ANSWERS_MADE = Counter(
    "recsys_answers_made",
    "Answers made (not served from the cache), by who asked (user or session) and how the "
    "list was ranked (fold_in: from the history as it is now; training_row: from the "
    "user's row at training time; fallback: the popular list)",
    ["requester", "ranking"],
)
# ANSWERS_MADE's series by (requester, ranking), looked up once each.
_ANSWERS_MADE_BY: dict[tuple[str, str], Any] = {}

# Candidates MMR chooses from: the model's best max(n * 3, 30).
_MMR_POOL_FACTOR = 3
_MMR_POOL_MIN = 30


class CandidateCache(Protocol):
    """Where the candidates stage finds a user's ranked candidates (``AnswerCache.pick``)."""

    def pick(
        self,
        version: ServingModel,
        ranker: Ranker,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        wanted: int,
        left_out: frozenset[int],
    ) -> RankedList | None:
        """Return the ``wanted`` best candidates outside ``left_out``, or None (rank them now)."""
        ...


@dataclass(frozen=True)
class Pipeline:
    """Answers requests from the versions of one live model.

    Attributes:
        name: Names the pipeline's answers among cached ones (one per A/B strategy).
        live: The model whose current version answers.
        ranker: Who ranks a user: a primary ranker and its fallback.
        exploration: Gives a share of first pages to new or rarely shown
            products; None: none.
        erased: The deleted users, whom no version ranks from a training-time
            row that may hold their events; None: none.
    """

    name: str
    live: LiveModel
    ranker: FallbackRanker
    exploration: Exploration | None = None
    erased: ErasedUsers | None = None

    def answer(
        self,
        version: ServingModel,
        request: RecommendRequest,
        history: UserHistory,
        degraded: str | None,
        cache: CandidateCache,
    ) -> RecommendationAnswer:
        """Return the answer to a request from one version of the live model.

        Args:
            version: The version read once for the request.
            request: What the request asks for.
            history: The user's history (whether they have events, what they bought).
            degraded: Why the history is incomplete, if it is (said in the answer).
            cache: Where plain requests find their candidates.
        """
        user_id = request.user_id
        # A deleted user is ranked as a session is, from their history alone:
        # the version may still hold their training-time row.
        ranked_as = (
            None
            if user_id is not None
            and self.erased is not None
            and self.erased.forgets(user_id, version)
            else user_id
        )
        ranker, fallback_reason = self.ranker.choose(version, ranked_as, history)
        model = ranker.model(version)
        # A disliked product is never shown again, whatever the filters ask.
        left_out = request.filters.left_out(history.purchased)
        if history.disliked:
            left_out |= history.disliked
        ranked = _candidates(version, ranker, request, ranked_as, history, left_out, cache)
        wanted = request.offset + request.n
        ranked = _page(version.diversify(ranked, model, wanted, request.diversity), request.offset)
        shown = (
            self.exploration.explore(version, ranked, request, history, left_out)
            if self.exploration is not None and self.exploration.enabled
            else ShownList(ranked)
        )
        _count(request, model, history, fallback_reason)
        return RecommendationAnswer(
            user_id,
            model.name,
            shown.describe(version),
            version.version,
            fallback_reason=fallback_reason,
            degraded=degraded,
            because=shown.explain(version, model, history) if request.explain else None,
            history_events=history.events,
        )


def _count(
    request: RecommendRequest, model: Recommender, history: UserHistory, fallback: str | None
) -> None:
    """Count an answer made by who it was for and how its list was ranked."""
    if fallback is not None:
        ranking = "fallback"
    elif folds_in(model, history):
        ranking = "fold_in"
    else:
        ranking = "training_row"
    requester = "user" if request.user_id is not None else "session"
    counter = _ANSWERS_MADE_BY.get((requester, ranking))
    if counter is None:  # labels() looks its child up under a lock: once per pair
        counter = _ANSWERS_MADE_BY.setdefault(
            (requester, ranking), ANSWERS_MADE.labels(requester, ranking)
        )
    counter.inc()


def _candidates(
    version: ServingModel,
    ranker: Ranker,
    request: RecommendRequest,
    user_id: int | None,
    history: UserHistory,
    left_out: frozenset[int],
    cache: CandidateCache,
) -> RankedList:
    """Return the user's best eligible products: enough to page, and to re-rank when asked.

    ``user_id`` is the user as the ranker knows them (None for a session or a deleted user).
    """
    wanted = request.offset + request.n
    categories = request.filters.categories
    if request.plain:
        found = cache.pick(version, ranker, user_id, history, categories, wanted, left_out)
        if found is not None:
            return found
    pool = wanted if request.diversity == 0 else max(wanted * _MMR_POOL_FACTOR, _MMR_POOL_MIN)
    return ranker.rank(version, user_id, history, pool, left_out, categories)


def _page(ranked: RankedList, offset: int) -> RankedList:
    """Return a ranked list without its first ``offset`` products."""
    if offset == 0:
        return ranked
    return RankedList(ranked.product_ids[offset:], ranked.scores[offset:])
