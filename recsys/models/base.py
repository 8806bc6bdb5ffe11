"""The interface every recommender implements, and the ranking they share.

A model learns from a *feedback frame*: one row per (user, product) pair with
the columns ``user_id``, ``product_id`` (positive integers), ``clicks``
(how many times the user touched the product), ``engagement`` (the strength
of interest, used as implicit confidence; 0 or less where dislikes outweigh
it) and ``rating`` (1-5, used by rating models); an optional ``timestamp``
(the pair's latest event) and ``first_timestamp`` (its first) are read only
by models that weigh time (``reads_times``: EASE's recency, ALS's new
arrivals). Only models that learn from negative feedback
(``learns_dislikes``: SVD, through its lowest ratings) see the pairs of
engagement 0 or less; the others learn and fold in without them.
``recsys.data.ratings.derive_ratings`` makes one from an interaction log; the
MovieLens loader makes one from explicit ratings.

Models do no I/O. Their learned state is a dict of numpy arrays plus a dict of
JSON-able parameters (``get_state`` / ``from_state``), so an artifact store can
save it without pickling code. ``from_state`` checks the arrays first (names,
shapes, finiteness, id maps), so a state that would break or silently empty
every answer is refused before it can be served.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from recsys.models.profile import Profile
from recsys.models.ranked import RankedList, RecommendationBatch, id_array, lookup_ids
from recsys.models.state import ArrayShape, ModelState, check_state_arrays

# Capabilities a model may declare (``Recommender.capabilities``).
PREDICT = "predict"
SIMILAR_ITEMS = "similar_items"
EXPLAIN = "explain"
# Scores a user from their products alone (``rank_profile``), the item side fixed.
FOLD_IN = "fold_in"

# Not a model but a choice: train every candidate and serve the best
# (``recsys.models.AUTO_CANDIDATES``; recorded as ``selected_by`` in artifacts).
AUTO = "auto"

FEEDBACK_COLUMNS = ("user_id", "product_id", "clicks", "engagement", "rating")

# Users are scored in chunks so a large catalog never needs a
# users x items matrix bigger than this many cells at once.
_SCORE_CHUNK_CELLS = 8_000_000

# Up to this many products a ranking sorts the whole row; past it, a
# partition finds the n best first (measured: equal at about 1,000 products).
_SORT_WHOLE_ROW = 500
# Products left out of a row up to which each is looked up alone (a user's few purchases).
_MASK_ONE_BY_ONE = 8


class NotFittedError(RuntimeError):
    """A model was asked to recommend before ``fit``."""


def validate_feedback(feedback: pd.DataFrame) -> None:
    """Raise ``ValueError`` when a frame is not a usable feedback frame.

    Args:
        feedback: The frame to check.
    """
    missing = [c for c in FEEDBACK_COLUMNS if c not in feedback.columns]
    if missing:
        raise ValueError(
            f"feedback frame lacks column(s) {missing}; expected {list(FEEDBACK_COLUMNS)}"
        )
    if feedback.empty:
        raise ValueError("feedback frame is empty: a model needs at least one interaction")


class Recommender(ABC):
    """Base class: id mapping, unknown users, exclusions and top-n ranking.

    A subclass sets ``name``, declares its learned arrays in ``state_shapes``,
    learns in ``_fit`` and scores in ``_score``; the base class turns scores
    into ranked lists and checks saved states. Ties are broken by ascending
    product id, because inner item indices follow ascending raw ids.
    """

    name: ClassVar[str]
    # Name -> expected shape of each array ``_learned_arrays`` returns.
    state_shapes: ClassVar[Mapping[str, ArrayShape]]
    # What the model can do besides ranking, declared once per class and
    # checked by callers before they ask: PREDICT (ratings for pairs),
    # SIMILAR_ITEMS (neighbours of a product).
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Sizes taken from another array's sum rather than from an array's length,
    # e.g. {"nnz": "history_lengths"}: every "nnz" axis must equal that sum.
    derived_sizes: ClassVar[Mapping[str, str]] = {}
    # Arrays of inner indices -> the size they index ("n_users" or "n_items");
    # checked to be integers in range, so a stored index can never point outside.
    index_arrays: ClassVar[Mapping[str, str]] = {}
    # Whether pairs of engagement 0 or less (disliked more than liked) teach
    # the model something; the others' confidences and similarities need
    # positive interest, so those pairs are left out of their input.
    learns_dislikes: ClassVar[bool] = False

    @property
    def reads_times(self) -> bool:
        """Whether the model reads when a user touched each product (a frame's ``timestamp``).

        Training then reads each event's time from the store, which it
        otherwise spares (EASE with ``recency``).
        """
        return False

    def __init__(self) -> None:
        # Sorted raw ids; empty until fitted (a fitted model knows at least one of each).
        self.user_ids: np.ndarray = np.empty(0, dtype=np.int64)
        self.product_ids: np.ndarray = np.empty(0, dtype=np.int64)

    # -- learning -----------------------------------------------------------

    def fit(self, feedback: pd.DataFrame) -> Self:
        """Learn from a feedback frame and return self.

        Args:
            feedback: One row per (user, product); see the module docstring.
        """
        validate_feedback(feedback)
        if not self.learns_dislikes:
            liked = feedback["engagement"].to_numpy() > 0
            if not liked.all():
                feedback = feedback[liked]
                validate_feedback(feedback)
        self.user_ids = np.unique(feedback["user_id"].to_numpy(dtype=np.int64))
        self.product_ids = np.unique(feedback["product_id"].to_numpy(dtype=np.int64))
        users = np.searchsorted(self.user_ids, feedback["user_id"].to_numpy(dtype=np.int64))
        items = np.searchsorted(self.product_ids, feedback["product_id"].to_numpy(dtype=np.int64))
        self._fit(feedback, users, items)
        return self

    @abstractmethod
    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        """Learn; ``users`` and ``items`` are the rows' inner indices."""

    @abstractmethod
    def _score(self, users: np.ndarray) -> np.ndarray:
        """Return a (len(users), n_items) score matrix for inner user indices."""

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        """Return one user's score row from their inner items and engagement (FOLD_IN).

        The row is a new array: ranking masks it in place.
        """
        raise NotImplementedError(f"model {self.name!r} cannot fold a user in")

    def _item_vectors(self) -> np.ndarray:
        """Return item embeddings for ``similar_items`` (models with SIMILAR_ITEMS)."""
        raise NotImplementedError(f"model {self.name!r} cannot list similar items")

    def predict(self, user_ids: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        """Predict ratings for (user, product) pairs (models with PREDICT).

        Args:
            user_ids: Raw user ids.
            product_ids: Raw product ids, same length.

        Raises:
            NotImplementedError: The model does not predict ratings.
        """
        raise NotImplementedError(f"model {self.name!r} does not predict ratings")

    # -- state ----------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """Return the hyper-parameters as a JSON-able dict."""
        return {}

    def get_state(self) -> ModelState:
        """Return the fitted model as arrays and parameters (no code, no pickle)."""
        self._require_fitted()
        arrays = {"user_ids": self.user_ids, "product_ids": self.product_ids}
        arrays.update(self._learned_arrays())
        return ModelState(arrays=arrays, params={"model": self.name, **self.params()})

    @classmethod
    def validate_state(cls, state: ModelState) -> None:
        """Check that a state's arrays can be served before a model is built from them.

        The id maps must be non-empty 1-D integer arrays of strictly
        increasing ids from 1; every array named in ``state_shapes`` must be
        present, numeric, finite and of its declared shape. Arrays not
        declared are ignored.

        Args:
            state: A state as ``get_state`` returns it, for example read from disk.

        Raises:
            ValueError: Naming the first array at fault and what is wrong with it.
        """
        check_state_arrays(
            state.all_arrays(), cls.state_shapes, cls.derived_sizes, cls.index_arrays
        )

    @classmethod
    def from_state(cls, state: ModelState) -> Self:
        """Rebuild a fitted model from ``get_state``'s output.

        Raises:
            ValueError: The arrays fail ``validate_state``, or some are streamed
                (those are published, then loaded).
        """
        if state.streamed:
            raise ValueError(f"arrays {sorted(state.streamed)} are in blocks; load them published")
        cls.validate_state(state)
        params = {k: v for k, v in state.params.items() if k != "model"}
        model = cls(**params)
        model.user_ids = np.asarray(state.arrays["user_ids"], dtype=np.int64)
        model.product_ids = np.asarray(state.arrays["product_ids"], dtype=np.int64)
        model._load_learned_arrays(state.arrays)
        return model

    @abstractmethod
    def _learned_arrays(self) -> dict[str, np.ndarray]:
        """Return the learned arrays (besides the id maps)."""

    @abstractmethod
    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what ``_learned_arrays`` returned."""

    # -- answering ------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self.user_ids.size > 0

    def knows_user(self, user_id: int) -> bool:
        """Return whether the model learned anything about this user."""
        self._require_fitted()
        return bool(lookup_ids(self.user_ids, np.array([user_id]))[1][0])

    def recommend(
        self,
        user_ids: Iterable[int],
        n: int,
        exclude: Mapping[int, Collection[int] | np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
    ) -> RecommendationBatch:
        """Rank the n best products for each user.

        Args:
            user_ids: Raw user ids.
            n: How many products per user (fewer when fewer remain).
            exclude: Raw product ids to leave out (a set or an id array), per
                raw user id (for example what the user already bought, or the
                training items when evaluating).
            allowed: Which products may be ranked at all, for every user: a
                boolean mask over ``product_ids`` (a category filter); None
                allows all.

        Returns:
            Ranked lists for the known users; unknown users are listed, not raised.
        """
        self._require_fitted()
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        requested = np.asarray(list(user_ids), dtype=np.int64)
        inner, known = lookup_ids(self.user_ids, requested)
        unknown = [int(u) for u in requested[~known]]
        known_raw, known_inner = requested[known], inner[known]

        lists: dict[int, RankedList] = {}
        chunk = max(1, _SCORE_CHUNK_CELLS // max(1, len(self.product_ids)))
        for start in range(0, len(known_raw), chunk):
            raw = known_raw[start : start + chunk]
            scores = np.array(self._score(known_inner[start : start + chunk]), dtype=np.float64)
            if allowed is not None:
                # copyto broadcasts the mask over the rows: 4x faster than scores[:, ~allowed].
                np.copyto(scores, -np.inf, where=~allowed)
            if exclude:
                self._mask_excluded(scores, raw, exclude)
            for row, user in enumerate(raw):
                lists[int(user)] = self._top_n(scores[row], n)
        return RecommendationBatch(lists=lists, unknown_users=unknown)

    def rank_user(
        self,
        user_id: int,
        n: int,
        exclude: Collection[int] | np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> RankedList | None:
        """Rank the n best products for one user, as ``recommend`` would.

        The serving path asks for one user at a time: this skips the batch
        bookkeeping (id arrays, chunks, the per-user mapping), which costs
        more than scoring a small catalog.

        Args:
            user_id: A raw user id.
            n: How many products (fewer when fewer remain).
            exclude: Raw product ids to leave out.
            allowed: A boolean mask over ``product_ids`` (None allows all).

        Returns:
            The ranked list, or None when the model does not know the user.
        """
        self._require_fitted()
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        inner = int(np.searchsorted(self.user_ids, user_id))
        if inner == len(self.user_ids) or self.user_ids[inner] != user_id:
            return None
        row = self._score(np.array([inner]))[0]
        if allowed is None:
            scores = np.array(row, dtype=np.float64)
        else:
            # One pass that copies and masks (copyto after a copy takes two).
            scores = np.where(allowed, np.asarray(row, dtype=np.float64), -np.inf)
        if exclude is not None and len(exclude) > 0:
            self._mask_products(scores, exclude)
        return self._top_n(scores, n)

    def profile_items(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """Return a profile's products the model knows, as (inner items, engagement)."""
        self._require_fitted()
        inner, known = lookup_ids(self.product_ids, profile.product_ids)
        if not self.learns_dislikes:
            known = known & (profile.engagement > 0)
        return inner[known], profile.engagement[known]

    def rank_profile(
        self,
        profile: Profile,
        n: int,
        exclude: Collection[int] | np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> RankedList | None:
        """Rank the n best products for a user described by their products alone (FOLD_IN).

        The user's training-time row, if any, is not used: a user whose
        products have not changed since training gets the training-time
        ranking where the model's maths says so (EASE, item-kNN), or the
        one a fresh solve of their factors gives (ALS, SVD).

        Args:
            profile: The user's products and engagement.
            n: How many products (fewer when fewer remain).
            exclude: Raw product ids to leave out.
            allowed: A boolean mask over ``product_ids`` (None allows all).

        Returns:
            The ranked list, or None when the profile names no product the
            model knows (nothing to fold in).
        """
        if FOLD_IN not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot fold a user in")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        return self.rank_resolved(*self.profile_items(profile), n, exclude, allowed)

    def rank_resolved(
        self,
        items: np.ndarray,
        engagement: np.ndarray,
        n: int,
        exclude: Collection[int] | np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> RankedList | None:
        """Rank as ``rank_profile`` does a profile already resolved by ``profile_items``.

        Serving resolves a user's products once per request (to tell whether
        the model knows any of them, then to rank): this ranks them without
        looking them up again.

        Args:
            items: The profile's inner items (``profile_items``).
            engagement: The engagement with each.
            n: How many products (fewer when fewer remain).
            exclude: Raw product ids to leave out.
            allowed: A boolean mask over ``product_ids`` (None allows all).

        Returns:
            The ranked list, or None when there is no item to fold in.
        """
        if FOLD_IN not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot fold a user in")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if len(items) == 0:
            return None
        # The row is the model's new array: masked in place, not copied first.
        row = np.asarray(self._score_profile(items, engagement), dtype=np.float64)
        return self._rank_row(row, n, exclude, allowed)

    def score_profiles(self, profiles: Sequence[Profile]) -> list[np.ndarray | None]:
        """Return the score rows ``rank_profile`` ranks, for many users at once (FOLD_IN).

        A model that can scores them all in one matrix product (EASE); the
        others one by one. Rank each row with ``rank_scores``.

        Returns:
            Per profile, its row over ``product_ids``, or None when it names
            no product the model knows.
        """
        if FOLD_IN not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot fold a user in")
        rows: list[np.ndarray | None] = []
        for profile in profiles:
            items, engagement = self.profile_items(profile)
            rows.append(self._score_profile(items, engagement) if len(items) else None)
        return rows

    def rank_scores(
        self,
        row: np.ndarray,
        n: int,
        exclude: Collection[int] | np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> RankedList:
        """Rank one user's score row as ``rank_profile`` does: masks, exclusions, then the top n."""
        return self._rank_row(np.array(row, dtype=np.float64), n, exclude, allowed)

    def _rank_row(
        self,
        scores: np.ndarray,
        n: int,
        exclude: Collection[int] | np.ndarray | None,
        allowed: np.ndarray | None,
    ) -> RankedList:
        """Rank a float64 score row of the caller's own, masking it in place."""
        if allowed is not None:
            np.copyto(scores, -np.inf, where=~allowed)
        if exclude is not None and len(exclude) > 0:
            self._mask_products(scores, exclude)
        return self._top_n(scores, n)

    def similar_items(
        self, product_id: int, n: int, exclude: Collection[int] | np.ndarray | None = None
    ) -> RankedList:
        """Rank the n products most similar to one product.

        Similarity is the cosine of item vectors, or a model's item-item
        weights (EASE, item-kNN).

        Args:
            product_id: A raw product id the model knows.
            n: How many products (the product itself is left out).
            exclude: Raw product ids never to list (unavailable products).

        Raises:
            KeyError: The model does not know the product.
            NotImplementedError: The model lacks the SIMILAR_ITEMS capability.
        """
        if SIMILAR_ITEMS not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot list similar items")
        self._require_fitted()
        (i,), (found,) = lookup_ids(self.product_ids, np.array([product_id]))
        if not found:
            raise KeyError(product_id)
        scores = np.array(self._similarity_to(int(i)), dtype=np.float64)
        scores[i] = -np.inf
        if exclude is not None and len(exclude) > 0:
            self._mask_products(scores, exclude)
        return self._top_n(scores, n)

    def _similarity_to(self, item: int) -> np.ndarray:
        """Return every item's similarity to one inner item (cosine of item vectors)."""
        vectors = self._item_vectors()
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        return (vectors @ vectors[item]) / (norms * norms[item])

    def item_similarities(self, product_ids: np.ndarray) -> np.ndarray:
        """Return the (m, m) similarity of known products to each other (SIMILAR_ITEMS).

        The default is the cosine of the model's item vectors; models with
        item-item weights use those. The diagonal is 1.

        Args:
            product_ids: Raw product ids the model knows.

        Raises:
            KeyError: A product is unknown.
            NotImplementedError: The model lacks the SIMILAR_ITEMS capability.
        """
        if SIMILAR_ITEMS not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot list similar items")
        self._require_fitted()
        inner, found = lookup_ids(self.product_ids, np.asarray(product_ids, dtype=np.int64))
        if not found.all():
            raise KeyError(int(np.asarray(product_ids)[~found][0]))
        similarity = self._pairwise_similarity(inner)
        np.fill_diagonal(similarity, 1.0)
        return similarity

    def _pairwise_similarity(self, items: np.ndarray) -> np.ndarray:
        """Return the cosine of the item vectors of inner items, pairwise."""
        vectors = np.asarray(self._item_vectors()[items], dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        unit = vectors / norms[:, None]
        return unit @ unit.T

    def explain(self, profile: Profile, product_id: int, n: int = 3) -> RankedList:
        """Return the user's past products that raised a product's score most (EXPLAIN).

        Only the profile's products with a positive contribution are listed,
        best first, ties by product id; what a contribution is depends on the
        model (see its ``_contributions``).

        Args:
            profile: The user's products and engagement (as ``rank_profile`` scored them).
            product_id: A raw product id the model knows (usually one it recommended).
            n: At most this many past products.

        Raises:
            KeyError: The product is unknown.
            NotImplementedError: The model lacks the EXPLAIN capability.
        """
        if EXPLAIN not in self.capabilities:
            raise NotImplementedError(f"model {self.name!r} cannot explain its scores")
        (i,), (item_known,) = lookup_ids(self.product_ids, np.array([product_id]))
        if not item_known:
            raise KeyError(product_id)
        past, engagement = self.profile_items(profile)
        weights = self._contributions(past, engagement, int(i))
        scores = np.full(len(self.product_ids), -np.inf)
        scores[past] = np.where(weights > 0, weights, -np.inf)
        return self._top_n(scores, n)

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        """Return each past inner item's contribution to an inner item's score."""
        raise NotImplementedError(f"model {self.name!r} cannot explain its scores")

    # -- helpers --------------------------------------------------------------

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"model {self.name!r} is not fitted; call fit() first")

    def _mask_excluded(
        self,
        scores: np.ndarray,
        users: np.ndarray,
        exclude: Mapping[int, Collection[int] | np.ndarray],
    ) -> None:
        for row, user in enumerate(users):
            banned = exclude.get(int(user))
            if banned is not None and len(banned) > 0:
                self._mask_products(scores[row], banned)

    def _mask_products(self, row_scores: np.ndarray, banned: Collection[int] | np.ndarray) -> None:
        """Set the scores of raw product ids (the known ones) to -inf in one user's row."""
        if len(banned) <= _MASK_ONE_BY_ONE and not isinstance(banned, np.ndarray):
            # A user's few purchases: a search each costs less than the arrays of lookup_ids.
            ids, count = self.product_ids, len(self.product_ids)
            for product_id in banned:
                at = int(ids.searchsorted(product_id))
                if at < count and ids[at] == product_id:
                    row_scores[at] = -np.inf
            return
        pos, hit = lookup_ids(self.product_ids, id_array(banned))
        row_scores[pos[hit]] = -np.inf

    def _top_n(self, scores: np.ndarray, n: int) -> RankedList:
        """Return the n best finite scores, ties by ascending product id."""
        if len(scores) <= _SORT_WHOLE_ROW:
            # A small catalog: one stable sort (ties keep the inner, that is
            # the id, order) costs half the partition route's five passes.
            order = np.argsort(-scores, kind="stable")[:n]
            order = order[np.isfinite(scores[order])]
            return RankedList(product_ids=self.product_ids[order], scores=scores[order])
        # The n-th best of the whole row first: excluded products (-inf) sort
        # below every finite score, so when it is finite and at least n
        # products reach it, they hold the n best finite ones (and every one
        # tied with the n-th, so the id tie-break is exact) without first
        # gathering the finite scores.
        allowed = None
        if n < len(scores):
            nth_best = np.partition(scores, len(scores) - n)[len(scores) - n]
            if np.isfinite(nth_best):
                allowed = np.flatnonzero(scores >= nth_best)
        if allowed is None or len(allowed) < n:  # few finite scores (or a NaN among the best)
            allowed = np.flatnonzero(np.isfinite(scores))
            if len(allowed) > n:
                nth_best = np.partition(scores[allowed], len(allowed) - n)[len(allowed) - n]
                allowed = allowed[scores[allowed] >= nth_best]
        # lexsort: last key is primary; inner index order equals product id order.
        order = allowed[np.lexsort((allowed, -scores[allowed]))][:n]
        return RankedList(product_ids=self.product_ids[order].copy(), scores=scores[order].copy())
