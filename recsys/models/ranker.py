"""A two-stage ranker: stage-1 models propose candidates, LightGBM's LambdaRank orders them.

Stage 1 is four of the other models. EASE and popularity each propose their
``depth`` best products the user has not touched (a union of about 75 per
user at depth 50 on a simulated shop); ALS and item-kNN score those
candidates only, so a served answer never ranks the catalog by them. Stage 2
is a LightGBM ``lambdarank`` model over each candidate's features
(``recsys.models.ranker_features``: every stage-1 score and rank, the
product's popularity, mean rating and recency, the user's activity).

Training never looks past the rows it is given. ``fit`` carves validation
parts out of them (``validation_parts``): in ``"time"`` order each user's
latest tenth in time (a seeded random tenth without timestamps), then the
tenth before it, and so on; in ``"random"`` order disjoint seeded random
shares of each user's rows. Stage 2 learns what tells the held-out rows
from the others, so the parts should be drawn as the rows the ranker is
judged on are: the next events for serving and a time split, random rows
for a random holdout. For each part it fits the stage-1 models on the rows
the part learns from, makes candidates for the part's users and labels them
from the part's rows (relevant = rating >= 4, the rule of
``recsys.evaluation``); LightGBM trains on every user with at least one
relevant candidate. It then refits the stage-1 models on all the rows, for
serving. When too few users have a
relevant validation candidate (``min_validation_users``), stage 2 is not
trained: the ranker orders candidates by reciprocal rank fusion of the
stage-1 ranks (sum of 1 / (60 + rank), Cormack et al., SIGIR 2009), says
so in a warning and records it in the state's ``trained`` facts.

Serving runs a scorer (ALS, item-kNN) only when the trees read its
features: one no tree splits on could change no score, so its scores are
left at 0 (rank fusion reads every rank, so it runs them all).

Products outside a user's candidates (their own history among them) are
ranked after every candidate, most popular first, so a list is never
shorter than the catalog allows. The state is the stage-1 models' arrays
under their names (``ease.item_weights``, ...), the product features, and
LightGBM's own text format of the trees as a byte array: no pickle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD
from recsys.models.als import ALSRecommender
from recsys.models.base import EXPLAIN, FOLD_IN, SIMILAR_ITEMS, Recommender
from recsys.models.booster_scoring import MAX_LEAVES, BoosterScorer
from recsys.models.ease import EASERecommender
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.ranked import RankedList, id_array
from recsys.models.ranker_features import (
    FEATURES,
    ITEM_FEATURES,
    PROPOSERS,
    STAGE_ONE,
    TIME_ORDER,
    VALIDATION_ORDERS,
    Candidates,
    candidate_features,
    feature_rows,
    item_features,
    proposals,
    validation_parts,
)
from recsys.models.state import ArrayShape, ModelState, check_state_arrays

logger = logging.getLogger(__name__)

LAMBDARANK = "lambdarank"
RANK_FUSION = "rank fusion"
# Reciprocal rank fusion's constant (Cormack, Clarke and Buettcher, SIGIR 2009).
_FUSION_K = 60.0
_STAGE_ONE_CLASSES: dict[str, type[Recommender]] = {
    "ease": EASERecommender,
    "als": ALSRecommender,
    "itemknn": ItemKNNRecommender,
    "popular": PopularityRecommender,
}
_ID_SIZES = ("n_users", "n_items")
# The stage-1 models that only score the candidates (the others propose them).
_SCORERS = tuple(name for name in STAGE_ONE if name not in PROPOSERS)


def _prefixed_declarations() -> tuple[dict[str, ArrayShape], dict[str, str], dict[str, str]]:
    """Return the stage-1 models' array declarations under their names' prefixes."""
    shapes: dict[str, ArrayShape] = {}
    derived: dict[str, str] = {}
    indices: dict[str, str] = {}
    for name in STAGE_ONE:
        cls = _STAGE_ONE_CLASSES[name]

        def size(axis: int | str, name: str = name) -> int | str:
            # The id-map sizes are shared; a model's own sizes ("k", "nnz") are its own.
            return axis if isinstance(axis, int) or axis in _ID_SIZES else f"{name}.{axis}"

        for array, shape in cls.state_shapes.items():
            shapes[f"{name}.{array}"] = tuple(size(axis) for axis in shape)
        for sized, source in cls.derived_sizes.items():
            derived[str(size(sized))] = f"{name}.{source}"
        for array, indexed in cls.index_arrays.items():
            indices[f"{name}.{array}"] = str(size(indexed))
    return shapes, derived, indices


_SHAPES, _DERIVED, _INDICES = _prefixed_declarations()


class RankerRecommender(Recommender):
    """Candidates from EASE and popularity, scored by them, ALS and item-kNN, ordered by LightGBM.

    Args:
        depth: Products EASE and popularity each propose per user.
        validation_fraction: The share of each user's rows in one of the
            validation parts ``fit`` holds out to train stage 2 on.
        validation_parts: How many validation parts.
        validation_order: Which rows the parts hold out: ``"time"``, each
            user's latest (stage 2 learns to predict what comes next, as a
            time split and serving ask); ``"random"``, seeded random rows of
            each user (what a random holdout asks). Stage 2 learns what
            separates the held-out rows from the rest, so it should be drawn
            as the rows it will be judged on are.
        min_user_rows: Users with fewer rows hold nothing out.
        min_validation_users: Fewer validation users with a relevant
            candidate than this, and stage 2 falls back to rank fusion.
        trees: LightGBM boosting rounds.
        leaves: Leaves per tree (2 to 64).
        learning_rate: LightGBM's shrinkage.
        random_state: Seed of the validation part (without timestamps), of
            ALS and of LightGBM.
    """

    name = "ranker"
    capabilities = frozenset({EXPLAIN, FOLD_IN, SIMILAR_ITEMS})
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "item_features": ("n_items", len(ITEM_FEATURES)),
        "booster_length": (1,),
        "booster_text": ("booster_bytes",),
        **_SHAPES,
    }
    derived_sizes: ClassVar[Mapping[str, str]] = {"booster_bytes": "booster_length", **_DERIVED}
    index_arrays: ClassVar[Mapping[str, str]] = _INDICES

    def __init__(
        self,
        depth: int = 50,
        validation_fraction: float = 0.1,
        validation_parts: int = 3,
        validation_order: str = TIME_ORDER,
        min_user_rows: int = 5,
        min_validation_users: int = 20,
        trees: int = 50,
        leaves: int = 7,
        learning_rate: float = 0.1,
        random_state: int = 42,
    ) -> None:
        super().__init__()
        if depth < 1 or trees < 1 or validation_parts < 1 or leaves < 2 or min_user_rows < 2:
            raise ValueError(
                "depth, trees and validation_parts must be at least 1, leaves and "
                f"min_user_rows at least 2; got {depth}, {trees}, {validation_parts}, "
                f"{leaves} and {min_user_rows}"
            )
        if leaves > MAX_LEAVES:
            raise ValueError(f"leaves must be at most {MAX_LEAVES} (the scorer's), got {leaves}")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        if validation_order not in VALIDATION_ORDERS:
            raise ValueError(
                f"validation_order must be one of {', '.join(VALIDATION_ORDERS)}, "
                f"got {validation_order!r}"
            )
        if not 0 < learning_rate < math.inf:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
        self.depth = int(depth)
        self.validation_fraction = float(validation_fraction)
        self.validation_parts = int(validation_parts)
        self.validation_order = str(validation_order)
        self.min_user_rows = int(min_user_rows)
        self.min_validation_users = int(min_validation_users)
        self.trees = int(trees)
        self.leaves = int(leaves)
        self.learning_rate = float(learning_rate)
        self.random_state = int(random_state)
        # What fit did: stage two's kind, why it fell back, the validation part's size.
        self.trained: dict[str, Any] = {}
        self._booster: Any = None
        self._scorer: BoosterScorer | None = None
        self._unread: frozenset[str] = frozenset()
        self._booster_text = np.empty(0, dtype=np.uint8)

    def params(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "validation_fraction": self.validation_fraction,
            "validation_parts": self.validation_parts,
            "validation_order": self.validation_order,
            "min_user_rows": self.min_user_rows,
            "min_validation_users": self.min_validation_users,
            "trees": self.trees,
            "leaves": self.leaves,
            "learning_rate": self.learning_rate,
            "random_state": self.random_state,
        }

    # -- learning -------------------------------------------------------------

    def _stage_one(self, feedback: pd.DataFrame) -> dict[str, Recommender]:
        ease = EASERecommender()
        als = ALSRecommender(random_state=self.random_state)
        models = {"ease": ease, "als": als, "itemknn": ItemKNNRecommender()}
        models["popular"] = PopularityRecommender()
        return {name: model.fit(feedback) for name, model in models.items()}

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        parts = validation_parts(
            feedback,
            self.validation_fraction,
            self.min_user_rows,
            self.random_state,
            self.validation_parts,
            self.validation_order,
        )
        parts = [(learn, held) for learn, held in parts if held.any()]
        self.trained = {
            "stage_two": RANK_FUSION,
            "validation_parts": len(parts),
            "validation_rows": int(sum(held.sum() for _, held in parts)),
        }
        text = b""
        if not parts:
            reason = f"no user has {self.min_user_rows} rows to hold out a validation part from"
        else:
            text, reason = self._train_stage_two(
                [(feedback[learn], feedback[held]) for learn, held in parts]
            )
        if text:
            self.trained["stage_two"] = LAMBDARANK
        else:
            self.trained["fallback_reason"] = reason
            logger.warning("ranker: stage 2 falls back to rank fusion: %s", reason)
        # Serving's stage 1 learns from every row.
        table = item_features(feedback, users, items, len(self.product_ids))
        self._use(self._stage_one(feedback), table)
        self._load_booster(np.frombuffer(text, dtype=np.uint8))

    def _labelled_candidates(
        self, learn: pd.DataFrame, validation: pd.DataFrame
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return (features, labels) of each validation user with a relevant candidate.

        Stage 1 learns from ``learn`` alone; a candidate is relevant when the
        user rated it at least 4 in ``validation`` (as evaluation counts them).
        """
        part = RankerRecommender(**self.params())
        part.user_ids = np.unique(learn["user_id"].to_numpy(dtype=np.int64))
        part.product_ids = np.unique(learn["product_id"].to_numpy(dtype=np.int64))
        users = np.searchsorted(part.user_ids, learn["user_id"].to_numpy(dtype=np.int64))
        items = np.searchsorted(part.product_ids, learn["product_id"].to_numpy(dtype=np.int64))
        part._use(part._stage_one(learn), item_features(learn, users, items, len(part.product_ids)))
        relevant = validation[validation["rating"] >= DEFAULT_RELEVANCE_THRESHOLD]
        wanted = relevant.groupby("user_id")["product_id"].apply(np.asarray)
        wanted = wanted[np.isin(wanted.index.to_numpy(), part.user_ids)]
        inner_users = np.searchsorted(part.user_ids, wanted.index.to_numpy(dtype=np.int64))
        found = []
        for start in range(0, len(inner_users), 256):
            chunk = inner_users[start : start + 256]
            for user, candidates in zip(chunk, part._candidates(chunk), strict=True):
                products = wanted.iloc[int(np.searchsorted(inner_users, user))]
                labels = np.isin(part.product_ids[candidates.items], products)
                if labels.any():
                    found.append((candidates.features, labels.astype(np.float64)))
        return found

    def _train_stage_two(self, parts: list[tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[bytes, str]:
        """Train LightGBM on the validation users' candidates; return its text, or why not."""
        import lightgbm  # only training and serving a ranker need it

        groups = [
            group for learn, held in parts for group in self._labelled_candidates(learn, held)
        ]
        self.trained["validation_users"] = len(groups)
        if len(groups) < self.min_validation_users:
            return b"", (
                f"{len(groups)} validation users have a relevant candidate "
                f"(at least {self.min_validation_users} needed)"
            )
        data = lightgbm.Dataset(
            np.vstack([features for features, _ in groups]),
            label=np.concatenate([labels for _, labels in groups]),
            group=[len(labels) for _, labels in groups],
            feature_name=[f.replace(" ", "_") for f in FEATURES],
            free_raw_data=True,
        )
        booster = lightgbm.train(
            {
                "objective": "lambdarank",
                "num_leaves": self.leaves,
                "learning_rate": self.learning_rate,
                "min_data_in_leaf": 100,
                "seed": self.random_state,
                # One thread and a fixed order: the same trees on every run and machine.
                "num_threads": 1,
                "deterministic": True,
                "force_row_wise": True,
                "verbose": -1,
            },
            data,
            num_boost_round=self.trees,
        )
        return booster.model_to_string().encode(), ""

    def _use(self, models: dict[str, Recommender], table: np.ndarray) -> None:
        """Keep fitted stage-1 models and product features, and what scoring reads of them."""
        self.models = models
        self.item_table = np.asarray(table, dtype=np.float64)
        self._feature_rows = feature_rows(self.item_table)
        popular = models["popular"]
        assert isinstance(popular, PopularityRecommender)
        self._popular_scores = np.log1p(np.asarray(popular.item_clicks, dtype=np.float64))
        self._popular_order = np.lexsort(
            (np.arange(len(popular.item_clicks)), -popular.item_clicks)
        )
        # Non-candidates rank below every candidate, most popular first.
        self._tail = self._popular_scores / (self._popular_scores.max() + 1.0)
        ease = models["ease"]
        assert isinstance(ease, EASERecommender)
        self._history_rows = ease._rows
        self._ease_weights = ease.item_weights
        itemknn = models["itemknn"]
        assert isinstance(itemknn, ItemKNNRecommender)
        self._itemknn_weights = itemknn._weights

    def _load_booster(self, text: np.ndarray) -> None:
        self._booster_text = np.ascontiguousarray(text, dtype=np.uint8)
        self._booster = None
        self._scorer = None
        self._unread = frozenset()
        if len(text):
            self._load_trees()
        # The serving path's loops are compiled on their first call: made
        # here (some ten seconds, once per process), not on the first answer.
        if len(self.product_ids):
            self._score_profile(np.zeros(1, dtype=np.int64), np.ones(1))

    def _load_trees(self) -> None:
        """Load stage 2's trees from ``booster_text``; refuse a text that is not one."""
        import lightgbm

        try:
            self._booster = lightgbm.Booster(model_str=bytes(self._booster_text).decode())
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ValueError(f"booster_text is not a LightGBM model ({exc})") from None
        if self._booster.num_feature() != len(FEATURES):
            raise ValueError(
                f"booster_text scores {self._booster.num_feature()} features, "
                f"expected {len(FEATURES)}"
            )
        self._scorer = BoosterScorer(self._booster)
        # Stage-1 scorers none of whose features the trees split on: serving
        # need not run them, their features change no tree's path (rank fusion
        # reads every rank, so it runs them all).
        splits = dict(
            zip(FEATURES, self._booster.feature_importance("split").tolist(), strict=True)
        )
        self._unread = frozenset(
            name for name in _SCORERS if not splits[f"{name} score"] and not splits[f"{name} rank"]
        )

    # -- scoring --------------------------------------------------------------

    def _candidates(self, users: np.ndarray) -> list[Candidates]:
        """Return inner users' candidates from their training-time rows."""
        rows = [np.asarray(self.models[name]._score(users)) for name in STAGE_ONE[:3]]
        indptr, indices, data = (
            self._history_rows.indptr,
            self._history_rows.indices,
            self._history_rows.data,
        )
        found = []
        for r, user in enumerate(users.tolist()):
            span = slice(indptr[user], indptr[user + 1])
            history = np.asarray(indices[span], dtype=np.int64)
            items, ranks = proposals(
                np.array(rows[0][r], dtype=np.float64), self._popular_order, history, self.depth
            )
            scores = np.vstack([row[r][items] for row in rows] + [self._popular_scores[items]])
            found.append(self._features(items, ranks, scores, history, data[span]))
        return found

    def _features(
        self,
        items: np.ndarray,
        ranks: np.ndarray,
        scores: np.ndarray,
        history: np.ndarray,
        engagement: np.ndarray,
    ) -> Candidates:
        return candidate_features(
            items,
            ranks,
            np.asarray(scores, dtype=np.float64),
            self._feature_rows,
            history,
            np.asarray(engagement, dtype=np.float64),
        )

    def _profile_candidates(self, items: np.ndarray, engagement: np.ndarray) -> Candidates:
        from recsys.models.compiled import weighted_row_sums_at  # numba: only a ranker needs it

        history = np.asarray(items, dtype=np.int64)
        engagement = np.asarray(engagement, dtype=np.float64)
        # EASE's fold-in row without building a one-row sparse matrix: the
        # engagement-weighted sum of the history's rows of B. Kept in float32:
        # float64 would order the catalog the same, and the candidates' scores
        # widen exactly where they are written below.
        weights = self._ease_weights.take(history, axis=0)
        ease = engagement.astype(np.float32) @ weights
        found, ranks = proposals(ease, self._popular_order, history, self.depth)
        # ALS and item-kNN score the candidates alone: a few dozen dot products
        # instead of the whole catalog's. EASE's scores are the row above. A
        # scorer stage 2 never reads scores 0 (features no tree looks at).
        scores = np.zeros((len(STAGE_ONE), len(found)))
        scores[0] = ease[found]
        if "als" not in self._unread:
            als = self.models["als"]
            assert isinstance(als, ALSRecommender)
            factors = als.fold_in(history, engagement).astype(np.float32)
            scores[1] = als.item_factors.take(found, axis=0) @ factors
        if "itemknn" not in self._unread:
            # Item-kNN's _score_profile at the candidates alone, the same sums.
            knn = self._itemknn_weights
            scores[2] = weighted_row_sums_at(
                knn.indptr, knn.indices, knn.data, history, engagement, found, knn.shape[1]
            )
        scores[3] = self._popular_scores[found]
        return candidate_features(found, ranks, scores, self._feature_rows, history, engagement)

    def _stage_two(self, features: np.ndarray) -> np.ndarray:
        """Return stage 2's score of candidate features: LightGBM's, or rank fusion's."""
        if len(features) == 0:
            return np.empty(0)
        if self._scorer is not None:
            return self._scorer.scores(features)
        return self._fusion_terms(features).sum(axis=1)

    def _fusion_terms(self, features: np.ndarray) -> np.ndarray:
        """Return each stage-1 model's reciprocal-rank term, one column per model."""
        ranks = features[:, [2 * m + 1 for m in range(len(STAGE_ONE))]]
        return 1.0 / (_FUSION_K + ranks)

    def _full_row(self, found: Candidates, scores: np.ndarray) -> np.ndarray:
        """Return scores over every product: the candidates', then the rest below them."""
        floor = float(scores.min()) - 2.0 if len(scores) else 0.0
        row = self._tail + floor
        row[found.items] = scores
        return row

    def _score(self, users: np.ndarray) -> np.ndarray:
        found = self._candidates(np.asarray(users))
        scores = self._stage_two(np.vstack([c.features for c in found]))
        bounds = np.cumsum([0] + [len(c.items) for c in found])
        return np.vstack(
            [self._full_row(c, scores[bounds[i] : bounds[i + 1]]) for i, c in enumerate(found)]
        )

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        found = self._profile_candidates(items, engagement)
        return self._full_row(found, self._stage_two(found.features))

    def rank_resolved(
        self,
        items: np.ndarray,
        engagement: np.ndarray,
        n: int,
        exclude: Collection[int] | np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> RankedList | None:
        """Rank as ``Recommender.rank_resolved`` does: among the candidates when they fill n.

        Every candidate scores above every other product (``_full_row``), so
        when at least n candidates pass the masks, the n best of the catalog's
        row are the n best of them, ties by ascending product id: the same
        list, without building and sorting the catalog's row.
        """
        if n < 1 or len(items) == 0:
            return super().rank_resolved(items, engagement, n, exclude, allowed)
        found = self._profile_candidates(items, engagement)
        scores = self._stage_two(found.features)
        ranked = self._best_candidates(found.items, scores, n, exclude, allowed)
        if ranked is None:
            return self.rank_scores(self._full_row(found, scores), n, exclude, allowed)
        return ranked

    def _best_candidates(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        n: int,
        exclude: Collection[int] | np.ndarray | None,
        allowed: np.ndarray | None,
    ) -> RankedList | None:
        """Return the n best candidates the masks let through, or None when fewer pass.

        The candidates sorted once, best first (a stable sort of ascending
        items: ties by product id), then walked until n pass: an excluded
        product is skipped where it comes, so only the first n plus the
        exclusions are looked at. The same list as sorting the passing ones.
        """
        order = (-scores).argsort(kind="stable")
        if not np.isfinite(scores).all():  # (never from the trees or rank fusion)
            order = order[np.isfinite(scores.take(order))]
        inner = items.take(order)
        if allowed is not None:
            passing = allowed.take(inner)
            order, inner = order[passing], inner[passing]
        if exclude is None or len(exclude) == 0:
            if len(order) < n:
                return None
            best = order[:n]
            return RankedList(product_ids=self.product_ids.take(inner[:n]), scores=scores[best])
        banned = (
            exclude if isinstance(exclude, (set, frozenset)) else set(id_array(exclude).tolist())
        )
        # At most len(banned) of the first n + len(banned) are excluded.
        head = self.product_ids.take(inner[: n + len(banned)]).tolist()
        kept = [at for at, product_id in enumerate(head) if product_id not in banned][:n]
        if len(kept) < n:
            return None
        return RankedList(
            product_ids=np.array([head[at] for at in kept], dtype=self.product_ids.dtype),
            scores=scores.take(order.take(kept)),
        )

    # -- explaining -----------------------------------------------------------

    def feature_contributions(
        self, profile_items: tuple[np.ndarray, np.ndarray], item: int
    ) -> dict[str, float]:
        """Return each feature's contribution to an inner item's stage-2 score.

        LightGBM's SHAP values (``pred_contrib``) when stage 2 was trained,
        else each stage-1 model's rank-fusion term (under "<model> rank").
        Empty when the item is not among the user's candidates.
        """
        past, engagement = profile_items
        found = self._profile_candidates(past, engagement)
        at = np.searchsorted(found.items, item)
        if at == len(found.items) or found.items[at] != item:
            return {}
        row = found.features[at : at + 1]
        if self._booster is not None:
            values = np.asarray(self._booster.predict(row, pred_contrib=True, num_threads=1))[0]
            return dict(zip(FEATURES, values[: len(FEATURES)].tolist(), strict=True))
        terms = self._fusion_terms(row)[0]
        return {f"{name} rank": float(t) for name, t in zip(STAGE_ONE, terms, strict=True)}

    def explain_features(
        self, profile: Any, product_id: int, n: int = 3
    ) -> list[tuple[str, float]]:
        """Return the n features that moved a product's score most, strongest first.

        Args:
            profile: The user's products and engagement (a ``Profile``).
            product_id: A raw product id the model knows.
            n: At most this many features.

        Raises:
            KeyError: The product is unknown.
        """
        self._require_fitted()
        at = int(np.searchsorted(self.product_ids, product_id))
        if at == len(self.product_ids) or self.product_ids[at] != product_id:
            raise KeyError(product_id)
        contributions = self.feature_contributions(self.profile_items(profile), at)
        ranked = sorted(contributions.items(), key=lambda pair: (-abs(pair[1]), pair[0]))
        return [(name, value) for name, value in ranked[:n] if value != 0]

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        """Share each stage-1 model's part of the score among the user's past products.

        A model's part is the contribution of its score and rank features;
        it is split among the past products in proportion to each one's
        contribution to that model's score (EASE, ALS and item-kNN explain
        their scores exactly). Popularity and the product and user features
        name no past product.
        """
        contributions = self.feature_contributions((past, engagement), item)
        weights = np.zeros(len(past))
        for name in STAGE_ONE[:3]:
            part = contributions.get(f"{name} score", 0.0) + contributions.get(f"{name} rank", 0.0)
            if part == 0.0:
                continue
            terms = self.models[name]._contributions(past, engagement, item)
            total = np.abs(terms).sum()
            if total > 0:
                weights += part * terms / total
        return weights

    # -- similar products (EASE's item weights) --------------------------------

    def _similarity_to(self, item: int) -> np.ndarray:
        return self.models["ease"]._similarity_to(item)

    def _pairwise_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.models["ease"]._pairwise_similarity(items)

    def _item_vectors(self) -> np.ndarray:
        return self.models["ease"]._item_vectors()

    # -- state ----------------------------------------------------------------

    def get_state(self) -> ModelState:
        state = super().get_state()
        return ModelState(arrays=state.arrays, params={**state.params, "trained": self.trained})

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "item_features": self.item_table,
            "booster_length": np.array([len(self._booster_text)], dtype=np.int64),
            "booster_text": self._booster_text,
        }
        for name in STAGE_ONE:
            for array, values in self.models[name].get_state().arrays.items():
                if array not in ("user_ids", "product_ids"):
                    arrays[f"{name}.{array}"] = values
        return arrays

    @classmethod
    def validate_state(cls, state: ModelState) -> None:
        check_state_arrays(state.arrays, cls.state_shapes, cls.derived_sizes, cls.index_arrays)

    @classmethod
    def from_state(cls, state: ModelState) -> Self:
        trained = state.params.get("trained", {})
        params = {k: v for k, v in state.params.items() if k != "trained"}
        model = super().from_state(ModelState(arrays=state.arrays, params=params))
        model.trained = dict(trained) if isinstance(trained, dict) else {}
        return model

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        ids = {"user_ids": self.user_ids, "product_ids": self.product_ids}
        models = {}
        for name in STAGE_ONE:
            cls = _STAGE_ONE_CLASSES[name]
            own = {a: arrays[f"{name}.{a}"] for a in cls.state_shapes}
            params = {"random_state": self.random_state} if name == "als" else {}
            models[name] = cls.from_state(ModelState(arrays={**ids, **own}, params=params))
        self._use(models, arrays["item_features"])
        self._load_booster(np.asarray(arrays["booster_text"]))
