"""The answering pipeline's parts: the fallback ranker's one decision, candidates, the stages."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.base import RankedList
from recsys.online.answer_cache import NoAnswerCache
from recsys.online.rankers import (
    PERSONAL_OR_POPULAR,
    POPULAR_FOR_EVERYONE,
    Candidates,
    PersonalRanker,
    PopularRanker,
)
from recsys.online.service import RecommendRequest
from recsys.store.events import UserHistory
from tests.builders import runtime_of

NO_EVENTS = UserHistory(has_events=False, purchased=frozenset())
SOME_EVENTS = UserHistory(has_events=True, purchased=frozenset())
UNKNOWN = 10**12


@pytest.fixture
def version(app):
    """Return the live version of a service trained on the bundled log."""
    runtime_of(app).start()
    return runtime_of(app).service.live.current()


def test_the_fallback_ranker_gives_a_user_the_model_knows_the_personal_ranker(version):
    ranker, reason = PERSONAL_OR_POPULAR.choose(version, 17, SOME_EVENTS)
    assert isinstance(ranker, PersonalRanker) and reason is None
    assert ranker.model(version) is version.model


@pytest.mark.parametrize(
    ("history", "reason"), [(NO_EVENTS, "unknown_user"), (SOME_EVENTS, "not_in_model")]
)
def test_the_fallback_ranker_says_why_a_user_gets_the_popular_list(version, history, reason):
    ranker, said = PERSONAL_OR_POPULAR.choose(version, UNKNOWN, history)
    assert isinstance(ranker, PopularRanker) and said == reason


def test_the_popular_strategy_ranks_the_users_it_knows_with_the_popularity_model(version):
    ranker, reason = POPULAR_FOR_EVERYONE.choose(version, 17, SOME_EVENTS)
    assert ranker.model(version) is version.popularity and reason is None


@pytest.mark.parametrize(
    ("complete", "exclude", "expected"),
    [
        (False, frozenset(), [5, 4, 3]),
        (False, frozenset({4}), [5, 3, 2]),
        (False, frozenset({4, 3}), None),  # products past the list might fill it
        (True, frozenset({4, 3}), [5, 2]),  # nothing lies past the list
    ],
)
def test_candidates_give_the_best_products_left_or_none_when_the_list_ran_out(
    complete, exclude, expected
):
    candidates = Candidates.of(
        RankedList(np.array([5, 4, 3, 2]), np.array([0.9, 0.8, 0.7, 0.6])), complete
    )
    picked = candidates.pick(3, exclude)
    assert (None if picked is None else picked.product_ids.tolist()) == expected


def test_candidates_are_read_only_since_requests_share_them():
    candidates = Candidates.of(RankedList(np.array([1, 2]), np.array([0.5, 0.4])), True)
    with pytest.raises(ValueError):
        candidates.product_ids[0] = 3


def test_the_pipeline_pages_after_leaving_out_purchases_and_exclusions(app, version):
    service = runtime_of(app).service
    cache = NoAnswerCache(service.store)
    best = service.pipeline.answer(version, RecommendRequest(17, 1), SOME_EVENTS, None, cache)
    bought = best.recommendations[0].product_id
    history = UserHistory(has_events=True, purchased=frozenset({bought}))
    whole = service.pipeline.answer(version, RecommendRequest(17, 6), history, None, cache)
    listed = [item.product_id for item in whole.recommendations]
    assert bought not in listed and len(listed) == 6
    second = service.pipeline.answer(
        version, RecommendRequest(17, 3, offset=3), history, None, cache
    )
    assert [item.product_id for item in second.recommendations] == listed[3:]


def test_the_pipeline_marks_an_answer_made_without_the_history_as_degraded(app, version):
    service = runtime_of(app).service
    cache = NoAnswerCache(service.store)
    request = RecommendRequest(17, 3)
    answer = service.pipeline.answer(version, request, NO_EVENTS, "store_unavailable", cache)
    assert answer.degraded == "store_unavailable" and answer.strategy == version.model.name
