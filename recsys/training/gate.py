"""The quality gate: a new version goes live only if it is not worse offline than the live one.

The candidate and the live version are scored on the same held-out split of
the current data: the split the candidate was measured on, its training part
being each user's history. Both rank each held-out user from that same
history, folded in (the candidate was fitted on that training part; the live
version's training-time rows are not used), on the same products and cut-off.
Only the users the live version never saw count, with every one of their
held-out products: it was trained on all the events of its day, so a held-out
product it saw would favour it (on a shop of a few hundred users, by more
than any tolerance), and a known user's late products are a biased sample
(see ``new_to_live``).

The candidate passes when its NDCG@k is at least the live one's minus the
tolerance (a share of the live figure: 0.02 lets it be 2 % worse), or falls
short of that bar by no more than twice the standard error of the paired
per-user difference (the noise of the sample). One that does not is kept as
``rejected``, with both figures, and never served; ``force`` publishes it all
the same (``forced``). The gate passes without comparing when there is nothing
fair to compare: no live version, a model that cannot fold in a history
(``popular``), or fewer than ``min_users`` held-out users the live version
never saw (a retrain on unchanged data). Its record says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter

from recsys.evaluation.splits import Split, products_by_user
from recsys.models.base import FOLD_IN, Recommender
from recsys.models.profile import Profile, epoch_seconds, has_timestamps
from recsys.store.artifacts import LoadedArtifact

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
FORCED = "forced"
DEFAULT_TOLERANCE = 0.02
# Fewer held-out users the live version never saw than this make
# a figure too noisy to refuse a version on.
DEFAULT_MIN_USERS = 20
# A candidate is rejected only when it falls short of the bar by more than
# this many standard errors of the paired per-user difference (one-sided,
# about 98 %): a same-quality retrain measured on a few hundred users would
# otherwise be refused on the noise of the sample alone.
NOISE_ERRORS = 2.0

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
        min_users: Compare only on at least this many held-out users the live
            version never saw; fewer pass without comparing.
    """

    tolerance: float = DEFAULT_TOLERANCE
    force: bool = False
    min_users: int = DEFAULT_MIN_USERS

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be at least 0, got {self.tolerance}")


@dataclass(frozen=True)
class Measure:
    """What the gate measures with, and on what.

    Attributes:
        split: The held-out split the candidate was measured on.
        log: The interaction log the split was made from, in insertion order
            (its first ``training["interactions"]`` events are the live
            version's training data).
        feedback: The feedback frame of that log (the split's rows and
            those of the held-out users left out of its sample).
        k: The ranking cut-off.
        facts: How the split was made (protocol, share, seed), for the record.
    """

    split: Split
    log: pd.DataFrame
    feedback: pd.DataFrame
    k: int
    facts: Mapping[str, Any]


def judge(
    fit: Callable[[pd.DataFrame], Recommender] | None,
    live: LoadedArtifact | None,
    measure: Measure,
    policy: GatePolicy,
) -> dict[str, Any]:
    """Return the gate's record for a candidate: its decision, both figures, the split, why.

    The candidate compared is the chosen model fitted on every row but the
    compared users': all the data the live version had, and the rest of
    what came since, so that both models meet the compared users for the
    first time. (The holdout's fit lacks a fifth of every row the live
    version had; and a fit on the compared users' other rows would have
    learned their held-out products as ones they do not want: ALS lost a
    sixth of its NDCG@10 so.)

    Args:
        fit: Fits the candidate's model on a feedback frame (None: nothing
            could be held out to measure it).
        live: The version serving now (None: none is published).
        measure: The split and the cut-off both are measured on.
        policy: The tolerance, and whether to publish whatever the figures say.
    """
    metric = f"ndcg@{measure.k}"
    record: dict[str, Any] = {
        "metric": metric,
        "tolerance": policy.tolerance,
        "candidate": None,
        "live": None,
        "live_version": live.metadata.version if live is not None else None,
        "split": {**measure.facts, "test_users": 0},
    }
    if fit is None:
        return _passed(record, f"too few interactions to hold out and measure {metric}")
    if live is None:
        return _passed(record, "no live version to compare with")
    if not can_fold_in(live.model):
        return _passed(record, f"{live.metadata.model_type} cannot fold in a history")
    relevant = new_to_live(measure, live.metadata.training.get("interactions"))
    record["split"]["test_users"] = len(relevant)
    if len(relevant) < policy.min_users:
        return _passed(
            record,
            f"{len(relevant)} held-out users the live version never saw, "
            f"fewer than {policy.min_users}: too few to compare",
        )
    users, k, feedback = list(relevant), measure.k, measure.feedback
    candidate = fit(feedback[~feedback["user_id"].isin(users)])
    if not can_fold_in(candidate):
        return _passed(record, f"the candidate ({candidate.name}) cannot fold in a history")
    train = measure.split.train
    ours = per_user_ndcg(rank_from_history(candidate, train, users, k), relevant, k)
    theirs = per_user_ndcg(rank_from_history(live.model, train, users, k), relevant, k)
    record.update(compare(ours, theirs, policy.tolerance))
    decision, reason = decide(record, policy)
    record.update(decision=decision, reason=reason)
    if decision == REJECTED:
        logger.warning("quality gate rejected the candidate: %s", describe(record))
    return record


