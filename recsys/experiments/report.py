"""The report of an experiment: attribution, per-variant metrics, guardrails and the verdict.

The report joins the lists an experiment served (exposures) with the events
that followed, counts per variant, compares each variant with control on the
primary metric, checks the sample ratio and the guardrails, and says whether
a variant won, with statistics that refuse to name a winner too early.
``report_text`` prints it for the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from recsys.experiments import abstats
from recsys.experiments.definitions import CONVERSION, Experiment, Variant

# Latency differences below this are noise of the clock and the scheduler,
# whatever the relative margin says.
LATENCY_TOLERANCE_MS = 1.0


@dataclass(frozen=True)
class Guardrails:
    """How much worse than control a variant may be on latency and errors."""

    latency_margin: float = 0.2
    error_margin: float = 0.01


LINKED_EVENT_COLUMNS = (
    "recommendation_id",
    "user_id",
    "product_id",
    "purchased",
    "created_at",
    "price",
)


def attribute(exposures: pd.DataFrame, events: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Return the linked events that count: a listed product, the same user, inside the window.

    Args:
        exposures: ``recommendation_id, variant, user_id, product_ids, served_at``
            (product ids space-separated, in the order shown), and
            ``explored_ids`` when known (those in exploration slots).
        events: ``recommendation_id, user_id, product_id, purchased, created_at, price``.
        window: How long after the list was served an event still counts.

    Returns:
        The counted events with the exposure's ``variant`` added, and
        ``explored``: whether the product was in an exploration slot.
    """
    columns = [*LINKED_EVENT_COLUMNS, "variant", "explored"]
    if events.empty or exposures.empty:
        return pd.DataFrame(columns=columns)
    shown = exposures[["recommendation_id", "variant", "user_id", "product_ids", "served_at"]]
    shown = shown.assign(explored_ids=_explored_ids(exposures))
    joined = events.merge(shown, on="recommendation_id", suffixes=("", "_shown"))
    listed = [
        str(product) in ids.split()
        for product, ids in zip(joined["product_id"], joined["product_ids"], strict=True)
    ]
    joined["explored"] = [
        str(product) in ids.split()
        for product, ids in zip(joined["product_id"], joined["explored_ids"], strict=True)
    ]
    delay = pd.to_datetime(joined["created_at"]) - pd.to_datetime(joined["served_at"])
    counted = (
        pd.Series(listed, index=joined.index, dtype=bool)
        & (joined["user_id"] == joined["user_id_shown"])
        & (delay >= pd.Timedelta(0))
        & (delay <= window)
    )
    return joined.loc[counted, columns].reset_index(drop=True)


def _explored_ids(exposures: pd.DataFrame) -> pd.Series:
    """Return each exposure's explored product ids as text ("" when none or not recorded)."""
    if "explored_ids" not in exposures.columns:
        return pd.Series("", index=exposures.index)
    return exposures["explored_ids"].fillna("").astype(str)


def experiment_report(
    experiment: Experiment,
    exposures: pd.DataFrame,
    linked_events: pd.DataFrame,
    user_purchases: pd.DataFrame,
    window: timedelta,
    guardrails: Guardrails | None = None,
) -> dict[str, Any]:
    """Return the report of an experiment from what it served and what followed.

    Args:
        experiment: The experiment.
        exposures: ``ExperimentStore.exposures_frame``.
        linked_events: ``ExperimentStore.linked_events_frame``.
        user_purchases: ``ExperimentStore.exposed_users_purchases``.
        window: The attribution window.
        guardrails: Latency and error margins against control.
    """
    guardrails = guardrails or Guardrails()
    counted = attribute(exposures, linked_events, window)
    first_exposure = exposures.groupby("user_id")["served_at"].min() if len(exposures) else None
    user_variant = exposures.groupby("user_id")["variant"].first() if len(exposures) else None
    rows = [
        _variant_row(
            variant,
            exposures[exposures["variant"] == variant.name],
            counted[counted["variant"] == variant.name],
            _user_level(variant.name, user_variant, user_purchases, first_exposure),
        )
        for variant in experiment.variants
    ]
    _compare(experiment, rows)
    srm = abstats.sample_ratio_check([r["users"] for r in rows], [r["weight"] for r in rows])
    failures = _guardrail_failures(rows, guardrails)
    status, verdict = _verdict(experiment, rows, srm, failures)
    return {
        "experiment": experiment.to_dict(),
        "attribution_window_hours": round(window.total_seconds() / 3600, 4),
        "variants": rows,
        "sample_ratio": _sample_ratio(srm),
        "guardrails": {
            "latency_margin": guardrails.latency_margin,
            "error_margin": guardrails.error_margin,
            "failures": failures,
        },
        "status": status,
        "verdict": verdict,
    }


