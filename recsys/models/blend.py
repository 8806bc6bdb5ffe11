"""A rating model past Surprise's best: several rating models blended on a validation part.

Four members predict each rating:

- ``baseline``: ``mu + b_u + b_i``, the biases Surprise's KNNBaseline learns
  by alternating least squares;
- ``svd``: Surprise's SVD with more factors and epochs than its defaults
  (``SVDRecommender`` trains it);
- ``user_knn`` and ``item_knn``: Surprise's KNNBaseline with shrunk
  Pearson-baseline similarities, between users and between items
  (``recsys.models.neighbourhood`` keeps each row's nearest neighbours and
  predicts with numpy).

The blend is feature-weighted linear stacking (Sill et al., 2009): each
member's weight is linear in the pair's meta-features ``[1, ln(1 + n_u),
ln(1 + n_i)]`` (how many training ratings the user and the item have), so a
member that is good for well-known users or products weighs more there::

    rating = sum_m sum_f w[m, f] * f(u, i) * p_m(u, i)    (m over 1 and the members)

The weights are fitted by least squares (ridge towards the members' plain
mean) on a *validation part carved from the training frame*: a seeded
``validation_fraction`` of its rows. The members are fitted on the rest,
predict the validation part, the weights are solved, and the members are
then refitted on the whole training frame. ``fit`` receives nothing but the
training frame, so an evaluation's test rows can never reach the weights.
A log whose validation part would hold fewer than ``min_validation_rows``
rows is cross-fitted instead (``CROSS_FIT_FOLDS`` folds of the training
frame, each predicted by members fitted on the others); one of fewer rows
than that, or ``validation_fraction=0``, fits no weights: the blend is the
members' plain mean (``validation_rows`` is then 0).

Ranking scores the blended prediction as ``SVDRecommender`` does
(``recsys.models.rating_rank``): its deviation from the user's baseline
shrunk by the product's support, plus the log of how many users liked the
product (a predicted rating alone ranks products with one enthusiastic
rating first).

Everything learned is arrays (biases, factors, each row's neighbours and
similarities, the training ratings, the weights), so the model is saved and
served like any other, without pickle; predictions are numpy, not Surprise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from recsys.models.base import PREDICT, SIMILAR_ITEMS, Recommender
from recsys.models.history import HISTORY_INDICES, HISTORY_SHAPES, HISTORY_SIZES, TrainingHistory
from recsys.models.neighbourhood import Neighbours, fit_knn_baseline, neighbourhood_offsets
from recsys.models.ranked import lookup_ids
from recsys.models.rating_rank import RANKING_PARAMS, RankingScore
from recsys.models.state import ArrayShape
from recsys.models.surprise_trainset import trainset_from_arrays
from recsys.models.svd import SVDRecommender

MEMBERS = ("baseline", "svd", "user_knn", "item_knn")
# The meta-features each member's weight is linear in.
META_FEATURES = ("1", "ln(1 + user ratings)", "ln(1 + product ratings)")
# Row 0 of the weights multiplies the constant 1 (an intercept per meta-feature).
_WEIGHT_ROWS = ("1", *MEMBERS)
# Folds of the cross-fitting that a log too small for one validation part gets.
CROSS_FIT_FOLDS = 5
# Pairs predicted per step, so a (pairs x neighbours) gather stays small.
_PAIR_CELLS = 4_000_000


def validation_parts(
    feedback: pd.DataFrame, validation_fraction: float, min_rows: int, seed: int | None
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Carve validation parts out of a training frame, each with the rows to fit members on.

    A frame large enough that ``validation_fraction`` of it makes at least
    ``min_rows`` rows gives one part: those rows (seeded random), the rest
    to fit on. A smaller frame of at least ``min_rows`` rows gives
    ``CROSS_FIT_FOLDS`` parts instead (every row validates once, with the
    members fitted on the other folds), so a small log still fits weights on
    ``min_rows`` rows or more. A smaller frame still, or a fraction of 0,
    gives no part: the blend is the members' plain mean.

    Args:
        feedback: The training frame (the only rows the blend ever sees).
        validation_fraction: Share of rows of the one validation part, in [0, 1).
        min_rows: The fewest validation rows to fit weights on.
        seed: Seed of the random choice of rows.

    Returns:
        (fit part, validation part) pairs: in each, disjoint and together
        every row of ``feedback``.
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    n = len(feedback)
    if validation_fraction == 0 or n < min_rows or n < CROSS_FIT_FOLDS:
        return []
    shuffled = np.random.default_rng(seed).permutation(n)
    n_validation = round(validation_fraction * n)
    if n_validation >= min_rows:
        chosen = np.zeros(n, dtype=bool)
        chosen[shuffled[:n_validation]] = True
        return [(feedback[~chosen], feedback[chosen])]
    fold = np.empty(n, dtype=np.int64)
    fold[shuffled] = np.arange(n) % CROSS_FIT_FOLDS
    return [(feedback[fold != f], feedback[fold == f]) for f in range(CROSS_FIT_FOLDS)]


def prior_weights() -> np.ndarray:
    """Return the weights of the members' plain mean (no intercept, no meta-feature)."""
    weights = np.zeros((len(_WEIGHT_ROWS), len(META_FEATURES)))
    weights[1:, 0] = 1.0 / len(MEMBERS)
    return weights


