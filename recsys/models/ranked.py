"""Ranked lists, and the lookups between raw ids and a model's inner indices.

Every model answers with ``RankedList``s; ``lookup_ids`` and ``id_array``
are how raw ids (users', products') meet the sorted id arrays a model keeps.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RankedList:
    """One user's (or one product's) recommendations, best first.

    Attributes:
        product_ids: Raw product ids, best first.
        scores: The model's score for each id (higher is better).
    """

    product_ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.product_ids)


@dataclass(frozen=True)
class RecommendationBatch:
    """The answer of ``Recommender.recommend`` for several users.

    Attributes:
        lists: Ranked list per known user id.
        unknown_users: Requested user ids the model has never seen (no list).
    """

    lists: dict[int, RankedList]
    unknown_users: list[int] = field(default_factory=list)


def lookup_ids(sorted_ids: np.ndarray, raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each raw id's position in a sorted id array, and whether it is there.

    Args:
        sorted_ids: Ascending unique ids (a model's ``user_ids`` or ``product_ids``).
        raw_ids: Ids to look up.

    Returns:
        (positions, found): positions are only meaningful where ``found``.
    """
    raw_ids = np.asarray(raw_ids, dtype=np.int64)
    positions = np.minimum(np.searchsorted(sorted_ids, raw_ids), len(sorted_ids) - 1)
    return positions, sorted_ids[positions] == raw_ids


def id_array(ids: Collection[int] | np.ndarray) -> np.ndarray:
    """Return product or user ids (a set, a list or an array) as an int64 array."""
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64, copy=False)
    return np.fromiter(ids, dtype=np.int64, count=len(ids))
