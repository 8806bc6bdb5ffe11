"""The answering pipeline's parts: the fallback ranker's one decision, candidates, the stages."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from recsys.models import base as models_base
from recsys.models.ranked import RankedList, lookup_ids
from recsys.online import rankers
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

NO_EVENTS = UserHistory()
UNKNOWN = 10**12
# Events only on a product the model was not trained on: nothing to fold in.
UNUSABLE_EVENTS = UserHistory.of([(UNKNOWN, 2, 0)])


def some_events(app, user_id: int = 17) -> UserHistory:
    """Return the user's history as the store has it (products the model knows)."""
    return runtime_of(app).service.store.user_history(user_id)


@pytest.fixture
def version(app):
    """Return the live version of a service trained on the bundled log."""
    runtime_of(app).start()
    return runtime_of(app).service.live.current()


def test_the_fallback_ranker_gives_a_user_with_events_the_personal_ranker(app, version):
    ranker, reason = PERSONAL_OR_POPULAR.choose(version, 17, some_events(app))
    assert isinstance(ranker, PersonalRanker) and reason is None
    assert ranker.model(version) is version.model


def test_a_user_the_model_never_saw_is_ranked_personally_from_their_events(app, version):
    ranker, reason = PERSONAL_OR_POPULAR.choose(version, UNKNOWN, some_events(app))
    assert isinstance(ranker, PersonalRanker) and reason is None


@pytest.mark.parametrize(
    ("history", "reason"), [(NO_EVENTS, "unknown_user"), (UNUSABLE_EVENTS, "not_in_model")]
)
def test_the_fallback_ranker_says_why_a_user_gets_the_popular_list(version, history, reason):
    ranker, said = PERSONAL_OR_POPULAR.choose(version, UNKNOWN, history)
    assert isinstance(ranker, PopularRanker) and said == reason


def test_the_popular_strategy_ranks_the_users_it_knows_with_the_popularity_model(app, version):
    ranker, reason = POPULAR_FOR_EVERYONE.choose(version, 17, some_events(app))
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
    events = some_events(app)
    best = service.pipeline.answer(version, RecommendRequest(17, 1), events, None, cache)
    bought = best.recommendations[0].product_id
    history = UserHistory.of([*events.counts(), (bought, 1, 1)])
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
    unread = UserHistory(unavailable=True)
    answer = service.pipeline.answer(version, request, unread, "store_unavailable", cache)
    assert answer.degraded == "store_unavailable" and answer.strategy == version.model.name


def made(requester: str, ranking: str) -> float:
    value = REGISTRY.get_sample_value(
        "recsys_answers_made_total", {"requester": requester, "ranking": ranking}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("history", "ranking"),
    [
        (None, "fold_in"),  # the user's history from the store
        (UNUSABLE_EVENTS, "fallback"),
        (UserHistory(unavailable=True), "training_row"),
    ],
)
def test_answers_made_are_counted_by_how_their_list_was_ranked(app, version, history, ranking):
    service = runtime_of(app).service
    history = history if history is not None else some_events(app)
    before = made("user", ranking)
    service.pipeline.answer(
        version, RecommendRequest(17, 3), history, None, NoAnswerCache(service.store)
    )
    assert made("user", ranking) == before + 1


def test_a_session_answer_is_counted_as_a_session(app, version):
    before = made("session", "fold_in")
    runtime_of(app).service.recommend_session([3, 7], RecommendRequest(None, 3))
    assert made("session", "fold_in") == before + 1


def test_an_answer_looks_the_users_products_up_in_the_model_once(app, version, monkeypatch):
    # Choosing the ranker (does the model know any of them?) and ranking
    # (fold them in) share one lookup of the history's products.
    history = some_events(app)
    lookups = []

    def counted(sorted_ids, raw_ids):
        if np.array_equal(np.asarray(raw_ids), history.product_array):
            lookups.append(raw_ids)
        return lookup_ids(sorted_ids, raw_ids)

    monkeypatch.setattr(models_base, "lookup_ids", counted)
    monkeypatch.setattr(rankers, "lookup_ids", counted, raising=False)
    service = runtime_of(app).service
    answer = service.pipeline.answer(
        version, RecommendRequest(17, 5), history, None, NoAnswerCache(service.store)
    )
    assert answer.fallback_reason is None and len(answer.recommendations) == 5
    assert len(lookups) == 1


def test_an_answer_weighs_the_users_events_once(app, version, monkeypatch):
    # Choosing the ranker, folding the user in and explaining read one profile.
    history = some_events(app)
    weighed = []
    profile = UserHistory.profile

    def counted(self, weights):
        weighed.append(self)
        return profile(self, weights)

    monkeypatch.setattr(UserHistory, "profile", counted)
    service = runtime_of(app).service
    answer = service.pipeline.answer(
        version, RecommendRequest(17, 5, explain=True), history, None, NoAnswerCache(service.store)
    )
    assert answer.because is not None and any(answer.because)
    assert weighed == [history]


def test_a_versions_profile_of_a_history_is_the_history_weighed_as_in_training(app, version):
    history = some_events(app)
    profile = version.profile(history)
    expected = history.profile(version.weights)
    assert profile.product_ids.tolist() == expected.product_ids.tolist()
    assert profile.engagement.tolist() == expected.engagement.tolist()
    assert version.profile(history) is profile
    with pytest.raises(ValueError):  # shared by the answer's stages
        profile.engagement[0] = 0.0