def _variant_row(
    variant: Variant, shown: pd.DataFrame, mine: pd.DataFrame, level: dict[str, Any]
) -> dict[str, Any]:
    """Return one variant's row: its users, lists, clicks, purchases, revenue, latency, errors.

    Args:
        variant: The variant.
        shown: The variant's exposures.
        mine: The variant's counted events (``attribute``).
        level: The variant's user-level purchases (``_user_level``).
    """
    users = int(shown["user_id"].nunique())
    served = len(shown)
    ok = shown[~shown["failed"].astype(bool)]
    purchases = mine[mine["purchased"].astype(bool)]
    buyers = int(purchases["user_id"].nunique())
    clicked_lists = int(mine["recommendation_id"].nunique())
    prices = purchases["price"].dropna()
    revenue = float(prices.sum()) if len(prices) else None
    explored_slots = int(sum(len(ids.split()) for ids in _explored_ids(shown)))
    return {
        "variant": variant.name,
        "strategy": variant.strategy,
        **({"model": variant.model} if variant.model else {}),
        **({"version": variant.version} if variant.version else {}),
        "weight": variant.weight,
        "users": users,
        "exposures": served,
        "clicks": len(mine),
        "lists_clicked": clicked_lists,
        "click_through": abstats.wilson_interval(clicked_lists, served).to_dict(),
        "purchases": len(purchases),
        "buyers": buyers,
        "conversion": abstats.wilson_interval(buyers, users).to_dict(),
        "revenue": round(revenue, 2) if revenue is not None else None,
        "revenue_per_user": _revenue_per_user(purchases, shown) if revenue is not None else None,
        "latency_ms": {
            "p50": _quantile(ok["latency_ms"], 0.5),
            "p95": _quantile(ok["latency_ms"], 0.95),
        },
        "error_rate": round(float(shown["failed"].astype(bool).mean()), 6) if served else 0.0,
        # Exploration's share of the lists: slots given to new or rarely shown
        # products, and the counted clicks on them.
        "explored_slots": explored_slots,
        "explored_clicks": int(mine["explored"].astype(bool).sum()) if len(mine) else 0,
        "user_level": level,
    }


def _revenue_per_user(purchases: pd.DataFrame, shown: pd.DataFrame) -> dict[str, float | None]:
    """Return the mean revenue per exposed user, counting users who bought nothing as 0."""
    per_user = (
        purchases.groupby("user_id")["price"]
        .sum()
        .reindex(shown["user_id"].unique(), fill_value=0.0)
    )
    return _finite(abstats.mean_interval(per_user.tolist()).to_dict())


def _sample_ratio(srm: abstats.SampleRatioCheck) -> dict[str, Any]:
    """Return the sample ratio check's JSON shape."""
    return {
        "chi_square": round(srm.chi_square, 4),
        "p_value": round(srm.p_value, 6),
        "mismatch": srm.mismatch,
        "expected_users": [round(e, 1) for e in srm.expected],
    }


def _user_level(
    name: str,
    user_variant: pd.Series | None,
    purchases: pd.DataFrame,
    first_exposure: pd.Series | None,
) -> dict[str, Any]:
    """Purchases of the variant's users after their first exposure, linked to a list or not."""
    if user_variant is None or first_exposure is None:
        return {"users": 0, "buyers": 0, "purchases": 0, "conversion": None, "revenue": None}
    users = user_variant[user_variant == name].index
    mine = purchases[purchases["user_id"].isin(users)]
    buyers = int(mine["user_id"].nunique())
    prices = mine["price"].dropna()
    return {
        "users": len(users),
        "buyers": buyers,
        "purchases": len(mine),
        "conversion": abstats.wilson_interval(buyers, len(users)).to_dict(),
        "revenue": round(float(prices.sum()), 2) if len(prices) else None,
    }