def decide(figures: Mapping[str, Any], policy: GatePolicy) -> tuple[str, str]:
    """Return the decision on compared figures, and why.

    Args:
        figures: ``metric``, ``candidate``, ``least`` (the bar) and
            ``standard_error`` (of the paired per-user difference).
        policy: Whether to publish a candidate below the bar all the same.
    """
    metric, shortfall = figures["metric"], figures["least"] - figures["candidate"]
    if shortfall <= 0:
        return ACCEPTED, f"{metric} is at least the live version's minus the tolerance"
    if shortfall <= NOISE_ERRORS * figures["standard_error"]:
        return ACCEPTED, (
            f"{metric} is below the bar by less than {NOISE_ERRORS:g} standard errors of the "
            "paired difference: within the noise of the sample"
        )
    if policy.force:
        return FORCED, f"{metric} is below the bar; published by force"
    return REJECTED, f"{metric} is below the live one minus the tolerance"


def _passed(record: dict[str, Any], reason: str) -> dict[str, Any]:
    record.update(decision=ACCEPTED, reason=reason)
    return record


def new_to_live(measure: Measure, live_events: int | None) -> dict[int, list[int]]:
    """Return the held-out products of each user the live version never saw (the relevant ones).

    Users whose first event came after the live version's training: none of
    their events shaped its item side, so it gains nothing from them. (A
    known user's new products would not do: those that arrive late are the
    ones the user touched least, which favours a popularity ranking.) Only
    users with a history in the split's training part count: those both
    models can rank from it.

    Args:
        measure: The split and the log, in insertion order.
        live_events: How many events the live version was trained on (the
            first ones of the log); None: unknown, taken as all of them.
    """
    split, log = measure.split, measure.log
    seen_log = log if live_events is None else log.iloc[: int(live_events)]
    # Every held-out product counts, whatever its rating: the held-out users
    # are few, and a figure on the products rated 4 or more alone would be
    # too noisy to refuse a version on.
    test = split.test
    new = ~test["user_id"].isin(seen_log["user_id"])
    with_history = test["user_id"].isin(split.train["user_id"])
    return products_by_user(test[new & with_history])


def per_user_ndcg(
    lists: Mapping[int, np.ndarray], relevant: Mapping[int, list[int]], k: int
) -> np.ndarray:
    """Return each relevant user's NDCG@k, in ``relevant``'s order (ranked nothing: 0)."""
    # The formula of ``metrics.ndcg_at_k`` (binary relevance), kept per user.
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    figures = np.zeros(len(relevant))
    for row, (user, products) in enumerate(relevant.items()):
        top = lists.get(user)
        if top is not None and len(top):
            hits = np.isin(top[:k], products)
            figures[row] = discounts[: len(hits)][hits].sum() / ideal[min(k, len(products)) - 1]
    return figures


def compare(candidate: np.ndarray, live: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Return both mean figures, the bar, and the standard error of their paired difference.

    Args:
        candidate: Each user's figure with the candidate.
        live: The same users' figures with the live version.
        tolerance: The share of the live figure the candidate may fall short by.
    """
    differences = candidate - live
    spread = float(differences.std(ddof=1)) if len(differences) > 1 else 0.0
    live_figure = float(live.mean())
    return {
        "candidate": round(float(candidate.mean()), 4),
        "live": round(live_figure, 4),
        "least": round(live_figure * (1 - tolerance), 4),
        "standard_error": round(spread / float(np.sqrt(len(differences))), 4),
    }


def can_fold_in(model: Recommender) -> bool:
    """Return whether a model can rank a user from a history (fold-in)."""
    return FOLD_IN in model.capabilities


def rank_from_history(
    model: Recommender, train: pd.DataFrame, users: list[int], k: int
) -> dict[int, np.ndarray]:
    """Rank each user's k best products from their history, folded in, the history left out.

    Both models are scored so, from the same profiles. The live version's
    training-time rows are not used: they were learned from events that
    include this split's held-out ones. The candidate's are its fit on this
    history (the same ranking for EASE and item-kNN; a fresh solve of the
    user's factors for ALS and SVD).

    Args:
        model: A model with the ``FOLD_IN`` capability.
        train: The split's training part: each user's history.
        users: The users to rank (each has rows in ``train``).
        k: How many products each.

    Returns:
        User -> ranked product ids; a user whose history names no product
        the live model knows is left out (counted 0).
    """
    # The feedback frame holds one row per (user, product): each user's rows,
    # sorted by product, are their profile (``Profile.from_feedback`` without
    # a group-by per user, which cost more than the ranking).
    rows = train[train["user_id"].isin(users)].sort_values(["user_id", "product_id"])
    user_ids = rows["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    products = np.split(rows["product_id"].to_numpy(dtype=np.int64), starts[1:])
    engagement = np.split(rows["engagement"].to_numpy(dtype=np.float64), starts[1:])
    # Each product's latest time, as serving reads it (EASE's recency ranks by it).
    latest: list[np.ndarray | None] = [None] * len(starts)
    if has_timestamps(rows):
        latest = list(np.split(epoch_seconds(rows["timestamp"]), starts[1:]))
    lists = {}
    for user, ids, weights, times in zip(
        user_ids[starts].tolist(), products, engagement, latest, strict=True
    ):
        ranked = model.rank_profile(Profile(ids, weights, times), k, exclude=ids)
        if ranked is not None:
            lists[user] = ranked.product_ids
    return lists


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
