"""Exploration: a share of each list goes to new or rarely shown products, so they get feedback.

A product the live model never trained on can never win a slot on its
score, and one it rarely shows collects no clicks to change that. With
``EXPLORATION`` at 0.1, about one slot in ten of a first page goes to the
best of those products for the user:

- the pool: products of the catalog shown fewer than ``EXPLORATION_IMPRESSIONS``
  times so far (every process's counts, ``recsys.online.impressions``), at
  most ``POOL_SIZE`` of them (new ones first, then the least shown), made
  once per model and sync; a request keeps those within its filters, not
  already in the list and not in the user's history;
- the priority: ``(content similarity + 1 if new) x (1 - impressions /
  target) + jitter``: products the model does not know first, those like
  what the user engaged with (their history's clicks and purchases, weighted
  as training weighs them; ``recsys.models.content``) before the others,
  fewer impressions before more; the jitter (up to ``JITTER``) spreads
  users with the same taste over near-equal products;
- the slots: ``n x share`` of them (the fraction a seeded coin), at seeded
  places in the lower half of the page, so the model's best keep the top.

Every draw is a hash of (user, model version), or of (session's products,
model version) for an anonymous session, so identical requests get
the same list; it changes only with the user's history, the catalog, or the
impression totals as they are synced (every ``EXPLORATION_SYNC_SECONDS``).
Explored products are marked (``explored: true``) and carry the score of
the slot they fill, so a list's scores still fall from first to last.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from prometheus_client import Counter

from recsys.models.base import Recommender
from recsys.models.content import ContentModel, cosine
from recsys.models.ranked import RankedList
from recsys.online.answers import Reason, RecommendationAnswer, RecommendedProduct, RecommendRequest
from recsys.online.impressions import ImpressionCounter
from recsys.online.live_model import ServingModel
from recsys.store.artifacts import version_number
from recsys.store.events import UserHistory

EXPLORED_SLOTS = Counter("recsys_explored_slots", "Answer slots given to explored products")
# Spreads users of the same taste over near-equal products (priorities are about 0..2).
JITTER = 0.1
# Products a request chooses from at most: new ones first, then the least shown.
POOL_SIZE = 1000


@dataclass(frozen=True)
class CatalogContent:
    """What exploration knows of one catalog: the content model and each product's category.

    Attributes:
        content: The content model fitted on the catalog.
        categories: Each product's category (None when unknown), aligned with
            ``content.product_ids``.
        frame: The catalog it was fitted on (a refresh with the same one is skipped).
    """

    content: ContentModel
    categories: np.ndarray
    frame: pd.DataFrame

    @classmethod
    def fit(cls, catalog: pd.DataFrame) -> CatalogContent:
        """Fit the content model on a ``product_id, name, category, price`` catalog."""
        content = ContentModel.fit(catalog)
        by_id = catalog.reindex(columns=["product_id", "category"]).set_index("product_id")
        by_id = by_id[~by_id.index.duplicated()]["category"]
        categories = by_id.reindex(content.product_ids).astype(object)
        values = np.array([c if isinstance(c, str) else None for c in categories], dtype=object)
        return cls(content, values, catalog)


@dataclass(frozen=True)
class ExplorationPool:
    """The products one model's users may get in exploration slots, as of one sync.

    Attributes:
        product_ids: Raw ids: new products first, then the least shown.
        categories: Each one's category (None when unknown).
        new: Whether the model never trained on it.
        fresh: 1 - impressions / target: 1 for a product never shown.
        vectors: Their content vectors (rows of the content model's).
    """

    product_ids: np.ndarray
    categories: np.ndarray
    new: np.ndarray
    fresh: np.ndarray
    vectors: sp.csr_matrix
    # The pool's positions in ascending id order, and the ids in that order:
    # a request finds its few seen products by binary search (np.isin over
    # the whole pool cost more than the rest of the choice).
    by_id: np.ndarray = field(init=False, repr=False, compare=False)
    sorted_ids: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = np.argsort(self.product_ids, kind="stable")
        object.__setattr__(self, "by_id", by_id)
        object.__setattr__(self, "sorted_ids", self.product_ids[by_id])

    def unseen(self, seen: np.ndarray) -> np.ndarray:
        """Return a mask over the pool: True for the products not in ``seen``."""
        keep = np.ones(len(self.product_ids), dtype=bool)
        if len(seen) and len(self.sorted_ids):
            at = np.minimum(np.searchsorted(self.sorted_ids, seen), len(self.sorted_ids) - 1)
            keep[self.by_id[at[self.sorted_ids[at] == seen]]] = False
        return keep

    @classmethod
    def of(
        cls, catalog: CatalogContent, impressions: np.ndarray, target: int, model: Recommender
    ) -> ExplorationPool:
        """Return the pool of products shown fewer than ``target`` times, for one model."""
        ids = catalog.content.product_ids
        under = np.flatnonzero(impressions < target)
        new = ~np.isin(ids[under], model.product_ids)
        # New products first, then the fewest impressions, then by id; a bounded
        # pool keeps each answer's work the same however large the catalog.
        order = np.lexsort((ids[under], impressions[under], ~new))[:POOL_SIZE]
        rows = under[order]
        return cls(
            ids[rows],
            catalog.categories[rows],
            new[order],
            1.0 - impressions[rows] / target,
            catalog.content.vectors[rows],
        )


@dataclass(frozen=True)
class ExplorationState:
    """One catalog and the impression totals as last synced, swapped whole.

    Attributes:
        catalog: The catalog's content.
        impressions: Each catalog product's impressions so far (aligned).
        target: Impressions after which a product leaves the pool.
    """

    catalog: CatalogContent
    impressions: np.ndarray
    target: int
    # Per model: its pool, made at the first request that needs it.
    _pools: weakref.WeakKeyDictionary = field(
        init=False, default_factory=weakref.WeakKeyDictionary, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        init=False, default_factory=threading.Lock, repr=False, compare=False
    )

    def pool(self, model: Recommender) -> ExplorationPool:
        """Return the pool for the users of ``model`` (made once per model and sync)."""
        # Made once, then read by every request: only its making takes the lock.
        found = self._pools.get(model)
        if found is not None:
            return found
        with self._lock:
            found = self._pools.get(model)
            if found is None:
                found = ExplorationPool.of(self.catalog, self.impressions, self.target, model)
                self._pools[model] = found
            return found


@dataclass(frozen=True)
class ShownList:
    """A page as it is shown: the model's products with the explored ones in their slots.

    Attributes:
        ranked: The page, best first.
        explored: Positions (in ``ranked``) of explored products.
    """

    ranked: RankedList
    explored: frozenset[int] = frozenset()

    def describe(self, version: ServingModel) -> list[RecommendedProduct]:
        """Return the page as named products, the explored ones marked."""
        products = version.describe(self.ranked)
        for position in self.explored:
            item = products[position]
            products[position] = RecommendedProduct(
                item.product_id, item.name, item.category, item.score, explored=True
            )
        return products

    def explain(
        self, version: ServingModel, model: Recommender, history: UserHistory
    ) -> list[list[Reason]]:
        """Return the user's past products behind each model product (none for explored ones)."""
        if not self.explored:
            return version.explain(model, history, self.ranked)
        kept = [i for i in range(len(self.ranked)) if i not in self.explored]
        reasons = iter(
            version.explain(
                model,
                history,
                RankedList(self.ranked.product_ids[kept], self.ranked.scores[kept]),
            )
        )
        return [[] if i in self.explored else next(reasons) for i in range(len(self.ranked))]


class Exploration:
    """Gives a share of each first page to new or rarely shown products.

    Args:
        share: The share of slots explored (0 turns exploration off).
        target: Impressions after which a product is no longer explored.
        impressions: Counts what answers show; None counts nothing.
    """

    def __init__(self, share: float, target: int, impressions: ImpressionCounter | None = None):
        if not 0 <= share <= 1:
            raise ValueError(f"the exploration share must be from 0 to 1, got {share}")
        self.share = share
        self.target = target
        self.impressions = impressions
        self._totals: Mapping[int, int] = {}
        self._state: ExplorationState | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def learn_catalog(self, catalog: pd.DataFrame) -> None:
        """Fit the content model on the catalog (when it changed); call it off the request path."""
        if not self.enabled:
            return
        state = self._state
        if state is not None and state.catalog.frame.equals(catalog):
            return
        fitted = CatalogContent.fit(catalog)
        with self._lock:
            self._state = self._snapshot(fitted, self._totals)

    def learn_impressions(self, totals: Mapping[int, int]) -> None:
        """Take every product's impressions so far (from ``ImpressionCounter.sync``)."""
        with self._lock:
            self._totals = totals
            if self._state is not None:
                self._state = self._snapshot(self._state.catalog, totals)

    def sync(self) -> None:
        """Add this process's impressions to the store's and take everyone's totals.

        Raises:
            One of ``STORE_OUTAGES`` when the store is unavailable.
        """
        if self.enabled and self.impressions is not None:
            self.learn_impressions(self.impressions.sync())

    def served(self, answer: RecommendationAnswer) -> None:
        """Count an answer's impressions and explored slots (cached answers too)."""
        if not self.enabled:
            return
        if self.impressions is not None:
            self.impressions.count(item.product_id for item in answer.recommendations)
        explored = sum(1 for item in answer.recommendations if item.explored)
        if explored:
            EXPLORED_SLOTS.inc(explored)

    def _snapshot(self, catalog: CatalogContent, totals: Mapping[int, int]) -> ExplorationState:
        ids = catalog.content.product_ids.tolist()
        impressions = np.fromiter((totals.get(p, 0) for p in ids), np.int64, len(ids))
        return ExplorationState(catalog, impressions, self.target)

    def explore(
        self,
        version: ServingModel,
        ranked: RankedList,
        request: RecommendRequest,
        history: UserHistory,
        left_out: frozenset[int],
    ) -> ShownList:
        """Return a first page with its exploration slots filled.

        Args:
            version: The version answering (its personal model tells which
                products are new).
            ranked: The page as the model made it, best first.
            request: The request (its user, length, page and filters).
            history: The user's history (their products steer the choice).
            left_out: Products the list must not hold.
        """
        state = self._state
        if state is None or request.offset > 0 or len(ranked) == 0:
            return ShownList(ranked)
        seed = _seed(request.user_id, history, version.version)
        slots = _slot_count(request.n, self.share, seed)
        if slots == 0:
            return ShownList(ranked)
        picked = self._pick(state, version, ranked, request, history, left_out, slots, seed)
        if len(picked) == 0:
            return ShownList(ranked)
        return _fill(ranked, picked, request.n, seed)

    def _pick(
        self,
        state: ExplorationState,
        version: ServingModel,
        ranked: RankedList,
        request: RecommendRequest,
        history: UserHistory,
        left_out: frozenset[int],
        slots: int,
        seed: int,
    ) -> np.ndarray:
        """Return the ids of the ``slots`` products of highest priority in the pool."""
        pool = state.pool(version.model)
        ids = pool.product_ids
        if len(ids) == 0:  # every product was shown often enough
            return ids
        # Products the user already clicked need no exploring: they have their feedback.
        banned = np.fromiter(left_out, np.int64, len(left_out))
        # Unavailable products are never shown, explored or not.
        seen = np.concatenate(
            [ranked.product_ids, banned, history.product_array, version.hidden_ids]
        )
        keep = pool.unseen(seen)
        categories = request.filters.categories
        if categories:
            keep &= np.fromiter((c in categories for c in pool.categories), bool, len(ids))
        if not keep.any():
            return ids[:0]
        profile = history.profile(version.weights)
        taste = state.catalog.content.taste(profile.product_ids, profile.engagement)
        similarity = cosine(pool.vectors, taste)[keep]
        ids = ids[keep]
        priority = (similarity + pool.new[keep]) * pool.fresh[keep]
        priority += JITTER * _unit(seed ^ _PRODUCTS, ids)
        return ids[_best(priority, ids, slots)]


# Salts of the draws made from one (user, version) seed.
_SLOTS, _PLACES, _PRODUCTS = 0x51, 0x91, 0xC3


def _seed(user_id: int | None, history: UserHistory, version: str) -> int:
    """Return the seed of a user's draws under a model version (stable across processes).

    The version counts by its number (``v00002``), not its publishing time,
    so that the same data and model give the same lists on another day too.
    An anonymous session (no user id) is seeded by its products: the same
    session gets the same list.
    """
    who = f"user {user_id}" if user_id is not None else f"session {history.product_ids}"
    number = version_number(version)
    digest = hashlib.blake2b(f"{who}/{number or version}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _unit(seed: int, keys: np.ndarray) -> np.ndarray:
    """Return one number in [0, 1) per key, always the same for a seed and key (splitmix64)."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys).astype(np.uint64) + np.uint64(seed)
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


_MASK64 = (1 << 64) - 1


def _unit_of(seed: int, key: int) -> float:
    """Return ``_unit(seed, [key])[0]`` in Python integers (one draw: no arrays to make)."""
    z = (key + seed) & _MASK64
    z = (z * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z = z ^ (z >> 31)
    return (z >> 11) / float(1 << 53)


def _slot_count(n: int, share: float, seed: int) -> int:
    """Return how many of n slots to explore: n x share, the fraction a seeded coin."""
    expected = n * share
    whole = int(expected)
    return min(n, whole + int(_unit_of(seed ^ _SLOTS, 0) < expected - whole))


def _best(priority: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Return the positions of the k highest priorities, ties by ascending id, best first.

    What ``np.lexsort((ids, -priority))[:k]`` gives, sorting only the
    products that reach the k-th highest priority (one or two of a
    thousand) instead of the whole pool.
    """
    if k >= len(priority):
        return np.lexsort((ids, -priority))[:k]
    kth = np.partition(priority, len(priority) - k)[len(priority) - k]
    reached = np.flatnonzero(priority >= kth)
    if len(reached) < k:  # a NaN among the highest: sort them all, as lexsort would
        return np.lexsort((ids, -priority))[:k]
    return reached[np.lexsort((ids[reached], -priority[reached]))][:k]


def _fill(ranked: RankedList, picked: np.ndarray, n: int, seed: int) -> ShownList:
    """Return the page with ``picked`` at seeded places in its lower half."""
    length = min(n, len(ranked) + len(picked))
    slots = len(picked)
    first = min(length // 2, length - slots)
    candidates = np.arange(first, length)
    places = set(candidates[np.argsort(_unit(seed ^ _PLACES, candidates))[:slots]].tolist())
    model_ids, model_scores = ranked.product_ids, ranked.scores
    ids = np.empty(length, np.int64)
    scores = np.empty(length, np.float64)
    taken = explored = 0
    for position in range(length):
        # An explored product carries the score of the model product it displaces.
        score = model_scores[min(taken, len(model_scores) - 1)]
        if position in places:
            ids[position], scores[position] = picked[explored], score
            explored += 1
        else:
            ids[position], scores[position] = model_ids[taken], score
            taken += 1
    return ShownList(RankedList(ids, scores), frozenset(places))
