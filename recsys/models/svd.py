"""Collaborative filtering with Surprise's SVD, served from its learned factors.

Surprise trains the model; ranking uses the learned biases and factors with
numpy (``mu + b_u + b_i + p_u . q_i`` for all items at once), because calling
Surprise's ``predict`` for every user-item pair is slow and memory-hungry on
real catalogs.

Ranking is not by the predicted rating alone: a predicted rating is the
rating a user would give *if* they tried the product, and its highest values
go to products rated by one or two enthusiasts (on ml-latest-small that ranks
worse than popularity: NDCG@10 0.0004 against 0.1533). The ranking score
(``recsys.models.rating_rank``) shrinks the predicted deviation from the
user's baseline by the product's support and adds the log of how many
training users liked the product::

    score = mu + b_u + n / (n + support_shrinkage) * (b_i + p_u . q_i)
            + popularity_weight * ln(1 + liked count)

``popularity_weight=inf`` is popularity's own ranking. Predictions
(``predict``, RMSE) are unchanged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from surprise import SVD

from recsys.models.base import EXPLAIN, FOLD_IN, PREDICT, SIMILAR_ITEMS, Recommender
from recsys.models.history import HISTORY_INDICES, HISTORY_SHAPES, HISTORY_SIZES, TrainingHistory
from recsys.models.linear import solve_ridge
from recsys.models.ranked import lookup_ids
from recsys.models.rating_rank import RANKING_PARAMS, RankingScore
from recsys.models.state import ArrayShape
from recsys.models.surprise_trainset import trainset_from_arrays


class SVDRecommender(Recommender):
    """Biased matrix factorisation (Funk SVD) trained by Surprise on 1-5 ratings.

    The defaults suit small logs such as the simulated shop's ~1,000 pairs:
    few factors and strong regularisation, since Surprise's default of 100
    factors with ``reg_all=0.02`` overfits them. They were picked by a grid
    over factors, regularisation, learning rate and epochs for the smallest
    gain over the global-mean baseline across ten simulator seeds.

    Args:
        n_factors: Number of latent factors.
        n_epochs: Passes of stochastic gradient descent.
        lr_all: Learning rate of every parameter.
        reg_all: L2 regularisation of every parameter.
        init_std_dev: Standard deviation of the initial factors.
        random_state: Seed of the initial factors.
        rating_scale: (lowest, highest) rating; predictions are clipped to it.
            None takes the lowest and highest rating seen in training.
        popularity_weight: Weight of ln(1 + liked count) in the ranking score
            (0: no popularity; inf: popularity's ranking alone).
        support_shrinkage: k of the support n / (n + k) that shrinks a
            product's predicted deviation from the user's baseline (0: none).
        liked_rating: The lowest training rating that counts a product as
            liked (None: every rating counts).
    """

    name = "svd"
    capabilities = frozenset({PREDICT, SIMILAR_ITEMS, EXPLAIN, FOLD_IN})
    # A disliked pair is a rating of 1: the model learns the user's dislike.
    learns_dislikes: ClassVar[bool] = True
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "global_mean": (1,),
        "user_bias": ("n_users",),
        "item_bias": ("n_items",),
        "user_factors": ("n_users", "k"),
        "item_factors": ("n_items", "k"),
        "item_counts": ("n_items",),
        **HISTORY_SHAPES,
    }
    derived_sizes = HISTORY_SIZES
    index_arrays = HISTORY_INDICES
    # Parameters of the ranking score alone: ``rank_with`` changes them without a refit.
    ranking_params: ClassVar[tuple[str, ...]] = RANKING_PARAMS

    def __init__(
        self,
        n_factors: int = 5,
        n_epochs: int = 100,
        lr_all: float = 0.01,
        reg_all: float = 0.2,
        init_std_dev: float = 0.1,
        random_state: int | None = 0,
        rating_scale: tuple[float, float] | list[float] | None = None,
        popularity_weight: float = 0.5,
        support_shrinkage: float = 10.0,
        liked_rating: float | None = None,
    ) -> None:
        super().__init__()
        for name, count in (("n_factors", n_factors), ("n_epochs", n_epochs)):
            if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {count!r}")
        if not (0 < lr_all < math.inf):
            raise ValueError(f"lr_all must be a positive number, got {lr_all!r}")
        if not (0 <= reg_all < math.inf and 0 <= init_std_dev < math.inf):
            raise ValueError(
                "reg_all and init_std_dev must be non-negative numbers, "
                f"got {reg_all!r} and {init_std_dev!r}"
            )
        self.n_factors = int(n_factors)
        self.n_epochs = int(n_epochs)
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.init_std_dev = init_std_dev
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

    def params(self) -> dict[str, Any]:
        return {
            "n_factors": self.n_factors,
            "n_epochs": self.n_epochs,
            "lr_all": self.lr_all,
            "reg_all": self.reg_all,
            "init_std_dev": self.init_std_dev,
            "random_state": self.random_state,
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
            **self.ranking.params(),
        }

    def rank_with(self, **ranking: Any) -> SVDRecommender:
        """Change the ranking score's parameters (``ranking_params``) in place, without a refit.

        Returns:
            The model itself, ranking as one fitted with these parameters would.
        """
        self.ranking = RankingScore.of({**self.ranking.params(), **ranking})
        if self.is_fitted:
            self._prepare_ranking()
        return self

    def surprise_algorithm(self) -> SVD:
        """Return an unfitted Surprise SVD with this model's hyper-parameters."""
        return SVD(
            n_factors=self.n_factors,
            n_epochs=self.n_epochs,
            lr_all=self.lr_all,
            reg_all=self.reg_all,
            init_std_dev=self.init_std_dev,
            random_state=self.random_state,
        )

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        ratings = feedback["rating"].to_numpy(dtype=np.float64)
        if self.rating_scale is None:
            self.rating_scale = (float(ratings.min()), float(ratings.max()))
        # Inner indices go in as Surprise's raw ids, so its factors can be
        # re-ordered into ours with one lookup per id.
        trainset = trainset_from_arrays(users, items, ratings, self.rating_scale)
        algo = self.surprise_algorithm().fit(trainset)
        self.load_surprise_factors(algo, trainset)
        self.item_counts = np.bincount(items, minlength=len(self.product_ids)).astype(np.int64)
        self.history = TrainingHistory.from_rows(users, items, ratings, len(self.user_ids))
        self._prepare_ranking()

    def load_surprise_factors(self, algo: SVD, trainset) -> None:
        """Copy a fitted Surprise SVD's parameters into our inner-index order.

        Args:
            algo: A Surprise SVD fitted on ``trainset``.
            trainset: Its trainset, whose raw ids are our inner indices.
        """
        user_order = np.array(
            [trainset.to_inner_uid(u) for u in range(len(self.user_ids))], dtype=np.int64
        )
        item_order = np.array(
            [trainset.to_inner_iid(i) for i in range(len(self.product_ids))], dtype=np.int64
        )
        self.global_mean = np.float64(trainset.global_mean)
        self.user_bias = np.asarray(algo.bu, dtype=np.float64)[user_order]
        self.item_bias = np.asarray(algo.bi, dtype=np.float64)[item_order]
        self.user_factors = np.asarray(algo.pu, dtype=np.float64)[user_order]
        self.item_factors = np.asarray(algo.qi, dtype=np.float64)[item_order]

    def _prepare_ranking(self) -> None:
        """Derive each product's part of the score that no user changes.

        That is the global mean, the shrunk item bias and the popularity
        term, and the item factors scaled by the support; computed once per
        fit or load, not per request (a logarithm per product is most of
        scoring one user on a large catalog). The liked counts come from the
        stored training ratings, so an artifact needs no array for them.
        """
        support = self.ranking.support(self.item_counts)
        liked = self.ranking.liked_counts(
            self.history.items, self.history.weights, len(self.product_ids)
        )
        self._item_offsets = self.global_mean + support * self.item_bias + self.ranking.prior(liked)
        self._ranking_factors = self.item_factors * support[:, None]
        # Fold-in's rows z_i = [1, q_i], laid out once: a user's rows are one
        # gather; and its ridge, reg_all on the diagonal, added in one step.
        width = self.item_factors.shape[1] + 1
        self._fold_in_rows = np.empty((len(self.item_factors), width))
        self._fold_in_rows[:, 0] = 1.0
        self._fold_in_rows[:, 1:] = self.item_factors
        self._fold_in_ridge = np.eye(width) * self.reg_all

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (
            self._item_offsets[None, :]
            + self.user_bias[users, None]
            + self.user_factors[users] @ self._ranking_factors.T
        )

    def fold_in(self, items: np.ndarray, engagement: np.ndarray) -> tuple[float, np.ndarray]:
        """Return a user's bias and factors solved from their ratings, the item side fixed.

        The ratings are the engagement clipped to the rating scale (as
        ``derive_ratings`` makes them). With z_i = [1, q_i] and
        x = [b_u, p_u], SVD's loss for one user, sum_i (r_i - mu - b_i -
        z_i . x)^2 + reg_all |x|^2, is least squares with the closed form
        x = (Z^T Z + reg_all I)^-1 Z^T (r - mu - b).
        """
        low, high = self.rating_scale if self.rating_scale is not None else (1.0, 5.0)
        # np.clip's numbers without its Python wrapper (a few microseconds a user).
        ratings = np.minimum(np.maximum(engagement, low), high)
        # Z gathered from the rows laid out at load, the ridge matrix added
        # (zeros off the diagonal change nothing): the same numbers as hstack
        # and diag_indices, in fewer numpy calls (each costs more than the
        # arithmetic of a short history).
        mine = self._fold_in_rows[items]
        gram = mine.T @ mine
        gram += self._fold_in_ridge
        solved = solve_ridge(gram, mine.T @ (ratings - self.global_mean - self.item_bias[items]))
        return float(solved[0]), solved[1:]

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        bias, factors = self.fold_in(items, engagement)
        # (offsets + bias) + factors' scores, summed in place: one array, not two.
        scores = self._item_offsets + bias
        scores += self._ranking_factors @ factors
        return scores

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        # SVD's score is no sum over past products: name the past products
        # nearest to the recommended one in factor space (cosine of factors).
        return self._similarity_to(item)[past]

    def predict(self, user_ids: np.ndarray, product_ids: np.ndarray) -> np.ndarray:
        """Predict ratings for (user, product) pairs as Surprise's SVD would.

        Unknown users or products get only the parts that are known (the
        global mean plus any known bias), and every estimate is clipped to the
        rating scale, like ``surprise.SVD.predict``.

        Args:
            user_ids: Raw user ids.
            product_ids: Raw product ids, same length.

        Returns:
            One predicted rating per pair.
        """
        self._require_fitted()
        user_ids = np.asarray(user_ids, dtype=np.int64)
        product_ids = np.asarray(product_ids, dtype=np.int64)
        u, known_u = lookup_ids(self.user_ids, user_ids)
        i, known_i = lookup_ids(self.product_ids, product_ids)
        estimate = np.full(len(user_ids), self.global_mean, dtype=np.float64)
        estimate[known_u] += self.user_bias[u[known_u]]
        estimate[known_i] += self.item_bias[i[known_i]]
        both = known_u & known_i
        estimate[both] += np.einsum(
            "ij,ij->i", self.user_factors[u[both]], self.item_factors[i[both]]
        )
        low, high = self.rating_scale if self.rating_scale is not None else (-np.inf, np.inf)
        return np.clip(estimate, low, high)

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array([self.global_mean]),
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "item_counts": self.item_counts,
            **self.history.arrays(),
        }

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.global_mean = np.float64(np.asarray(arrays["global_mean"])[0])
        self.user_bias = np.asarray(arrays["user_bias"], dtype=np.float64)
        self.item_bias = np.asarray(arrays["item_bias"], dtype=np.float64)
        self.user_factors = np.asarray(arrays["user_factors"], dtype=np.float64)
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float64)
        self.item_counts = np.asarray(arrays["item_counts"], dtype=np.int64)
        self.history = TrainingHistory.from_arrays(arrays)
        self._prepare_ranking()