def _primary(experiment: Experiment, row: Mapping[str, Any]) -> tuple[int, int]:
    if experiment.metric == CONVERSION:
        return row["buyers"], row["users"]
    return row["lists_clicked"], row["exposures"]


def _compare(experiment: Experiment, rows: list[dict[str, Any]]) -> None:
    control = rows[0]
    c_success, c_trials = _primary(experiment, control)
    control["vs_control"] = None
    for row in rows[1:]:
        success, trials = _primary(experiment, row)
        if trials == 0 or c_trials == 0:
            row["vs_control"] = None
            continue
        test = abstats.two_proportion_ztest(success, trials, c_success, c_trials)
        row["vs_control"] = {
            "metric": experiment.metric,
            "difference": test.interval.to_dict(),
            "relative": round(test.difference / (c_success / c_trials), 6) if c_success else None,
            "z": round(test.z, 4),
            "p_value": round(test.p_value, 6),
        }


def _guardrail_failures(rows: list[dict[str, Any]], guardrails: Guardrails) -> list[str]:
    control = rows[0]
    failures = []
    for row in rows[1:]:
        mine, theirs = row["latency_ms"]["p95"], control["latency_ms"]["p95"]
        if (
            mine is not None
            and theirs is not None
            and mine > theirs * (1 + guardrails.latency_margin)
            and mine - theirs > LATENCY_TOLERANCE_MS
        ):
            failures.append(
                f"{row['variant']}: p95 latency {mine:.1f} ms against control's {theirs:.1f} ms "
                f"(more than {guardrails.latency_margin:.0%} worse)"
            )
        if row["error_rate"] > control["error_rate"] + guardrails.error_margin:
            failures.append(
                f"{row['variant']}: error rate {row['error_rate']:.2%} against control's "
                f"{control['error_rate']:.2%}"
            )
    return failures


def _verdict(
    experiment: Experiment,
    rows: list[dict[str, Any]],
    srm: abstats.SampleRatioCheck,
    failures: list[str],
) -> tuple[str, str]:
    unit = "users" if experiment.metric == CONVERSION else "served lists"
    if srm.mismatch:
        split = ", ".join(f"{r['variant']} {r['users']}" for r in rows)
        return "sample_ratio_mismatch", (
            f"Do not trust this result: the users per variant ({split}) do not match the "
            f"weights (chi-square p = {srm.p_value:.2g}). Something assigns or logs users "
            "unevenly; fix it and restart the experiment."
        )
    smallest = min(_primary(experiment, r)[1] for r in rows)
    if smallest < experiment.planned_per_variant:
        return "collecting", (
            f"No verdict yet: the smallest variant has {smallest} of the "
            f"{experiment.planned_per_variant} {unit} planned per variant. Naming a winner "
            "before the planned sample size would inflate false positives; keep it running."
        )
    if failures:
        return "guardrail_failed", "A guardrail failed: " + "; ".join(failures) + "."
    # Several variants against one control: Bonferroni keeps the overall false-positive rate.
    alpha = abstats.ALPHA / (len(rows) - 1)
    significant = [
        r for r in rows[1:] if r["vs_control"] is not None and r["vs_control"]["p_value"] < alpha
    ]
    better = [r for r in significant if r["vs_control"]["difference"]["estimate"] > 0]
    metric = experiment.metric.replace("_", "-")
    if better:
        best = max(better, key=lambda r: r["vs_control"]["difference"]["estimate"])
        d = best["vs_control"]["difference"]
        return "winner", (
            f"{best['variant']} beats {rows[0]['variant']} on {metric}: "
            f"{d['estimate']:+.2%} (95% CI {d['low']:+.2%} to {d['high']:+.2%}), "
            f"{p_text(best['vs_control']['p_value'])}, at the planned sample size."
        )
    if significant:
        names = ", ".join(r["variant"] for r in significant)
        return "control_wins", (
            f"{rows[0]['variant']} (control) is better: {names} did significantly worse on "
            f"{metric}. Keep control."
        )
    return "no_difference", (
        f"No significant difference on {metric} at the planned sample size (alpha "
        f"{alpha:.3g}). Keep control, or plan a larger test for a smaller effect."
    )


