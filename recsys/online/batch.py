"""Lists for many users at once: the answering pipeline, with each chunk's scores made together.

``recommend_users`` answers every user of a chunk with the live model's own
pipeline (``recsys.online.pipeline``), so the lists are those ``GET
/recommend`` gives: the same fallback, purchases left out, unavailable
products and deleted users' training rows ignored. Only two things are done
per chunk rather than per user: the histories are read in a few queries,
and the fold-in scores of every user come from one call of the model's
``score_profiles`` (one sparse-times-dense matrix product for EASE). The
pipeline then finds each user's scores through its candidates hook
(``ChunkScores.pick``) and ranks them exactly as ``rank_profile`` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.models.base import FOLD_IN
from recsys.models.ranked import RankedList
from recsys.online.answers import RecommendationAnswer, RecommendRequest
from recsys.online.live_model import ServingModel
from recsys.online.rankers import PersonalRanker, Ranker
from recsys.online.service import RecommendationService
from recsys.store.events import UserHistory

_NO_HISTORY = UserHistory()


@dataclass(frozen=True)
class ChunkScores:
    """The fold-in score rows of one chunk's users, found by their history object.

    Attributes:
        rows: ``id(history)`` -> the personal model's score row for that history.
        histories: The histories scored (kept so that their ids stay theirs).
    """

    rows: dict[int, np.ndarray]
    histories: tuple[UserHistory, ...]

    @classmethod
    def score(cls, version: ServingModel, histories: Sequence[UserHistory]) -> ChunkScores:
        """Score every history the version's personal model can fold in, in one call."""
        model = version.model
        if FOLD_IN not in model.capabilities:
            return cls({}, ())
        folded = [h for h in histories if h.has_events and not h.unavailable]
        scored = model.score_profiles([h.profile(version.weights) for h in folded])
        rows = {id(h): row for h, row in zip(folded, scored, strict=True) if row is not None}
        return cls(rows, tuple(folded))

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
        """Return the ``wanted`` best products from the chunk's scores, or None (rank them now).

        Only the personal ranker's fold-in uses them; the popular list and
        training-time rows are ranked by the pipeline as for one request.
        """
        row = self.rows.get(id(history))
        if row is None or not isinstance(ranker, PersonalRanker) or ranker.popularity:
            return None
        model = version.model
        return model.rank_scores(row, wanted, left_out, version.allowed(model, categories))


def recommend_users(
    service: RecommendationService, user_chunks: Iterable[Sequence[int]], n: int
) -> Iterator[list[RecommendationAnswer]]:
    """Yield, chunk by chunk, each user's first page of n products from the live model.

    Args:
        service: The answering service (its live model must be live).
        user_chunks: The users, a chunk at a time (each chunk's scores are
            held in memory together: a chunk of 1,000 users over 5,000
            products is 20 MB).
        n: How many products per user.

    Raises:
        NoLiveModelError: No version is live.
    """
    pipeline = service.pipeline
    for chunk in user_chunks:
        version = pipeline.live.current()  # one version per chunk
        found = service.store.user_histories(chunk)
        histories = [found.get(int(user), _NO_HISTORY) for user in chunk]
        scores = ChunkScores.score(version, histories)
        yield [
            pipeline.answer(version, RecommendRequest(int(user), n), history, None, scores)
            for user, history in zip(chunk, histories, strict=True)
        ]
