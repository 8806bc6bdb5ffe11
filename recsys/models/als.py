"""Implicit-feedback matrix factorisation (ALS) on clicks and purchases.

Training uses ``implicit``'s CPU ALS (Hu, Koren and Volinsky, "Collaborative
Filtering for Implicit Feedback Datasets"). Every observed (user, product) pair
is a positive preference with confidence ``1 + alpha * engagement``
(``weighting="engagement"``) or ``1 + alpha`` (``weighting="binary"``: every
observed pair alike, what implicit is usually given); unobserved pairs are
negatives with confidence 1. With ``min_engagement`` set, pairs of less
engagement are left out first, as if never observed (4 on MovieLens: only
liked ratings are preferences). ``engagement`` comes from the feedback frame: for
our click logs ``recsys.data.ratings.derive_ratings`` builds it from clicks and
purchases with configurable weights, for MovieLens it is the rating.

Serving needs only the two factor matrices: scores are ``user_factors @
item_factors.T`` in numpy, so a saved model loads without ``implicit``.

With ``arrival_days`` > 0, products first seen in the training log's last
``arrival_days`` are lifted in every user's ranking (``recsys.models.arrivals``):
what a returning user missed while away. The artifact then also holds each
product's age and uptake, so the lift can be re-set without a refit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse

from recsys.models.arrivals import ARRIVAL_PARAMS, arrival_facts, arrival_lifts, lifted
from recsys.models.base import EXPLAIN, FOLD_IN, SIMILAR_ITEMS, Recommender
from recsys.models.linear import solve_ridge
from recsys.models.profile import has_timestamps
from recsys.models.seeded import seeded_units
from recsys.models.state import ArrayShape, ModelState, check_state_arrays

WEIGHTINGS = ("engagement", "binary")
# implicit's initial factors are uniform in [0, 0.01).
_INITIAL_SCALE = 0.01
# Salts of the users' and the products' draws from one seed.
_USER_DRAWS, _ITEM_DRAWS = 0x55, 0x1E


def seeded_factors(ids: np.ndarray, factors: int, seed: int) -> np.ndarray:
    """Return implicit's start (uniform in [0, 0.01), float32), each id's row drawn from it alone.

    Args:
        ids: Raw user or product ids.
        factors: The length of each row.
        seed: The draws' seed.
    """
    keys = ids.astype(np.uint64)[:, None] * np.uint64(factors) + np.arange(factors, dtype=np.uint64)
    return (seeded_units(seed, keys) * _INITIAL_SCALE).astype(np.float32)


class ALSRecommender(Recommender):
    """Alternating least squares on a confidence matrix built from engagement.

    Training runs on one thread (``implicit`` and BLAS alike), so the same
    ``random_state`` and data give the same factors on every run and machine;
    on data of this size that costs little (ml-latest-small trains in ~0.4 s).

    The defaults come from a seeded search scored by holdout NDCG: on
    ml-latest-small (engagement = rating) they reach about 1.7x popularity's
    NDCG@10, and on the simulated shop (engagement = weighted clicks and
    purchases) they were the best of the tried settings. Strong regularisation
    and a small alpha win on both because engagement already spans 1-5
    (MovieLens) or more (shop), and a large alpha lets a few heavy pairs
    dominate. ``regularization`` is implicit's absolute L2 weight, not scaled
    by data size: on a log of only a few dozen users it can shrink every factor
    to zero, so tune it there (``recommendation_system.py tune --model als``).

    Args:
        factors: Size of the latent vectors.
        regularization: L2 penalty on the factors.
        alpha: How much each unit of engagement (or, binary, each observed
            pair) raises a pair's confidence.
        iterations: ALS sweeps (users then items) to run.
        random_state: Seed of the initial factors. Each product's (and
            user's) initial vector is drawn from the seed and its id alone,
            not from its place in the matrix, so a refit on more data starts
            every known product where the previous fit started it: refits
            agree with each other, and the quality gate compares like with
            like.
        weighting: "engagement" (confidence grows with engagement) or
            "binary" (every observed pair has confidence 1 + alpha).
        min_engagement: Pairs of less engagement are left out of training and
            of a folded-in history (0: none; 4: only ratings of 4 or more on
            MovieLens, only clicks that ended in a purchase on the shop).
        arrival_days: Products first seen at most this many days before the
            training log's last event are new arrivals and lifted in every
            ranking (0, the default: none). Needs the rows' timestamps;
            without them no product is new.
        arrival_lift: Each new product's lift, in standard deviations of
            the user's scores.
        uptake_lift: A new product's further lift per unit of its uptake,
            log(1 + users per 30 days since it appeared).
    """

    name = "als"
    capabilities = frozenset({SIMILAR_ITEMS, EXPLAIN, FOLD_IN})
    # Only the factors: fold-in and explanations read the user's products
    # from the store, so the artifact does not grow with the log. Artifacts of
    # earlier releases also hold the training history (history_lengths,
    # history_items, history_weights); undeclared arrays are ignored on load.
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "user_factors": ("n_users", "k"),
        "item_factors": ("n_items", "k"),
    }
    # Stored with arrival_days > 0 and timestamps to learn them from (see validate_state).
    arrival_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "item_age_days": ("n_items",),
        "item_uptake": ("n_items",),
    }
    # Parameters of the ranking alone: ``rank_with`` changes them without a refit.
    ranking_params: ClassVar[tuple[str, ...]] = ARRIVAL_PARAMS

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 42,
        weighting: str = "engagement",
        min_engagement: float = 0.0,
        arrival_days: float = 0.0,
        arrival_lift: float = 0.0,
        uptake_lift: float = 0.0,
    ) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        self.weighting = weighting
        if factors < 1 or iterations < 1:
            raise ValueError(
                f"factors and iterations must be at least 1, got {factors} and {iterations}"
            )
        if not all(0 <= value < math.inf for value in (regularization, alpha, min_engagement)):
            raise ValueError(
                "regularization, alpha and min_engagement must be non-negative numbers, got "
                f"{regularization}, {alpha} and {min_engagement}"
            )
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.random_state = int(random_state)
        self.min_engagement = float(min_engagement)
        self.arrival_days, self.arrival_lift, self.uptake_lift = _checked_arrivals(
            arrival_days, arrival_lift, uptake_lift
        )
        self.user_factors: np.ndarray = np.empty((0, self.factors), dtype=np.float32)
        self.item_factors: np.ndarray = np.empty((0, self.factors), dtype=np.float32)
        # Each product's (age in days, uptake) at the end of the training rows,
        # None until asked for (or without timestamps); the lifts they give.
        self._arrival_facts: tuple[np.ndarray, np.ndarray] | None = None
        self._arrival_rows: tuple[pd.Series, pd.Series, np.ndarray] | None = None
        self._lifts: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        """Return the hyper-parameters as a JSON-able dict."""
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "random_state": self.random_state,
            "weighting": self.weighting,
            "min_engagement": self.min_engagement,
            # Without arrivals, the parameters of the release before them: a
            # version trained without them loads there too.
            **({name: getattr(self, name) for name in ARRIVAL_PARAMS} if self.arrival_days else {}),
        }

    @property
    def reads_times(self) -> bool:
        return self.arrival_days > 0

    def rank_with(self, **ranking: Any) -> ALSRecommender:
        """Change the arrival parameters (``ranking_params``) in place, without a refit.

        A model fitted here learns the products' ages and uptakes from its
        training rows when first asked; a loaded one has them only if it was
        trained with arrivals (they are in its artifact), else no product is
        lifted.

        Returns:
            The model itself, ranking as one fitted with these parameters would.

        Raises:
            ValueError: A value is refused (the model is left as it was).
        """
        unknown = set(ranking) - set(ARRIVAL_PARAMS)
        if unknown:
            raise ValueError(f"rank_with takes {', '.join(ARRIVAL_PARAMS)}; got {sorted(unknown)}")
        current = {name: getattr(self, name) for name in ARRIVAL_PARAMS}
        checked = _checked_arrivals(**{**current, **ranking})
        # The lifts first, then the parameters: a failure leaves both as they were.
        self._lifts = self._lifts_for(*checked)
        self.arrival_days, self.arrival_lift, self.uptake_lift = checked
        return self

    def fit(self, feedback: pd.DataFrame) -> Self:
        """Learn from the feedback's pairs of at least ``min_engagement`` and return self."""
        if self.min_engagement > 0:
            feedback = feedback[feedback["engagement"].to_numpy() >= self.min_engagement]
        return super().fit(feedback)

    def _kept(self, engagement: np.ndarray) -> np.ndarray:
        """Return which of a history's pairs count (engagement at least ``min_engagement``)."""
        return np.asarray(engagement, dtype=np.float64) >= self.min_engagement

    def confidence(self, engagement: np.ndarray) -> np.ndarray:
        """Return the confidences of observed pairs: 1 + alpha * engagement, or 1 + alpha."""
        return 1.0 + self.confidence_gain(np.asarray(engagement, dtype=np.float64))

    def confidence_gain(self, engagement: np.ndarray) -> np.ndarray:
        """Return what observing each pair adds to its confidence: alpha * engagement, or alpha.

        Args:
            engagement: The pairs' engagement (float64).
        """
        if self.weighting == "binary":
            return np.full(len(engagement), self.alpha)
        return self.alpha * engagement

    def confidence_matrix(
        self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray
    ) -> scipy.sparse.csr_matrix:
        """Return the users x items CSR matrix of confidences (``confidence``).

        Args:
            feedback: The feedback frame (its ``engagement`` column is used).
            users: Inner user index of each row.
            items: Inner item index of each row.
        """
        engagement = feedback["engagement"].to_numpy(dtype=np.float64)
        if (engagement < 0).any():
            raise ValueError("engagement must be non-negative for ALS confidences")
        confidence = self.confidence(engagement).astype(np.float32)
        shape = (len(self.user_ids), len(self.product_ids))
        return scipy.sparse.csr_matrix((confidence, (users, items)), shape=shape)

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        # Imported here: only training needs implicit, so serving a saved model
        # (and importing the package) does not pay for it.
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = self.confidence_matrix(feedback, users, items)
        # One BLAS thread: the implicit authors advise it for speed, and it
        # keeps floating-point sums in a fixed order (deterministic factors).
        with threadpool_limits(1, "blas"):
            # alpha=1.0 here: the matrix already holds the full confidences.
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                num_threads=1,
            )
            # Our start, not implicit's (it draws the factors in matrix order:
            # one new product or user ahead shifts every draw after it, and two
            # fits of nearly the same data ended 2-4% apart in NDCG@10).
            model.user_factors, model.item_factors = self.initial_factors()
            model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._prepare_fold_in()
        # The times are parsed only when arrivals are asked for (now or by rank_with).
        self._arrival_facts = None
        self._arrival_rows = None
        if has_timestamps(feedback):
            # Copies of the columns: a column of the frame could keep all of it alive.
            last = feedback["timestamp"].copy()
            first = (
                feedback["first_timestamp"].copy()
                if "first_timestamp" in feedback.columns
                else last  # one event per pair: the same column, read once
            )
            self._arrival_rows = (first, last, items)
        self._lifts = self._lifts_for(self.arrival_days, self.arrival_lift, self.uptake_lift)

    def _lifts_for(self, days: float, arrival_lift: float, uptake_lift: float) -> np.ndarray | None:
        """Return the products' lifts for these arrival parameters (None: none lifted).

        The products' ages and uptakes are computed from the training rows the
        first time arrivals are asked for, and kept; the rows are then let go.
        """
        if days and self._arrival_facts is None and self._arrival_rows is not None:
            first, last, items = self._arrival_rows
            self._arrival_facts = arrival_facts(first, last, items, len(self.product_ids))
            self._arrival_rows = None
        if self._arrival_facts is None:
            return None
        age_days, uptake = self._arrival_facts
        return arrival_lifts(age_days, uptake, days, arrival_lift, uptake_lift)

    def initial_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the user and product factors a fit starts from (``seeded_factors``)."""
        return (
            seeded_factors(self.user_ids, self.factors, self.random_state ^ _USER_DRAWS),
            seeded_factors(self.product_ids, self.factors, self.random_state ^ _ITEM_DRAWS),
        )

    def user_weight(self, mine: np.ndarray, gain: np.ndarray) -> np.ndarray:
        """Return W = Y^T Y + sum_j (c_j - 1) y_j y_j^T + lambda I for a user's past products.

        Args:
            mine: The item factors of the user's past products (float64).
            gain: Their confidences less one, c_j - 1 (``confidence_gain``).

        Y^T Y + lambda I is computed once per fit or load, so one user costs
        O(len(items) k^2).
        """
        return self._gram + (mine.T * gain) @ mine

    def fold_in(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        """Return a user's factors solved from their products, the item factors fixed.

        The ALS user step for one user: x = W^-1 sum_j c_j y_j with
        c_j = 1 + alpha * engagement_j, or 1 + alpha when binary (what
        implicit's ``recalculate_user`` computes), over the pairs of at least
        ``min_engagement``.
        """
        engagement = np.asarray(engagement, dtype=np.float64)
        items = np.asarray(items)
        if self.min_engagement > 0:  # (with none, every pair counts: no mask to make)
            kept = self._kept(engagement)
            engagement, items = engagement[kept], items[kept]
        # The gain rather than the confidence: c_j - 1 is what W adds, and one
        # fewer subtraction per answer (this runs on every uncached one).
        gain = self.confidence_gain(engagement)
        mine = self._items64.take(items, axis=0)
        return solve_ridge(self.user_weight(mine, gain), mine.T @ (gain + 1.0))

    def _score_profile(self, items: np.ndarray, engagement: np.ndarray) -> np.ndarray:
        # Solved in float64, scored in float32 as training-time rows are (a third of the time).
        row = self.item_factors @ self.fold_in(items, engagement).astype(np.float32)
        return lifted(row, self._lifts)

    def _contributions(self, past: np.ndarray, engagement: np.ndarray, item: int) -> np.ndarray:
        """Split the item's score into one term per past product (as ``implicit``'s explain).

        The folded-in factors are x = W^-1 sum_j c_j y_j over the past
        products j, so the score y_i . x is the sum of c_j * y_i^T W^-1 y_j;
        a product below ``min_engagement`` contributes nothing.
        """
        kept = self._kept(engagement)
        gain = self.confidence_gain(np.asarray(engagement, dtype=np.float64)[kept])
        confidence = gain + 1.0
        mine = self._items64[np.asarray(past)[kept]]
        solved = solve_ridge(self.user_weight(mine, gain), mine.T)
        contributions = np.zeros(len(kept))
        contributions[kept] = confidence * (self._items64[item] @ solved)
        return contributions

    def _score(self, users: np.ndarray) -> np.ndarray:
        return lifted(self.user_factors[users] @ self.item_factors.T, self._lifts)

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors

    @classmethod
    def validate_state(cls, state: ModelState) -> None:
        """Check the factors, and the arrival facts when the state holds them (see the base)."""
        super().validate_state(state)
        if any(name in state.arrays for name in cls.arrival_shapes):
            check_state_arrays(state.all_arrays(), cls.arrival_shapes, {}, {})

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"user_factors": self.user_factors, "item_factors": self.item_factors}
        if self.arrival_days and self._arrival_facts is not None:
            age_days, uptake = self._arrival_facts
            arrays |= {"item_age_days": age_days, "item_uptake": uptake}
        return arrays

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.user_factors = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float32)
        self._prepare_fold_in()
        self._arrival_rows = None
        self._arrival_facts = (
            (
                np.asarray(arrays["item_age_days"], dtype=np.float64),
                np.asarray(arrays["item_uptake"], dtype=np.float64),
            )
            if "item_age_days" in arrays
            else None
        )
        self._lifts = self._lifts_for(self.arrival_days, self.arrival_lift, self.uptake_lift)

    def _prepare_fold_in(self) -> None:
        """Keep the item factors in float64 and Y^T Y + lambda I for fold-in."""
        self._items64 = self.item_factors.astype(np.float64)
        self._gram = self._items64.T @ self._items64
        self._gram[np.diag_indices_from(self._gram)] += self.regularization


def _checked_arrivals(
    arrival_days: float, arrival_lift: float, uptake_lift: float
) -> tuple[float, float, float]:
    values = (arrival_days, arrival_lift, uptake_lift)
    if not all(0 <= value < math.inf for value in values):
        raise ValueError(
            "arrival_days, arrival_lift and uptake_lift must be non-negative numbers, got "
            f"{arrival_days}, {arrival_lift} and {uptake_lift}"
        )
    return float(arrival_days), float(arrival_lift), float(uptake_lift)
