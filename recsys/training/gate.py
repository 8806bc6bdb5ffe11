"""The quality gate: a new version goes live only if it is not worse offline than the live one.

Training measures the candidate on a held-out split of the current data (its
NDCG@k, the figure it publishes). The gate scores the live version on that
same split: each held-out user is ranked from their history in the split's
training part, with those products left out, and the same held-out products
count as relevant. The candidate passes when its figure is at least the live
one's minus the tolerance (a share of the live figure: 0.02 lets it be 2 %
worse). A candidate that does not pass is kept as ``rejected``, with both
figures, and never served; ``force`` publishes it all the same (``forced``).

The gate passes without comparing when there is nothing to compare with: no
live version, a live model that cannot rank a user from a history, or too
few interactions to hold any out. Its record says which.

The live version has seen part of the held-out rows (it was trained on all the
data of its day), so the comparison leans its way; the tolerance absorbs that
and the noise of one split (docs/retraining.md has the reasoning).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter

from recsys.data.loaders import relevant_mask
from recsys.evaluation import metrics
from recsys.evaluation.splits import Split, products_by_user
from recsys.models.base import Recommender
from recsys.store.artifacts import LoadedArtifact

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
FORCED = "forced"
DEFAULT_TOLERANCE = 0.02

VERSIONS_REJECTED = Counter(
    "recsys_model_versions_rejected",
    "Trained versions the quality gate kept from going live (worse offline than the live one)",
)


@dataclass(frozen=True)
class GatePolicy:
    """How the quality gate judges a candidate.

    Attributes:
        tolerance: How much worse than the live version the candidate may be,
            as a share of the live figure (0.02: 2 %).
        force: Publish a candidate the gate would reject (``flask train --force``).
    """

    tolerance: float = DEFAULT_TOLERANCE
    force: bool = False

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be at least 0, got {self.tolerance}")


@dataclass(frozen=True)
class Measure:
    """What the gate measures with, and on what.

    Attributes:
        split: The held-out split the candidate was measured on.
        k: The ranking cut-off.
        threshold: A held-out rating at least this counts as relevant.
        facts: How the split was made (protocol, share, seed), for the record.
    """

    split: Split
    k: int
    threshold: float
    facts: Mapping[str, Any]


def judge(
    candidate_metrics: Mapping[str, Any],
    live: LoadedArtifact | None,
    measure: Measure,
    policy: GatePolicy,
) -> dict[str, Any]:
    """Return the gate's record for a candidate: its decision, both figures, the split, why.

    Args:
        candidate_metrics: The candidate's holdout metrics on ``measure.split``.
        live: The version serving now (None: none is published).
        measure: The split and the cut-off both are measured on.
        policy: The tolerance, and whether to publish whatever the figures say.
    """
    metric = f"ndcg@{measure.k}"
    record: dict[str, Any] = {
        "metric": metric,
        "tolerance": policy.tolerance,
        "candidate": candidate_metrics.get(metric),
        "live": None,
        "live_version": live.metadata.version if live is not None else None,
        "split": {**measure.facts, "test_users": measure.split.test["user_id"].nunique()},
    }
    if record["candidate"] is None:
        return _passed(record, f"too few interactions to hold out and measure {metric}")
    if live is None:
        return _passed(record, "no live version to compare with")
    if not can_score_live(live.model):
        return _passed(record, f"the live model ({live.metadata.model_type}) cannot be compared")
    figure = live_figure(live.model, measure)
    if figure is None:
        return _passed(record, f"no held-out user the live model could rank for {metric}")
    record["live"] = figure
    record["least"] = round(figure * (1 - policy.tolerance), 4)
    if record["candidate"] >= record["least"]:
        return _passed(record, f"{metric} is at least the live version's minus the tolerance")
    if policy.force:
        record.update(decision=FORCED, reason=f"{metric} is below the bar; published by force")
        return record
    record.update(decision=REJECTED, reason=f"{metric} is below the live one minus the tolerance")
    logger.warning(
        "quality gate: candidate %s %.4f < %.4f (live %s %.4f minus %g): rejected",
        metric,
        record["candidate"],
        record["least"],
        record["live_version"],
        figure,
        policy.tolerance,
    )
    return record


def _passed(record: dict[str, Any], reason: str) -> dict[str, Any]:
    record.update(decision=ACCEPTED, reason=reason)
    return record


def can_score_live(model: Recommender) -> bool:
    """Return whether the gate can rank held-out users with this live model."""
    return model.is_fitted


def live_figure(model: Recommender, measure: Measure) -> float | None:
    """Return the live model's NDCG@k on the split, rounded as the candidate's is.

    The users are the held-out users with a relevant held-out product and a
    history in the split's training part: the users the candidate, fitted on
    that part, is measured on. A user the live model ranks nothing for counts 0.

    Returns:
        The figure, or None when no such user exists.
    """
    split = measure.split
    relevant = products_by_user(split.test[relevant_mask(split.test, measure.threshold)])
    histories = products_by_user(split.train)
    users = [user for user in relevant if user in histories]
    if not users:
        return None
    lists = rank_live(model, split.train, users, measure.k)
    figure = metrics.ndcg_at_k(lists, {user: relevant[user] for user in users}, measure.k)
    return round(float(figure), 4)


def rank_live(
    model: Recommender, train: pd.DataFrame, users: list[int], k: int
) -> dict[int, np.ndarray]:
    """Rank each user's k best products with the live model, their history left out.

    Args:
        model: The live model.
        train: The split's training part: each user's history.
        users: The users to rank (each has rows in ``train``).
        k: How many products each.
    """
    histories = products_by_user(train[train["user_id"].isin(users)])
    batch = model.recommend(users, k, exclude=histories)
    return {user: ranked.product_ids for user, ranked in batch.lists.items()}


def describe(record: Mapping[str, Any]) -> str:
    """Return a gate record in one line: the decision, both figures, the bar and why."""
    decision = record.get("decision", "")
    metric = record.get("metric", "")
    if record.get("live") is None:
        return f"{decision}: {record.get('reason', '')}"
    tolerance = float(record.get("tolerance", 0.0))
    return (
        f"{decision}: {metric} {record.get('candidate')} against {record.get('least')} "
        f"(the live {record.get('live_version')}'s {record.get('live')} minus {tolerance:.0%}) "
        f"on the same holdout of {record.get('split', {}).get('test_users')} users"
    )
