"""Exploration: a share of each list goes to new or rarely shown products, so they get feedback.

A product the live model never trained on can never win a slot on its
score, and one it rarely shows collects no clicks to change that. With
``EXPLORATION`` at 0.1, about one slot in ten of a first page goes to the
best of those products for the user:

- the pool: products of the catalog shown fewer than ``EXPLORATION_IMPRESSIONS``
  times so far (every process's counts, ``recsys.online.impressions``), at
  most ``POOL_SIZE`` of them (new ones first, then the least shown; the
  unavailable ones then left out), made once per model and sync; a request
  keeps those within its filters, not already in the list and not in the
  user's history;
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from prometheus_client import Counter

from recsys.models.base import Recommender
from recsys.models.content import ContentModel
from recsys.models.ranked import RankedList
from recsys.models.seeded import seeded_unit, seeded_units
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

    Made once per model, sync and set of unavailable products, with what each
    request reads from it laid out beforehand: where each product is, its
    category as a code, its jitter key, its content vector as dense columns.

    Attributes:
        product_ids: Raw ids: new products first, then the least shown.
        categories: Each one's category (None when unknown).
        new: Whether the model never trained on it.
        fresh: 1 - impressions / target: 1 for a product never shown.
        vectors: Their content vectors (rows of the content model's).
        hidden: The unavailable products left out of it.
    """

    product_ids: np.ndarray
    categories: np.ndarray
    new: np.ndarray
    fresh: np.ndarray
    vectors: sp.csr_matrix
    hidden: frozenset[int] = frozenset()
    # Each product's position: a request finds its few seen products with a
    # dictionary lookup each (numpy's fixed cost per call is the larger part
    # of a search over twenty ids).
    positions: dict[int, int] = field(init=False, repr=False, compare=False)
    # The categories named once, and each product's as an index into them.
    category_names: list[str | None] = field(init=False, repr=False, compare=False)
    category_codes: np.ndarray = field(init=False, repr=False, compare=False)
    # The ids as the jitter's hash reads them.
    keys: np.ndarray = field(init=False, repr=False, compare=False)
    # The content vectors column by column: row j holds every product's j-th
    # stored feature and its weight (0 past a product's last). Summed down the
    # rows they give the sparse product's sums in the same order, so the same
    # bits, without scipy's cost per call.
    features: np.ndarray = field(init=False, repr=False, compare=False)
    weights: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = self.product_ids.tolist()
        codes: dict[str | None, int] = {}
        category_codes = np.fromiter(
            (codes.setdefault(c, len(codes)) for c in self.categories.tolist()), np.int64, len(ids)
        )
        # Padded cells name feature 0 with weight 0: they add exactly nothing.
        lengths = np.diff(self.vectors.indptr)
        shape = (int(lengths.max(initial=0)), len(ids))
        features, weights = np.zeros(shape, dtype=np.int64), np.zeros(shape)
        places = np.arange(self.vectors.nnz) - np.repeat(self.vectors.indptr[:-1], lengths)
        rows = np.repeat(np.arange(len(ids)), lengths)
        features[places, rows] = self.vectors.indices
        weights[places, rows] = self.vectors.data
        for name, value in (
            ("positions", {p: i for i, p in enumerate(ids)}),
            ("category_names", list(codes)),
            ("category_codes", category_codes),
            ("keys", self.product_ids.astype(np.uint64)),
            ("features", features),
            ("weights", weights),
        ):
            object.__setattr__(self, name, value)

    def unseen(self, *seen: Iterable[int]) -> np.ndarray:
        """Return a mask over the pool: True for the products in none of the ``seen`` groups."""
        keep = np.ones(len(self.product_ids), dtype=bool)
        position = self.positions.get
        found = [at for group in seen for p in group if (at := position(p)) is not None]
        if found:
            keep[found] = False
        return keep

    def in_categories(self, categories: frozenset[str]) -> np.ndarray:
        """Return a mask over the pool: True for the products of any of ``categories``."""
        chosen = np.array([name in categories for name in self.category_names], dtype=bool)
        return chosen[self.category_codes]

    def similarity(self, taste: np.ndarray) -> np.ndarray:
        """Return each product's cosine to a user's taste: ``cosine(self.vectors, taste)``."""
        # np.clip's numbers without its Python wrapper.
        return np.minimum(np.maximum((self.weights * taste[self.features]).sum(axis=0), 0.0), 1.0)

    @classmethod
    def of(
        cls,
        catalog: CatalogContent,
        impressions: np.ndarray,
        target: int,
        model: Recommender,
        hidden: frozenset[int] = frozenset(),
    ) -> ExplorationPool:
        """Return the pool of products shown fewer than ``target`` times, for one model.

        The unavailable products (``hidden``) are left out after the pool is
        cut to its size: what is left is what a request would keep of the
        whole pool, so hiding a product never brings another one in.
        """
        ids = catalog.content.product_ids
        under = np.flatnonzero(impressions < target)
        new = ~np.isin(ids[under], model.product_ids)
        # New products first, then the fewest impressions, then by id; a bounded
        # pool keeps each answer's work the same however large the catalog.
        order = np.lexsort((ids[under], impressions[under], ~new))[:POOL_SIZE]
        if hidden:
            order = order[~np.isin(ids[under[order]], np.fromiter(hidden, np.int64, len(hidden)))]
        rows = under[order]
        return cls(
            ids[rows],
            catalog.categories[rows],
            new[order],
            1.0 - impressions[rows] / target,
            catalog.content.vectors[rows],
            hidden,
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
    # Per model: its pool, made at the first request that needs it (again
    # when the unavailable products change).
    _pools: weakref.WeakKeyDictionary = field(
        init=False, default_factory=weakref.WeakKeyDictionary, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        init=False, default_factory=threading.Lock, repr=False, compare=False
    )

    def pool(self, model: Recommender, hidden: frozenset[int] = frozenset()) -> ExplorationPool:
        """Return the pool for the users of ``model`` without the ``hidden`` products.

        Made once per model, sync and set of unavailable products.
        """
        # Made once, then read by every request: only its making takes the lock.
        found = self._pools.get(model)
        if found is not None and (found.hidden is hidden or found.hidden == hidden):
            return found
        with self._lock:
            found = self._pools.get(model)
            if found is None or found.hidden != hidden:
                found = ExplorationPool.of(
                    self.catalog, self.impressions, self.target, model, hidden
                )
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
        product_ids, explored = answer.shown
        if self.impressions is not None:
            self.impressions.count(product_ids)
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
        pool = state.pool(version.model, version.hidden)
        if len(pool.product_ids) == 0:  # every product was shown often enough
            return pool.product_ids
        # Products the user already clicked need no exploring: they have their feedback.
        keep = pool.unseen(ranked.product_ids.tolist(), left_out, history.product_ids)
        categories = request.filters.categories
        if categories:
            keep &= pool.in_categories(categories)
        if not keep.any():
            return pool.product_ids[:0]
        profile = version.profile(history)
        taste = state.catalog.content.taste(profile.product_ids, profile.engagement)
        # The whole pool's priorities, then the kept ones: the same numbers as
        # keeping first, in fewer numpy calls.
        priority = ((pool.similarity(taste) + pool.new) * pool.fresh)[keep]
        ids = pool.product_ids[keep]
        priority += JITTER * seeded_units(seed ^ _PRODUCTS, pool.keys[keep])
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


def _slot_count(n: int, share: float, seed: int) -> int:
    """Return how many of n slots to explore: n x share, the fraction a seeded coin."""
    expected = n * share
    whole = int(expected)
    return min(n, whole + int(seeded_unit(seed ^ _SLOTS, 0) < expected - whole))


# Up to this many kept products, choosing sorts them all (measured: equal at about 300).
_SORT_WHOLE_POOL = 200


def _best(priority: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Return the positions of the k highest priorities, ties by ascending id, best first.

    What ``np.lexsort((ids, -priority))[:k]`` gives, sorting only the
    products that reach the k-th highest priority (one or two of a
    thousand) instead of a large pool; a short one is sorted whole, which
    costs less than the partition.
    """
    if k >= len(priority) or len(priority) <= _SORT_WHOLE_POOL:
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
    # The places of lowest draw. Python numbers throughout: a page is a few
    # places, and numpy's cost per call is most of a few places' work.
    draws = {place: seeded_unit(seed ^ _PLACES, place) for place in range(first, length)}
    places = frozenset(sorted(draws, key=draws.__getitem__)[:slots])
    model_ids, model_scores = ranked.product_ids.tolist(), ranked.scores.tolist()
    explored = iter(picked.tolist())
    ids, scores = [], []
    taken = 0
    for position in range(length):
        # An explored product carries the score of the model product it displaces.
        scores.append(model_scores[min(taken, len(model_scores) - 1)])
        if position in places:
            ids.append(next(explored))
        else:
            ids.append(model_ids[taken])
            taken += 1
    return ShownList(RankedList(np.array(ids, np.int64), np.array(scores, np.float64)), places)