def _quantile(values: pd.Series, q: float) -> float | None:
    return round(float(values.quantile(q)), 3) if len(values) else None


def _finite(interval: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if np.isfinite(v) else None) for k, v in interval.items()}


def report_text(report: Mapping[str, Any]) -> str:
    """Return a report as the plain text the command line prints."""
    experiment = report["experiment"]
    metric = experiment["metric"]
    lines = [
        f"Experiment {experiment['name']} ({experiment['status']}): primary metric {metric}, "
        f"planned {experiment['planned_per_variant']} {experiment['unit']} per variant "
        f"(MDE {experiment['mde']:+.2%} on {experiment['baseline_rate']:.2%})",
        "",
        f"{'variant':<12}{'strategy':<16}{'users':>7}{'lists':>8}{'clicks':>8}"
        f"{'CTR [95% CI]':>24}{'buyers':>8}{'conversion [95% CI]':>26}{'revenue':>10}"
        f"{'p50 ms':>8}{'p95 ms':>8}",
    ]
    for row in report["variants"]:
        strategy = row.get("version") or row.get("model") or row["strategy"]
        revenue = "-" if row["revenue"] is None else f"{row['revenue']:.2f}"
        latency = row["latency_ms"]
        lines.append(
            f"{row['variant']:<12}{strategy[:15]:<16}{row['users']:>7}{row['exposures']:>8}"
            f"{row['clicks']:>8}{_rate_text(row['click_through']):>24}{row['buyers']:>8}"
            f"{_rate_text(row['conversion']):>26}{revenue:>10}"
            f"{_ms(latency['p50']):>8}{_ms(latency['p95']):>8}"
        )
    lines.append("")
    for row in report["variants"][1:]:
        versus = row["vs_control"]
        if versus is None:
            continue
        d = versus["difference"]
        lines.append(
            f"{row['variant']} vs {report['variants'][0]['variant']} on {metric}: "
            f"{d['estimate']:+.2%} (95% CI {d['low']:+.2%} to {d['high']:+.2%}), "
            f"z = {versus['z']:.2f}, {p_text(versus['p_value'])}"
        )
    lines.append("User level (every purchase after a user's first exposure, linked or not):")
    for row in report["variants"]:
        level = row["user_level"]
        rate = "-" if level["conversion"] is None else _rate_text(level["conversion"])
        lines.append(
            f"  {row['variant']:<12}{level['buyers']:>6} of {level['users']:<6} users bought: "
            f"{rate}, {level['purchases']} purchases"
        )
    explored = [row for row in report["variants"] if row.get("explored_slots")]
    if explored:
        lines.append("Exploration (slots for new or rarely shown products):")
    for row in explored:
        lines.append(
            f"  {row['variant']:<12}{row['explored_slots']:>6} explored slots, "
            f"{row['explored_clicks']} clicks on them"
        )
    srm = report["sample_ratio"]
    lines.append(
        f"Sample ratio: chi-square {srm['chi_square']:.2f}, p = {srm['p_value']:.3g} "
        + ("-- MISMATCH" if srm["mismatch"] else "(as the weights say)")
    )
    failures = report["guardrails"]["failures"]
    lines.append("Guardrails: " + ("; ".join(failures) if failures else "all within margins"))
    lines.append(f"Verdict: {report['verdict']}")
    return "\n".join(lines)


def p_text(p_value: float) -> str:
    """Return a p-value as people read it: "p = 0.012", or "p < 0.0001" for tiny ones."""
    return "p < 0.0001" if p_value < 1e-4 else f"p = {p_value:.2g}"


def _rate_text(interval: Mapping[str, float]) -> str:
    return f"{interval['estimate']:.2%} [{interval['low']:.1%}, {interval['high']:.1%}]"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
