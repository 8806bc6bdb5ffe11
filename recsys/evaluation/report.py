"""The evaluate report as a plain-text table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsys.evaluation.evaluate import column_position, rank_models


def format_report(report: Mapping[str, Any]) -> str:
    """Render a report as a plain-text table, one row per model.

    Args:
        report: The output of ``evaluate``.
    """
    dataset, protocol = report["dataset"], report["protocol"]
    columns: list[str] = []
    for scores in report["models"].values():
        columns += [c for c in scores if c not in columns and c != "ranked_users"]
    columns.sort(key=column_position)
    header = ["model", *columns]
    rows = [
        [name, *(_format_value(scores.get(c)) for c in columns)]
        for name, scores in report["models"].items()
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"data: {dataset['name']} ({dataset['rows']} rows, {dataset['users']} users, "
        f"{dataset['products']} products)",
        _describe_protocol(protocol),
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    ndcg = f"ndcg@{protocol['k']}"
    if any(ndcg in scores for scores in report["models"].values()):
        intervals = report.get("intervals", {})
        ranking = ", ".join(
            f"{name} {value:.4f}{_plus_minus(intervals.get(name, {}).get(ndcg))}"
            for name, value in rank_models(report, ndcg)
        )
        lines.append(f"by {ndcg}, best first: {ranking}")
    if protocol.get("repeats", 1) > 1:
        lines.append(
            f"figures: means over {protocol['repeats']} splits; +- the half-width of the "
            "95% Student-t interval"
        )
    if "relevance" in protocol:
        lines.append(f"relevance: {protocol['relevance']}")
        lines.append(f"candidates: {protocol['candidates']}")
        lines.append(f"training input: {protocol['training_input']}")
    return "\n".join(lines)


def _plus_minus(half_width: float | None) -> str:
    return "" if half_width is None else f" +- {half_width:.4f}"


def _describe_protocol(protocol: Mapping[str, Any]) -> str:
    splits = protocol["splits"]
    cold_users = sum(s["cold_test_users"] for s in splits)
    cold_items = sum(s["cold_test_items"] for s in splits)
    cold_rows = sum(s["cold_test_rows"] for s in splits)
    test_rows = sum(s["test_rows"] for s in splits)
    detail = {
        "kfold": f"{protocol.get('folds')} folds (means over folds)",
        "holdout": f"{protocol.get('test_fraction')} of each user's rows held out",
        "time": f"each user's last {protocol.get('leave_last')} rows held out",
        "time-global": f"one cut in time, the next {protocol.get('test_fraction')} of the log "
        "held out (test users with no earlier row dropped)",
    }[protocol["name"]]
    return (
        f"protocol: {protocol['name']}, {detail}, seed {protocol['seed']}, k {protocol['k']}, "
        f"relevant = rating >= {protocol['relevance_threshold']:g}; test rows {test_rows}, "
        f"cold{' (summed over folds)' if len(splits) > 1 else ''}: "
        f"{cold_users} users, {cold_items} products, {cold_rows} rows"
    )


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
