"""The candidates stage of the answering pipeline: who ranks a user's products, with its fallback.

A ranker makes a user's candidate list from one version of the live model:
``PersonalRanker`` with the version's personal model, folding the user in
from their history as it is now (or, for the ``popular`` A/B strategy, its
popularity model per user), ``PopularRanker`` with the most-clicked
products, the same for everyone. ``FallbackRanker``
pairs a primary ranker with a fallback, as LensKit's ``FallbackScorer``
does: it is the one place that decides whether a user gets a personal list,
and says why not when they do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.models.base import FOLD_IN, Recommender
from recsys.models.ranked import RankedList
from recsys.online.answers import NOT_IN_MODEL, UNKNOWN_USER
from recsys.online.live_model import ServingModel
from recsys.store.events import UserHistory


@dataclass(frozen=True)
class Candidates:
    """A ranked candidate list, best first, as the model made it (nothing excluded).

    Attributes:
        product_ids: Raw product ids, best first (read-only).
        scores: The model's scores (read-only).
        complete: Whether the list holds every product the model can rank,
            so that a shorter answer after exclusions is the right one.
    """

    product_ids: np.ndarray
    scores: np.ndarray
    complete: bool

    @classmethod
    def of(cls, ranked: RankedList, complete: bool) -> Candidates:
        """Wrap a model's ranked list, made read-only since requests share it."""
        ids = np.array(ranked.product_ids, dtype=np.int64)
        values = np.array(ranked.scores, dtype=np.float64)
        ids.flags.writeable = False
        values.flags.writeable = False
        return cls(ids, values, complete)

    def pick(self, n: int, exclude: frozenset[int]) -> RankedList | None:
        """Return the n best products not in ``exclude``.

        Returns:
            The list, or None when it ran out before n were found and
            products beyond it might have filled the answer.
        """
        ids, scores = self.product_ids, self.scores
        if exclude:
            kept = ~np.isin(ids, np.fromiter(exclude, np.int64, len(exclude)))
            ids, scores = ids[kept], scores[kept]
        if len(ids) < n and not self.complete:
            return None
        return RankedList(ids[:n], scores[:n])


class Ranker(Protocol):
    """Makes users' candidate lists from one version of the live model.

    Attributes:
        key: Names the ranker among cached candidates.
        per_user: Whether each user has a list of their own (else one is shared).
    """

    @property
    def key(self) -> str: ...

    @property
    def per_user(self) -> bool: ...

    def model(self, version: ServingModel) -> Recommender:
        """Return the version's model that ranks (its name is the answer's strategy)."""
        ...

    def knows(self, version: ServingModel, user_id: int | None, history: UserHistory) -> bool:
        """Return whether the ranker can rank this user (a session's user id is None)."""
        ...

    def rank(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        n: int,
        exclude: frozenset[int],
        categories: frozenset[str],
    ) -> RankedList:
        """Return the user's n best products outside ``exclude``, within ``categories`` (if any)."""
        ...

    def candidates(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        depth: int,
    ) -> Candidates:
        """Return the user's candidates within ``categories``, at least ``depth`` when there are."""
        ...


@dataclass(frozen=True)
class PersonalRanker:
    """Ranks each user's products with the version's personal model (or its popularity model).

    A model that folds users in (``FOLD_IN``) scores the user's history as
    it is now, so their latest events count and a user who came after
    training is ranked too; any other model (or any, when the store could
    not be read) ranks the users it was trained on from their training rows.

    Attributes:
        key: Names the ranker among cached candidates.
        popularity: Rank with the popularity model instead (the ``popular``
            A/B strategy: the live version's popularity list, per user).
    """

    key: str = "personal"
    popularity: bool = False
    per_user: bool = True

    def model(self, version: ServingModel) -> Recommender:
        return version.popularity if self.popularity else version.model

    def knows(self, version: ServingModel, user_id: int | None, history: UserHistory) -> bool:
        model = self.model(version)
        if folds_in(model, history):
            # Something to fold in: at least one of the user's products is in
            # the model (and, for a model that learns no dislikes, liked).
            return len(resolved_profile(model, version, history)[0]) > 0
        return user_id is not None and model.knows_user(user_id)

    def rank(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        n: int,
        exclude: frozenset[int],
        categories: frozenset[str],
    ) -> RankedList:
        model = self.model(version)
        allowed = version.allowed(model, categories)
        if folds_in(model, history):
            items, engagement = resolved_profile(model, version, history)
            ranked = model.rank_resolved(items, engagement, n, exclude=exclude, allowed=allowed)
        else:
            assert user_id is not None, "a model without fold-in ranks known users only"
            ranked = model.rank_user(user_id, n, exclude=exclude, allowed=allowed)
        assert ranked is not None, "only users the ranker knows are ranked personally"
        return ranked

    def candidates(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        depth: int,
    ) -> Candidates:
        ranked = self.rank(version, user_id, history, depth, frozenset(), categories)
        return Candidates.of(ranked, complete=len(ranked) < depth)