def fit_blend_weights(
    predictions: np.ndarray, meta: np.ndarray, ratings: np.ndarray, regularization: float
) -> np.ndarray:
    """Solve the feature-weighted linear stacking weights by ridge least squares.

    The penalty pulls the weights towards ``prior_weights`` (the plain mean),
    not towards 0, so a weak signal leaves the blend an average.

    Args:
        predictions: (n, members) each member's prediction of each validation rating.
        meta: (n, meta-features) the rows' meta-features.
        ratings: (n,) the validation ratings.
        regularization: The ridge penalty.

    Returns:
        (1 + members, meta-features) weights.
    """
    design = _design(predictions, meta)
    prior = prior_weights().ravel()
    gram = design.T @ design
    gram[np.diag_indices_from(gram)] += regularization
    solved = np.linalg.solve(gram, design.T @ ratings + regularization * prior)
    return solved.reshape(len(_WEIGHT_ROWS), len(META_FEATURES))


def _design(predictions: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Return the stacking design matrix: every (1 or member) x meta-feature product."""
    with_one = np.hstack([np.ones((len(predictions), 1)), predictions])
    return (with_one[:, :, None] * meta[:, None, :]).reshape(len(predictions), -1)


class BlendRecommender(Recommender):
    """Baselines, SVD and user- and item-based KNNBaseline, blended on a validation part.

    The defaults suit MovieLens-sized data (ml-latest-small: 100,836 ratings,
    610 users, 9,724 movies); ``bench/bench_rating.py`` measures them.

    Args:
        n_factors: The SVD member's latent factors.
        n_epochs: Its passes of stochastic gradient descent.
        lr_all: Its learning rate.
        reg_all: Its L2 regularisation.
        k: Neighbours that count in a KNNBaseline estimate (Surprise's ``k``).
        max_neighbours: Neighbours kept per user and per product (stored).
        shrinkage: Surprise's shrinkage of Pearson-baseline similarities.
        validation_fraction: Share of the training rows carved out to fit the
            blend's weights on (0: no carving, the members' plain mean).
        min_validation_rows: The fewest validation rows to fit weights on:
            a smaller validation part is replaced by cross-fitting, and a
            log of fewer rows keeps the members' plain mean.
        blend_regularization: Ridge penalty of the weights (towards the plain mean).
        random_state: Seed of the SVD member and of the validation carve.
        rating_scale: (lowest, highest) rating; predictions are clipped to it.
            None takes the lowest and highest rating seen in training.
        popularity_weight: Weight of ln(1 + liked count) in the ranking score
            (0: no popularity; inf: popularity's ranking alone).
        support_shrinkage: k of the support n / (n + k) that shrinks a
            product's predicted deviation from the user's baseline (0: none).
        liked_rating: The lowest training rating that counts a product as
            liked (None: every rating counts).
    """

    name = "blend"
    capabilities = frozenset({PREDICT, SIMILAR_ITEMS})
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "global_mean": (1,),
        "baseline_user_bias": ("n_users",),
        "baseline_item_bias": ("n_items",),
        "svd_user_bias": ("n_users",),
        "svd_item_bias": ("n_items",),
        "svd_user_factors": ("n_users", "k"),
        "svd_item_factors": ("n_items", "k"),
        "user_neighbours": ("n_users", "user_neighbour_count"),
        "user_neighbour_similarities": ("n_users", "user_neighbour_count"),
        "item_neighbours": ("n_items", "item_neighbour_count"),
        "item_neighbour_similarities": ("n_items", "item_neighbour_count"),
        "item_counts": ("n_items",),
        "blend_weights": (len(_WEIGHT_ROWS), len(META_FEATURES)),
        **HISTORY_SHAPES,
    }
    derived_sizes = HISTORY_SIZES
    index_arrays: ClassVar[Mapping[str, str]] = {
        **HISTORY_INDICES,
        "user_neighbours": "n_users",
        "item_neighbours": "n_items",
    }
    # Parameters of the ranking score alone: ``rank_with`` changes them without a refit.
    ranking_params: ClassVar[tuple[str, ...]] = RANKING_PARAMS

    def __init__(
        self,
        n_factors: int = 150,
        n_epochs: int = 60,
        lr_all: float = 0.005,
        reg_all: float = 0.08,
        k: int = 40,
        max_neighbours: int = 100,
        shrinkage: float = 100.0,
        validation_fraction: float = 0.1,
        min_validation_rows: int = 100,
        blend_regularization: float = 1.0,
        random_state: int | None = 0,
        rating_scale: tuple[float, float] | list[float] | None = None,
        popularity_weight: float = 0.5,
        support_shrinkage: float = 10.0,
        liked_rating: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
        if k < 1 or max_neighbours < 1:
            raise ValueError(f"k and max_neighbours must be at least 1, got {k}, {max_neighbours}")
        if min_validation_rows < 1:
            raise ValueError(f"min_validation_rows must be at least 1, got {min_validation_rows}")
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.k = k
        self.max_neighbours = max_neighbours
        self.shrinkage = float(shrinkage)
        self.validation_fraction = float(validation_fraction)
        self.min_validation_rows = min_validation_rows
        self.blend_regularization = float(blend_regularization)
        self.random_state = random_state
        self.rating_scale: tuple[float, float] | None = (
            (float(rating_scale[0]), float(rating_scale[1])) if rating_scale is not None else None
        )
        self.ranking = RankingScore.of(
            {
                "popularity_weight": popularity_weight,
                "support_shrinkage": support_shrinkage,
                "liked_rating": liked_rating,
            }
        )
        # How many carved validation rows the weights were fitted on (0: the plain mean).
        self.validation_rows = 0
        # Each scored user's clipped blended predictions, kept once ``rank_with``
        # has been called: a search over the ranking parameters scores the same
        # users again, and the blend, not the ranking, is the cost of a score.
        self._blended_rows: dict[int, np.ndarray] | None = None

    def params(self) -> dict[str, Any]:
        return {
            "n_factors": self.n_factors,
            "n_epochs": self.n_epochs,
            "lr_all": self.lr_all,
            "reg_all": self.reg_all,
            "k": self.k,
            "max_neighbours": self.max_neighbours,
            "shrinkage": self.shrinkage,
            "validation_fraction": self.validation_fraction,
            "min_validation_rows": self.min_validation_rows,
            "blend_regularization": self.blend_regularization,
            "random_state": self.random_state,
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
            **self.ranking.params(),
        }

    def rank_with(self, **ranking: Any) -> BlendRecommender:
        """Change the ranking score's parameters (``ranking_params``) in place, without a refit.

        Returns:
            The model itself, ranking as one fitted with these parameters would.
        """
        self.ranking = RankingScore.of({**self.ranking.params(), **ranking})
        if self.is_fitted:
            self._prepare_ranking()
            if self._blended_rows is None:
                self._blended_rows = {}
        return self

    # -- learning -------------------------------------------------------------

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        ratings = feedback["rating"].to_numpy(dtype=np.float64)
        if self.rating_scale is None:
            self.rating_scale = (float(ratings.min()), float(ratings.max()))
        parts = validation_parts(
            feedback, self.validation_fraction, self.min_validation_rows, self.random_state
        )
        self.validation_rows = sum(len(validation) for _, validation in parts)
        self.blend_weights = self._weights_from_validation(parts) if parts else prior_weights()
        self._fit_members(feedback, users, items, ratings)

    def _weights_from_validation(
        self, parts: list[tuple[pd.DataFrame, pd.DataFrame]]
    ) -> np.ndarray:
        """Fit members on each fit part, then the weights on their predictions of validation."""
        predictions, meta, ratings = [], [], []
        for fit_part, validation in parts:
            probe = type(self)(**{**self.params(), "validation_fraction": 0.0}).fit(fit_part)
            predicted, features = probe.member_predictions(
                validation["user_id"].to_numpy(dtype=np.int64),
                validation["product_id"].to_numpy(dtype=np.int64),
            )
            predictions.append(predicted)
            meta.append(features)
            ratings.append(validation["rating"].to_numpy(dtype=np.float64))
        return fit_blend_weights(
            np.vstack(predictions),
            np.vstack(meta),
            np.concatenate(ratings),
            self.blend_regularization,
        )

    def _fit_members(
        self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
    ) -> None:
        n_users, n_items = len(self.user_ids), len(self.product_ids)
        svd = SVDRecommender(
            n_factors=self.n_factors,
            n_epochs=self.n_epochs,
            lr_all=self.lr_all,
            reg_all=self.reg_all,
            random_state=self.random_state,
            rating_scale=self.rating_scale,
        ).fit(feedback)
        # Same frame, same sorted ids: SVD's inner indices are ours.
        self.global_mean = svd.global_mean
        self.svd_user_bias, self.svd_item_bias = svd.user_bias, svd.item_bias
        self.svd_user_factors, self.svd_item_factors = svd.user_factors, svd.item_factors
        assert self.rating_scale is not None
        trainset = trainset_from_arrays(users, items, ratings, self.rating_scale)
        by_user = fit_knn_baseline(
            trainset, n_users, n_items, True, self.max_neighbours, self.shrinkage
        )
        by_item = fit_knn_baseline(
            trainset, n_users, n_items, False, self.max_neighbours, self.shrinkage
        )
        # Both learn the same baselines (one ALS with Surprise's default options).
        self.baseline_user_bias, self.baseline_item_bias = by_user.user_bias, by_user.item_bias
        self.user_neighbours = by_user.neighbours
        self.item_neighbours = by_item.neighbours
        self.item_counts = np.bincount(items, minlength=n_items).astype(np.int64)
        self.history = TrainingHistory.from_rows(users, items, ratings, n_users)
        self._prepare()

    def _prepare(self) -> None:
        """Derive what predictions look up: residuals by (user, item) key, row offsets."""
        n_items = len(self.product_ids)
        users = np.repeat(np.arange(len(self.user_ids)), self.history.lengths)
        # History rows are sorted by user, then item: their keys are sorted.
        self._keys = users * n_items + self.history.items
        self._residuals = self.history.weights - (
            self.global_mean
            + self.baseline_user_bias[users]
            + self.baseline_item_bias[self.history.items]
        )
        self._row_starts = np.concatenate([[0], np.cumsum(self.history.lengths)])
        self._user_support = np.log1p(self.history.lengths.astype(np.float64))
        self._item_support = np.log1p(self.item_counts.astype(np.float64))
        self._blended_rows = None
        self._prepare_ranking()

    def _prepare_ranking(self) -> None:
        """Derive each product's support factor and popularity term of the ranking score."""
        liked = self.ranking.liked_counts(
            self.history.items, self.history.weights, len(self.product_ids)
        )
        self._support = self.ranking.support(self.item_counts)
        self._popularity = self.ranking.prior(liked)

    # -- predicting -------------------------------------------------------------

    def member_predictions(
        self, user_ids: np.ndarray, product_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return each member's clipped predictions and the meta-features of raw pairs.

        Unknown users or products get the parts that are known (the global mean
        plus any known bias), as Surprise predicts them.

        Args:
            user_ids: Raw user ids.
            product_ids: Raw product ids, same length.

        Returns:
            ((n, members) predictions in ``MEMBERS`` order, (n, meta-features)).
        """
        self._require_fitted()
        u, known_u = lookup_ids(self.user_ids, np.asarray(user_ids, dtype=np.int64))
        i, known_i = lookup_ids(self.product_ids, np.asarray(product_ids, dtype=np.int64))
        n = len(u)
        baseline = np.full(n, self.global_mean, dtype=np.float64)
        baseline[known_u] += self.baseline_user_bias[u[known_u]]
        baseline[known_i] += self.baseline_item_bias[i[known_i]]
        svd = np.full(n, self.global_mean, dtype=np.float64)
        svd[known_u] += self.svd_user_bias[u[known_u]]
        svd[known_i] += self.svd_item_bias[i[known_i]]
        both = np.flatnonzero(known_u & known_i)
        svd[both] += np.einsum(
            "ij,ij->i", self.svd_user_factors[u[both]], self.svd_item_factors[i[both]]
        )
        user_knn, item_knn = baseline.copy(), baseline.copy()
        step = max(1, _PAIR_CELLS // max(self.user_neighbours.indices.shape[1], 1))
        for start in range(0, len(both), step):
            rows = both[start : start + step]
            pu, pi = u[rows], i[rows]
            neighbours = self.user_neighbours
            residuals = self._residuals_at(neighbours.indices[pu], pi[:, None])
            user_knn[rows] += neighbourhood_offsets(neighbours.similarities[pu], residuals, self.k)
            neighbours = self.item_neighbours
            residuals = self._residuals_at(pu[:, None], neighbours.indices[pi])
            item_knn[rows] += neighbourhood_offsets(neighbours.similarities[pi], residuals, self.k)
        predictions = np.clip(np.column_stack([baseline, svd, user_knn, item_knn]), *self._scale())
        meta = np.column_stack(
            [
                np.ones(n),
                np.where(known_u, self._user_support[u], 0.0),
                np.where(known_i, self._item_support[i], 0.0),
            ]
        )
        return predictions, meta

    def predict(self, user_ids: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        """Predict ratings for (user, product) pairs: the blend of the members, clipped.

        Args:
            user_ids: Raw user ids.
            product_ids: Raw product ids, same length.

        Returns:
            One predicted rating per pair.
        """
        predictions, meta = self.member_predictions(user_ids, product_ids)
        blended = np.einsum("nm,nf,mf->n", _with_one(predictions), meta, self.blend_weights)
        return np.clip(blended, *self._scale())

    def _residuals_at(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Return the baseline residual of (inner user, inner item) pairs, NaN where unrated."""
        users, items = np.broadcast_arrays(users, items)
        keys = users * len(self.product_ids) + items
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._residuals[at], np.nan)

    def _user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self._row_starts[user], self._row_starts[user + 1]
        return self.history.items[start:stop], self._residuals[start:stop]

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.vstack([self._score_one(int(user)) for user in users])

    def _score_one(self, user: int) -> np.ndarray:
        """Return one inner user's ranking scores for every product."""
        kept = self._blended_rows
        blended = kept.get(user) if kept is not None else None
        if blended is None:
            blended = self._blended_row(user)
            if kept is not None:
                kept[user] = blended
        # The deviation from the user's baseline, trusted as far as the product's support.
        base = self.global_mean + self.baseline_user_bias[user]
        return base + self._support * (blended - base) + self._popularity

    def _blended_row(self, user: int) -> np.ndarray:
        """Return one inner user's clipped blended prediction of every product."""
        n_items = len(self.product_ids)
        baseline = self.global_mean + self.baseline_user_bias[user] + self.baseline_item_bias
        svd = (
            self.global_mean
            + self.svd_user_bias[user]
            + self.svd_item_bias
            + self.svd_item_factors @ self.svd_user_factors[user]
        )
        # Item-based: the user's residuals over the catalog, gathered per neighbour list.
        mine = np.full(n_items, np.nan)
        items, residuals = self._user_row(user)
        mine[items] = residuals
        item_knn = baseline + neighbourhood_offsets(
            self.item_neighbours.similarities, mine[self.item_neighbours.indices], self.k
        )
        # User-based: each neighbour's residuals over the catalog, a column per neighbour.
        neighbours = self.user_neighbours.indices[user]
        theirs = np.full((n_items, len(neighbours)), np.nan)
        lengths = self.history.lengths[neighbours]
        # The history rows of every neighbour, one slice after another.
        rows = np.repeat(self._row_starts[neighbours] - np.cumsum(lengths) + lengths, lengths)
        rows += np.arange(len(rows))
        theirs[self.history.items[rows], np.repeat(np.arange(len(neighbours)), lengths)] = (
            self._residuals[rows]
        )
        similarities = np.broadcast_to(self.user_neighbours.similarities[user], theirs.shape)
        user_knn = baseline + neighbourhood_offsets(similarities, theirs, self.k)
        predictions = np.clip(np.column_stack([baseline, svd, user_knn, item_knn]), *self._scale())
        meta = np.column_stack(
            [np.ones(n_items), np.full(n_items, self._user_support[user]), self._item_support]
        )
        blended = np.einsum("nm,nf,mf->n", _with_one(predictions), meta, self.blend_weights)
        return np.clip(blended, *self._scale())

    def _scale(self) -> tuple[float, float]:
        return self.rating_scale if self.rating_scale is not None else (-np.inf, np.inf)

    def _item_vectors(self) -> np.ndarray:
        return self.svd_item_factors

    # -- state ------------------------------------------------------------------

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array([self.global_mean]),
            "baseline_user_bias": self.baseline_user_bias,
            "baseline_item_bias": self.baseline_item_bias,
            "svd_user_bias": self.svd_user_bias,
            "svd_item_bias": self.svd_item_bias,
            "svd_user_factors": self.svd_user_factors,
            "svd_item_factors": self.svd_item_factors,
            "user_neighbours": self.user_neighbours.indices,
            "user_neighbour_similarities": self.user_neighbours.similarities,
            "item_neighbours": self.item_neighbours.indices,
            "item_neighbour_similarities": self.item_neighbours.similarities,
            "item_counts": self.item_counts,
            "blend_weights": self.blend_weights,
            **self.history.arrays(),
        }

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        def floats(name: str) -> np.ndarray:
            return np.asarray(arrays[name], dtype=np.float64)

        def ints(name: str) -> np.ndarray:
            return np.asarray(arrays[name], dtype=np.int64)

        self.global_mean = np.float64(floats("global_mean")[0])
        self.baseline_user_bias = floats("baseline_user_bias")
        self.baseline_item_bias = floats("baseline_item_bias")
        self.svd_user_bias = floats("svd_user_bias")
        self.svd_item_bias = floats("svd_item_bias")
        self.svd_user_factors = floats("svd_user_factors")
        self.svd_item_factors = floats("svd_item_factors")
        self.user_neighbours = Neighbours(
            ints("user_neighbours"), floats("user_neighbour_similarities")
        )
        self.item_neighbours = Neighbours(
            ints("item_neighbours"), floats("item_neighbour_similarities")
        )
        self.item_counts = ints("item_counts")
        self.blend_weights = floats("blend_weights")
        self.history = TrainingHistory.from_arrays(arrays)
        self._prepare()


def _with_one(predictions: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(predictions), 1)), predictions])
