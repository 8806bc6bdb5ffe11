"""Assignment of users to variants: a stable hash, no stored state.

A user's variant is a hash of (experiment name, user id), so it is the same
in every worker and server and for as long as the experiment runs, without
storing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from recsys.experiments import abstats


def assignment_point(experiment: str, user_id: int) -> float:
    """Return a user's uniform point in [0, 1) for an experiment (stable across processes)."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Assigner:
    """Maps users to variants by their hashed point and the variants' cumulative weights."""

    def __init__(self, experiment: str, weights: Sequence[float]):
        self.experiment = experiment
        self.bounds = np.cumsum(abstats.weight_shares(weights)).tolist()
        self.bounds[-1] = 1.0

    def index(self, user_id: int) -> int:
        """Return the index of the user's variant."""
        point = assignment_point(self.experiment, user_id)
        for i, bound in enumerate(self.bounds):
            if point < bound:
                return i
        return len(self.bounds) - 1  # pragma: no cover - bounds end at 1.0 > point