# Where a history keeps its products as one model resolved them (see resolved_profile).
_RESOLVED = "_resolved_profile"


def resolved_profile(
    model: Recommender, version: ServingModel, history: UserHistory
) -> tuple[np.ndarray, np.ndarray]:
    """Return the user's products the model knows, as (inner items, engagement).

    Resolved once per history and model: choosing the ranker asks whether
    any is known, ranking then folds them in, and both use this one lookup.
    It is kept on the history beside its other derived values (an immutable
    object, read once per request or cached with the answers of one version).
    """
    weights = version.weights
    kept = history.__dict__.get(_RESOLVED)
    if kept is not None and kept[0] is model and (kept[1] is weights or kept[1] == weights):
        return kept[2]
    resolved = model.profile_items(version.profile(history))
    history.__dict__[_RESOLVED] = (model, weights, resolved)
    return resolved


def folds_in(model: Recommender, history: UserHistory) -> bool:
    """Return whether to rank from the user's history (else from their training-time row).

    Only when the store could not be read does a user the model knows keep
    their training-time row: an answer then, if a less fresh one.
    """
    return FOLD_IN in model.capabilities and not history.unavailable


@dataclass(frozen=True)
class PopularRanker:
    """Ranks the version's most-clicked products, the same list for every user."""

    key: str = "popular"
    per_user: bool = False

    def model(self, version: ServingModel) -> Recommender:
        return version.popularity

    def knows(self, version: ServingModel, user_id: int | None, history: UserHistory) -> bool:
        return True

    def rank(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        n: int,
        exclude: frozenset[int],
        categories: frozenset[str],
    ) -> RankedList:
        popularity = version.popularity
        allowed = version.allowed(popularity, categories)
        return popularity.top(n, exclude=exclude, allowed=allowed)

    def candidates(
        self,
        version: ServingModel,
        user_id: int | None,
        history: UserHistory,
        categories: frozenset[str],
        depth: int,
    ) -> Candidates:
        # The popularity list is short and shared by every unknown user: rank it whole.
        popularity = version.popularity
        allowed = version.allowed(popularity, categories)
        return Candidates.of(popularity.top(len(popularity.product_ids), allowed=allowed), True)


@dataclass(frozen=True)
class FallbackRanker:
    """Ranks with the primary ranker the users it knows, and the others with the fallback.

    Attributes:
        primary: The ranker a user gets when it knows them.
        fallback: The ranker of everyone else (it knows every user).
    """

    primary: Ranker
    fallback: Ranker

    def choose(
        self, version: ServingModel, user_id: int | None, history: UserHistory
    ) -> tuple[Ranker, str | None]:
        """Return the ranker of a user, and why it is the fallback when it is.

        The reason says whether the user has events, but none the model can
        use (``not_in_model``: only products it was not trained on, or a
        model that cannot fold users in), or none at all (``unknown_user``).
        """
        if self.primary.knows(version, user_id, history):
            return self.primary, None
        return self.fallback, NOT_IN_MODEL if history.has_events else UNKNOWN_USER


# The live model's list, or the most-clicked products for users it cannot rank.
PERSONAL_OR_POPULAR = FallbackRanker(PersonalRanker(), PopularRanker())
# The popularity list for everyone (the ``popular`` A/B strategy): the
# popularity model ranks the users it was fitted on, the shared list the others.
POPULAR_FOR_EVERYONE = FallbackRanker(
    PersonalRanker(key="popularity", popularity=True), PopularRanker()
)
