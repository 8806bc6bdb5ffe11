"""Re-ranking a ranked list for diversity: maximal marginal relevance (MMR).

Carbonell and Goldstein (1998): build the list one item at a time, each time
taking the candidate that maximises

    (1 - diversity) * relevance(i) - diversity * max over chosen j of similarity(i, j)

where relevance is the model's score scaled to [0, 1] over the candidates.
At diversity 0 this is the plain ranking; at 1 it picks, after the first
item, whatever is least like the items already chosen.
"""

from __future__ import annotations

import numpy as np


def mmr_order(scores: np.ndarray, similarity: np.ndarray, n: int, diversity: float) -> np.ndarray:
    """Return the positions of up to n candidates in MMR order.

    Args:
        scores: The candidates' scores, best first (a model's ranked list);
            ties between equal MMR values go to the earlier candidate, so
            diversity 0 returns the first n positions unchanged.
        similarity: Candidates x candidates similarity (1 for identical).
        n: How many to pick.
        diversity: From 0 (plain ranking) to 1 (dissimilarity only).

    Raises:
        ValueError: diversity outside [0, 1] or shapes that do not match.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be from 0 to 1, got {diversity}")
    scores = np.asarray(scores, dtype=np.float64)
    if similarity.shape != (len(scores), len(scores)):
        raise ValueError(f"similarity has shape {similarity.shape}, expected {len(scores)} square")
    count = min(n, len(scores))
    if count == 0:
        return np.empty(0, dtype=np.int64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(len(scores))
    chosen: list[int] = []
    nearest = np.full(len(scores), -np.inf)  # max similarity to a chosen item
    available = np.ones(len(scores), dtype=bool)
    for _ in range(count):
        penalty = np.where(np.isfinite(nearest), nearest, 0.0)
        value = (1.0 - diversity) * relevance - diversity * penalty
        value[~available] = -np.inf
        pick = int(np.argmax(value))  # the first of equal values: the earlier candidate
        chosen.append(pick)
        available[pick] = False
        nearest = np.maximum(nearest, similarity[:, pick])
    return np.array(chosen, dtype=np.int64)
