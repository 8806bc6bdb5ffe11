"""Pick the model to serve from candidates scored on the same validation split.

``choose_on_validation`` receives the training rows of an outer split and
nothing else: it carves the validation split from them
(``splits.validation_splits``: three windows for a global time split, whose
figures are averaged), measures every candidate there and picks the
best, so the outer test rows stay unread until the champion's figure is
reported on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recsys.evaluation.splits import DEFAULT_SPLIT_SEED, Split, validation_splits

# Measures one candidate (by name) on a split: its metrics, by name.
Measure = Callable[[str, Split], Mapping[str, Any]]


@dataclass(frozen=True)
class Choice:
    """The champion among candidates, and why.

    Attributes:
        champion: The chosen model's name.
        metric: The metric compared (higher is better).
        reason: One sentence for people: the winner's figure against the runner-up's.
    """

    champion: str
    metric: str
    reason: str
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)


def choose_champion(
    candidates: Mapping[str, Mapping[str, float]], metric: str, cost_order: Sequence[str]
) -> Choice:
    """Return the candidate with the highest metric; a tie goes to the cheaper one.

    Figures are compared as reported, rounded to 4 decimals, so two models
    indistinguishable in the report count as tied; ``cost_order`` lists
    model names cheapest first (names absent from it count as dearest).

    Args:
        candidates: Model name -> its metrics; a model without the metric
            (it ranked no user) cannot win.
        metric: For example "ndcg@10".
        cost_order: Model names, cheapest first.

    Raises:
        ValueError: No candidate has the metric.
    """
    scored = {name: round(float(m[metric]), 4) for name, m in candidates.items() if metric in m}
    if not scored:
        raise ValueError(f"no candidate has the metric {metric!r}")

    def cost(name: str) -> int:
        return cost_order.index(name) if name in cost_order else len(cost_order)

    ranked = sorted(scored, key=lambda name: (-scored[name], cost(name), name))
    champion = ranked[0]
    if len(ranked) == 1:
        reason = f"{champion} was the only candidate with {metric} ({scored[champion]:.4f})"
    else:
        runner_up = ranked[1]
        if scored[runner_up] == scored[champion]:
            reason = (
                f"{champion} tied {runner_up} on {metric} ({scored[champion]:.4f}) "
                f"and is the cheaper to train"
            )
        else:
            reason = (
                f"{champion} had the highest {metric}: {scored[champion]:.4f} against "
                f"{scored[runner_up]:.4f} for {runner_up}, the runner-up"
            )
    return Choice(champion=champion, metric=metric, reason=reason)


def choose_on_validation(
    train: pd.DataFrame,
    candidates: Sequence[str],
    measure: Measure,
    metric: str,
    protocol: str = "holdout",
    seed: int = DEFAULT_SPLIT_SEED,
) -> Choice:
    """Measure every candidate on a validation split of the training rows and pick the best.

    Args:
        train: The training rows of an outer split (never its test rows).
        candidates: Model names, cheapest first (a tie goes to the cheaper).
        measure: Fits a candidate on a split's training rows and scores it on
            its held-out rows.
        metric: For example "ndcg@10".
        protocol: The outer protocol, whose rule the validation split follows.
        seed: The outer split's seed.

    Returns:
        The choice, with every candidate's validation metrics; when validation
        holds no row to rank (a tiny log), the cheapest candidate.
    """
    windows = [part for part in validation_splits(train, protocol, seed) if not part.test.empty]
    measured: dict[str, dict[str, Any]] = {}
    if windows:
        measured = {name: _mean_figures([measure(name, w) for w in windows]) for name in candidates}
    if any(metric in figures for figures in measured.values()):
        choice = choose_champion(measured, metric, candidates)
        return Choice(choice.champion, metric, f"{choice.reason} (on validation)", measured)
    cheapest = candidates[0]
    return Choice(
        champion=cheapest,
        metric=metric,
        reason=f"too few interactions to measure {metric} on validation; "
        f"{cheapest} is the cheapest candidate",
        candidates=measured,
    )


def _mean_figures(figures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return one candidate's figures over validation windows: each number's mean.

    A figure missing from a window (the candidate ranked none of its users)
    is averaged over the windows that have it; a value that is not a number
    is the first window's.
    """
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(key for window in figures for key in window):
        values = [window[name] for window in figures if name in window]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        merged[name] = sum(values) / len(values) if numbers else values[0]
    return merged
