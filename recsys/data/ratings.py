"""Ratings from events: the feedback frame the models learn from.

Each event type is worth some points (``EventWeights``; a rating is worth its
weight times its stars, a dislike a negative amount). ``derive_ratings`` sums
them per user-product pair into the ``engagement`` (the confidence
implicit-feedback models use) and clips the sum to a 1-5 ``rating`` (what SVD
learns). A pair whose sum is 0 or less holds more dislike than interest: SVD
learns it as the lowest rating, the other models leave it out
(``Recommender.learns_dislikes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.interactions import EVENT_TYPES, PURCHASE, RATING, VALUE_COLUMN, event_codes
from recsys.errors import quote


@dataclass(frozen=True)
class EventWeights:
    """How many engagement points each event type is worth.

    ``engagement = sum of the pair's events' points``; a rating's points are
    ``rating * stars``; ``rating = clip(engagement, 1, 5)``. The defaults keep
    the ratings of logs without types as they always were: a click is 1 and
    a purchase (a click that ended in one) 1 + 2 = 3.

    Attributes:
        view: Points per view (the product's page was seen).
        click: Points per click.
        cart: Points per addition to the cart.
        purchase: Points per purchase.
        rating: Points per star of a rating (1-5 stars).
        dislike: Points per dislike: zero or less.
    """

    view: float = 0.5
    click: float = 1.0
    cart: float = 2.0
    purchase: float = 3.0
    rating: float = 1.0
    dislike: float = -5.0

    def __post_init__(self) -> None:
        for name in EVENT_TYPES:
            value = getattr(self, name)
            negative = name == "dislike"
            rule = "<= 0" if negative else ">= 0"
            if not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and np.isfinite(value)
                and (value <= 0 if negative else value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> EventWeights:
        """Return the weights of ``"purchase=4,dislike=-3"``: the named types, the rest default.

        Raises:
            ValueError: A part is not ``TYPE=NUMBER``, names no event type, or
                breaks a weight's rule.
        """
        given: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, equals, number = (s.strip() for s in part.partition("="))
            if not equals or name not in EVENT_TYPES:
                raise ValueError(f"{quote(part)} is not TYPE=POINTS with a known TYPE")
            if name in given:
                raise ValueError(f"{name} is given twice")
            try:
                given[name] = float(number)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {quote(number)}") from None
        return cls(**given)

    @classmethod
    def from_record(cls, training: Mapping[str, Any]) -> EventWeights:
        """Return the weights a model's ``training`` record says it was trained with.

        Versions trained before event types recorded ``click_weight`` and
        ``purchase_weight`` (points per click, extra points per purchase).
        """
        recorded = training.get("event_weights")
        if isinstance(recorded, Mapping):
            return cls(**{k: float(v) for k, v in recorded.items() if k in EVENT_TYPES})
        click = float(training.get("click_weight", cls.click))
        purchase = float(training.get("purchase_weight", cls.purchase - cls.click))
        return cls(click=click, purchase=click + purchase)

    def as_dict(self) -> dict[str, float]:
        """Return type -> points (what a model's training record keeps)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """Return the weights as ``RECSYS_EVENT_WEIGHTS`` writes them."""
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))

    def points(self) -> np.ndarray:
        """Return each type's points in ``EVENT_TYPES`` order (float64, read-only).

        Made once per weights: every fold-in of a user's history reads them.
        """
        found = self.__dict__.get("_points")
        if found is None:
            found = np.array([getattr(self, name) for name in EVENT_TYPES], dtype=np.float64)
            found.flags.writeable = False
            self.__dict__["_points"] = found  # frozen: kept beside the fields, not as one
        return found


RATING_SCALE = (1.0, 5.0)


def event_points(log: pd.DataFrame, weights: EventWeights) -> np.ndarray:
    """Return each event's engagement points (a rating's weight times its stars)."""
    codes = event_codes(log)
    points = weights.points()[codes]
    if VALUE_COLUMN in log.columns:
        stars = log[VALUE_COLUMN].to_numpy(dtype=np.float64)
        points = np.where(codes == RATING, points * stars, points)
    return points


def derive_ratings(interactions: pd.DataFrame, weights: EventWeights | None = None) -> pd.DataFrame:
    """Aggregate an event log into a feedback frame with one rating per pair.

    Args:
        interactions: ``user_id, product_clicked, purchased`` and optionally
            ``type`` and ``value`` (without ``type``, each row is a click or,
            with ``purchased`` 1, a purchase), and a ``timestamp``, of which
            the latest per pair is kept (``timestamp``) and the earliest
            (``first_timestamp``).
        weights: Points per event type; see ``EventWeights``.

    Returns:
        ``user_id, product_id, clicks, purchases, engagement, rating``, sorted
        by user then product (with ``timestamp`` and ``first_timestamp`` after
        ``purchases`` when the log has times). ``clicks`` counts the pair's events of any type,
        ``purchases`` its purchases; ``engagement`` is the unclipped sum of
        points (0 or less when dislikes outweigh the rest), the confidence
        implicit-feedback models use.
    """
    weights = weights or EventWeights()
    codes = event_codes(interactions)
    frame = pd.DataFrame(
        {
            "user_id": interactions["user_id"].to_numpy(),
            "product_id": interactions["product_clicked"].to_numpy(),
            "purchases": (codes == PURCHASE).astype(np.int64),
            "engagement": event_points(interactions, weights),
        }
    )
    if "timestamp" in interactions.columns:
        frame["timestamp"] = interactions["timestamp"].to_numpy()
    grouped = frame.groupby(["user_id", "product_id"], sort=True)
    aggregations: dict[str, tuple[str, str]] = {
        "clicks": ("purchases", "size"),
        "purchases": ("purchases", "sum"),
        "engagement": ("engagement", "sum"),
    }
    if "timestamp" in frame.columns:
        aggregations["timestamp"] = ("timestamp", "max")
        # When the pair began: when a product first appeared is the earliest of these
        # (``recsys.models.arrivals``), not of the latest times, which repeats move on.
        aggregations["first_timestamp"] = ("timestamp", "min")
    feedback = grouped.agg(**aggregations).reset_index()
    feedback["engagement"] = feedback["engagement"].astype(np.float64)
    feedback["rating"] = feedback["engagement"].clip(*RATING_SCALE)
    columns = ["user_id", "product_id", "clicks", "purchases", "engagement", "rating"]
    if "timestamp" in feedback.columns:
        columns[4:4] = ["timestamp", "first_timestamp"]
    return feedback.loc[:, columns]
