"""A user described by their products alone: what fold-in scores.

A ``Profile`` is one user's row of the feedback frame, the products they
touched and the engagement of each, as ``recsys.data.ratings.derive_ratings``
computes it. A model with the ``FOLD_IN`` capability scores a profile with
its item side fixed, so a user the model never saw, or one whose history grew
since training, is scored from what they did, not from a row frozen at
training time. Serving builds profiles from the store (``UserHistory.profile``)
and from anonymous sessions; evaluation builds them from a split's training
part (``Profile.from_feedback``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Profile:
    """One user's products and the engagement of each, ascending by product id.

    Attributes:
        product_ids: Raw product ids, ascending and unique (int64).
        engagement: The engagement with each (float64, non-negative).
        latest: When the user last had an event with each product, as a
            number that grows with time (int64: whole seconds since the
            epoch from the store and from logs, a position in an anonymous
            session), or None when unknown. Only its order is read: a model
            that weights recent products (EASE's ``recency``) ranks them by it.
    """

    product_ids: np.ndarray
    engagement: np.ndarray
    latest: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.product_ids.shape != self.engagement.shape or self.product_ids.ndim != 1:
            raise ValueError("a profile needs one engagement per product id")
        if self.latest is not None and self.latest.shape != self.product_ids.shape:
            raise ValueError("a profile's latest times need one per product id")

    def __len__(self) -> int:
        return len(self.product_ids)

    @classmethod
    def of(cls, engagement_by_product: dict[int, float]) -> Profile:
        """Return the profile of product id -> engagement (any order)."""
        ids = np.array(sorted(engagement_by_product), dtype=np.int64)
        values = np.array([engagement_by_product[p] for p in ids.tolist()], dtype=np.float64)
        return cls(ids, values)

    @classmethod
    def from_feedback(cls, rows: pd.DataFrame) -> Profile:
        """Return the profile in one user's feedback-frame rows (``product_id``, ``engagement``).

        Rows of the same product are summed; with a ``timestamp`` column, the
        latest of each product is kept, in whole seconds (``epoch_seconds``).
        """
        grouped = rows.groupby("product_id", sort=True)
        summed = grouped["engagement"].sum()
        latest = None
        if "timestamp" in rows.columns:
            latest = epoch_seconds(grouped["timestamp"].max())
        return cls(
            summed.index.to_numpy(dtype=np.int64),
            summed.to_numpy(dtype=np.float64, copy=True),
            latest,
        )

    @classmethod
    def empty(cls) -> Profile:
        """Return the profile of a user with no products."""
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def has_timestamps(feedback: pd.DataFrame) -> bool:
    """Return whether every row of a feedback frame carries a timestamp."""
    return "timestamp" in feedback.columns and bool(feedback["timestamp"].notna().all())


def epoch_seconds(times: pd.Series) -> np.ndarray:
    """Return timestamps as whole seconds since the epoch (int64), rounded down.

    The unit both the store's history reads and the training frames give a
    product's latest event in, so that a user's products rank the same at
    training time and when served. Numbers are taken as seconds already
    (MovieLens' timestamps); text and datetimes are read as UTC.
    """
    if pd.api.types.is_numeric_dtype(times):
        return np.floor(times.to_numpy(dtype=np.float64)).astype(np.int64)
    stamps = pd.to_datetime(times, utc=True, format="ISO8601").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[s]").astype(np.int64)
