"""Pick the model to serve from candidates scored on the same split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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
