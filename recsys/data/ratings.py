"""Ratings from clicks and purchases: the feedback frame the models learn from.

``derive_ratings`` turns an interaction log into one row per user-product pair
with a 1-5 ``rating`` (what SVD learns) and the unclipped ``engagement`` (the
confidence implicit-feedback models use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RatingWeights:
    """How clicks and purchases of a product become one 1-5 rating.

    ``rating = clip(click_weight * clicks + purchase_weight * purchases, 1, 5)``
    where ``clicks`` counts the user's clicks on the product and ``purchases``
    how many of those clicks ended in a purchase. With non-negative weights,
    more engagement never lowers the rating.

    Attributes:
        click_weight: Rating points per click.
        purchase_weight: Extra rating points per purchase.
    """

    click_weight: float = 1.0
    purchase_weight: float = 2.0

    def __post_init__(self) -> None:
        for name in ("click_weight", "purchase_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


RATING_SCALE = (1.0, 5.0)


def derive_ratings(
    interactions: pd.DataFrame, weights: RatingWeights | None = None
) -> pd.DataFrame:
    """Aggregate a click log into a feedback frame with one rating per pair.

    Args:
        interactions: ``user_id, product_clicked, purchased`` (and an optional
            ``timestamp``, of which the latest per pair is kept).
        weights: Points per click and per purchase; see ``RatingWeights``.

    Returns:
        ``user_id, product_id, clicks, purchases, engagement, rating``, sorted
        by user then product. ``engagement`` is the unclipped weighted sum, the
        confidence implicit-feedback models use.
    """
    weights = weights or RatingWeights()
    grouped = interactions.groupby(["user_id", "product_clicked"], sort=True)
    feedback = grouped.agg(clicks=("purchased", "size"), purchases=("purchased", "sum"))
    if "timestamp" in interactions.columns:
        feedback["timestamp"] = grouped["timestamp"].max()
    feedback = feedback.reset_index().rename(columns={"product_clicked": "product_id"})
    feedback["engagement"] = (
        weights.click_weight * feedback["clicks"] + weights.purchase_weight * feedback["purchases"]
    ).astype(np.float64)
    feedback["rating"] = feedback["engagement"].clip(*RATING_SCALE)
    return feedback
