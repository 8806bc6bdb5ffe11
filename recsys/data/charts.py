"""EDA charts as PNG bytes, and the EDA report folder (charts, report.html, summary.json).

Drawn with matplotlib's object API on the Agg canvas: no pyplot, so no global
figure state, no display and no GUI backend; each call owns its figure, which
keeps drawing safe in the threads of a web server. Every chart reads the EDA
tables of ``recsys.data.eda``, so the pictures, the text report, the
summary and ``GET /stats`` tell one story.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from recsys.data.eda import (
    clicks_per_user_counts,
    conversion_by_product,
    eda_summary,
    popularity_curve,
    user_category_affinity,
)

# Products shown by the per-product charts (most clicked first).
TOP_PRODUCTS = 20
# Users shown by the heatmap: the most active, so its rows stay readable.
HEATMAP_USERS = 40
# Categories shown by the heatmap: the most clicked.
HEATMAP_CATEGORIES = 20
# Longer product names are cut to this many characters on an axis.
LABEL_CHARACTERS = 32
DPI = 100
COLOR = "#3b6ea5"
ACCENT = "#e07b39"

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class ChartSpec:
    """One chart of the report: its file stem, its title and what it shows."""

    name: str
    title: str
    caption: str


CHARTS = (
    ChartSpec(
        "most_clicked",
        "Most-clicked products",
        f"Clicks and purchases of the {TOP_PRODUCTS} most clicked products.",
    ),
    ChartSpec(
        "conversion",
        "Conversion per product",
        f"Share of clicks that became a purchase, for the {TOP_PRODUCTS} most clicked "
        "products; the dashed line is the overall conversion.",
    ),
    ChartSpec(
        "clicks_per_user",
        "Clicks per user",
        "How many users made how many clicks.",
    ),
    ChartSpec(
        "long_tail",
        "Long tail of product popularity",
        "Clicks by product rank (bars) and the cumulative share of all clicks (line).",
    ),
    ChartSpec(
        "category_affinity",
        "User x category affinity",
        f"Share of each user's clicks per category, for the {HEATMAP_USERS} most active "
        "users (rows grouped by their favourite category).",
    ),
)
CHART_NAMES = tuple(spec.name for spec in CHARTS)


def chart_names(catalog: pd.DataFrame | None) -> tuple[str, ...]:
    """Return the charts a log with this catalog gets: the heatmap needs categories."""
    has_categories = catalog is not None and bool(catalog["category"].notna().any())
    return tuple(n for n in CHART_NAMES if has_categories or n != "category_affinity")


def render_chart(name: str, interactions: pd.DataFrame, catalog: pd.DataFrame | None) -> bytes:
    """Draw one chart of a non-empty log as PNG bytes.

    Args:
        name: One of ``CHART_NAMES``.
        interactions: ``user_id, product_clicked, purchased``, one row per click.
        catalog: ``product_id, name, category``, or None (products by id).

    Raises:
        KeyError: ``name`` is not a chart.
        ValueError: The log is empty, or the heatmap was asked for without categories.
    """
    if interactions.empty:
        raise ValueError("no interactions: nothing to draw")
    draw = _DRAWERS[name]
    figure = Figure(figsize=(8, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure, interactions, catalog)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render_charts(interactions: pd.DataFrame, catalog: pd.DataFrame | None) -> dict[str, bytes]:
    """Draw every chart the log has data for, in ``CHARTS`` order."""
    return {name: render_chart(name, interactions, catalog) for name in chart_names(catalog)}


def write_eda_report(
    out_dir: str | Path,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None = None,
    source: str = "",
    note: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the charts (PNG), ``summary.json`` and ``report.html`` into a folder.

    Args:
        out_dir: The folder (created if missing; files of the same names are replaced).
        interactions: A non-empty click log.
        catalog: Its catalog, or None.
        source: What the log is (shown in the report).
        note: How the log was read, if it needs saying (MovieLens ratings).
        progress: Show a progress bar over the charts on stderr (when it is a terminal).

    Returns:
        The summary written to ``summary.json`` (``eda_summary``'s result).

    Raises:
        ValueError: The log is empty.
    """
    if interactions.empty:
        raise ValueError("no interactions: nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = chart_names(catalog)
    for name in _with_progress(names, progress):
        (out / f"{name}.png").write_bytes(render_chart(name, interactions, catalog))
    summary = eda_summary(interactions, catalog)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    charts = [(spec, f"{spec.name}.png") for spec in CHARTS if spec.name in names]
    html = _REPORT.render(summary=summary, charts=charts, source=source, note=note)
    (out / REPORT_FILE).write_text(html, encoding="utf-8")
    return summary


# -- the charts --------------------------------------------------------------------------------


def _labels(product_ids: pd.Series, catalog: pd.DataFrame | None) -> list[str]:
    names = (
        {} if catalog is None else dict(zip(catalog["product_id"], catalog["name"], strict=True))
    )
    labels = []
    for product_id in product_ids:
        name = names.get(product_id)
        text = f"#{product_id}" if not isinstance(name, str) or not name else name
        if len(text) > LABEL_CHARACTERS:
            text = text[: LABEL_CHARACTERS - 1] + "…"
        labels.append(text)
    return labels


def _draw_most_clicked(figure: Figure, interactions: pd.DataFrame, catalog) -> None:
    top = conversion_by_product(interactions).head(TOP_PRODUCTS).iloc[::-1]
    axes = figure.add_subplot()
    positions = np.arange(len(top))
    axes.barh(positions, top["clicks"], color=COLOR, label="clicks")
    axes.barh(positions, top["purchases"], color=ACCENT, label="purchases")
    axes.set_yticks(positions, _labels(top["product_id"], catalog), fontsize=8)
    axes.set_xlabel("events")
    axes.set_title("Most-clicked products")
    axes.legend(loc="lower right")


def _draw_conversion(figure: Figure, interactions: pd.DataFrame, catalog) -> None:
    top = conversion_by_product(interactions).head(TOP_PRODUCTS).iloc[::-1]
    axes = figure.add_subplot()
    positions = np.arange(len(top))
    axes.barh(positions, top["conversion"], color=COLOR)
    overall = float(interactions["purchased"].mean())
    axes.axvline(overall, color=ACCENT, linestyle="--", label=f"overall {overall:.1%}")
    axes.set_yticks(positions, _labels(top["product_id"], catalog), fontsize=8)
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_xlabel("purchases per click")
    axes.set_title("Conversion per product (most clicked)")
    axes.legend(loc="lower right")


def _draw_clicks_per_user(figure: Figure, interactions: pd.DataFrame, catalog) -> None:
    counts = clicks_per_user_counts(interactions)
    axes = figure.add_subplot()
    bins = min(40, max(5, int(counts.nunique())))
    axes.hist(counts, bins=bins, color=COLOR, edgecolor="white")
    axes.axvline(counts.median(), color=ACCENT, linestyle="--", label=f"median {counts.median():g}")
    axes.set_xlabel("clicks by one user")
    axes.set_ylabel("users")
    axes.set_title(f"Clicks per user ({len(counts)} users)")
    axes.legend()


def _draw_long_tail(figure: Figure, interactions: pd.DataFrame, catalog) -> None:
    curve = popularity_curve(interactions)
    axes = figure.add_subplot()
    axes.bar(curve["rank"], curve["clicks"], width=1.0, color=COLOR, label="clicks")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("product rank (most clicked first)")
    axes.set_ylabel("clicks")
    if len(curve) > 100:
        axes.set_yscale("log")
    share = axes.twinx()
    share.plot(curve["rank"], curve["click_share"], color=ACCENT, label="cumulative share")
    share.set_ylim(0, 1.02)
    share.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    share.set_ylabel("share of all clicks")
    axes.set_title(f"Long tail: {len(curve)} clicked products")


def _draw_category_affinity(figure: Figure, interactions: pd.DataFrame, catalog) -> None:
    if catalog is None:
        raise ValueError("the affinity heatmap needs a catalog with categories")
    affinity = user_category_affinity(interactions, catalog)
    if affinity.empty:
        raise ValueError("the affinity heatmap needs a catalog with categories")
    active = clicks_per_user_counts(interactions).loc[affinity.index]
    users = active.sort_values(ascending=False, kind="stable").index[:HEATMAP_USERS]
    categories = affinity.mean().sort_values(ascending=False).index[:HEATMAP_CATEGORIES]
    shown = affinity.loc[users, categories]
    # Group rows by favourite category, strongest first, so the blocks are visible.
    favourite = shown.to_numpy().argmax(axis=1)
    strength = shown.to_numpy().max(axis=1)
    order = np.lexsort((-strength, favourite))
    shown = shown.iloc[order]
    axes = figure.add_subplot()
    image = axes.imshow(shown.to_numpy(), aspect="auto", cmap="Blues", vmin=0)
    axes.set_xticks(np.arange(len(categories)), [str(c) for c in categories], rotation=45)
    axes.set_yticks(np.arange(len(shown)), [str(u) for u in shown.index], fontsize=6)
    axes.set_xlabel("category")
    axes.set_ylabel("user")
    axes.set_title("Share of each user's clicks per category")
    figure.colorbar(image, ax=axes, label="share of the user's clicks")


_DRAWERS: dict[str, Callable[[Figure, pd.DataFrame, pd.DataFrame | None], None]] = {
    "most_clicked": _draw_most_clicked,
    "conversion": _draw_conversion,
    "clicks_per_user": _draw_clicks_per_user,
    "long_tail": _draw_long_tail,
    "category_affinity": _draw_category_affinity,
}


def _with_progress(names: tuple[str, ...], progress: bool):
    if not progress:
        return names
    from tqdm import tqdm  # only the command line shows progress

    # disable=None: no bar when stderr is not a terminal.
    return tqdm(names, desc="drawing", unit="chart", disable=None)


_REPORT = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EDA report{% if source %}: {{ source }}{% endif %}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { padding: .25rem .75rem; border-bottom: 1px solid #ddd; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 2rem 0; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; }
</style>
</head>
<body>
<h1>EDA report</h1>
{% if source %}<p>Data: <code>{{ source }}</code></p>{% endif %}
{% if note %}<p class="note">{{ note }}</p>{% endif %}
<h2>Key numbers</h2>
<table>
<tr><th>interactions (clicks)</th><td class="number">{{ summary.interactions }}</td></tr>
<tr><th>users</th><td class="number">{{ summary.users }}</td></tr>
<tr><th>products clicked</th><td class="number">{{ summary.products }}</td></tr>
{% if summary.catalog_products is not none %}
<tr><th>products in the catalog</th><td class="number">{{ summary.catalog_products }}</td></tr>
{% endif %}
<tr><th>purchases</th><td class="number">{{ summary.purchases }}</td></tr>
<tr><th>conversion</th><td class="number">{{ "%.1f%%"|format(summary.conversion * 100) }}</td></tr>
<tr><th>clicks per user (median, mean, max)</th>
<td class="number">{{ summary.clicks_per_user["50%"]|round(1) }},
{{ summary.clicks_per_user["mean"]|round(1) }},
{{ summary.clicks_per_user["max"]|round(1) }}</td></tr>
<tr><th>clicks on the top {{ "%.0f%%"|format(summary.long_tail.head_catalog_share * 100) }}
of products</th>
<td class="number">{{ "%.1f%%"|format(summary.long_tail.head_click_share * 100) }}</td></tr>
<tr><th>products with {{ "%.0f%%"|format(summary.long_tail.click_share * 100) }} of clicks</th>
<td class="number">{{ summary.long_tail.products_for_click_share }}
({{ "%.1f%%"|format(summary.long_tail.catalog_share_for_click_share * 100) }})</td></tr>
</table>
<h2>Most-clicked products</h2>
<table>
<tr><th>product</th><th>name</th><th>category</th><th>clicks</th><th>purchases</th>
<th>conversion</th></tr>
{% for p in summary.most_clicked %}
<tr><td class="number">{{ p.product_id }}</td><td>{{ p.name or "-" }}</td>
<td>{{ p.category or "-" }}</td><td class="number">{{ p.clicks }}</td>
<td class="number">{{ p.purchases }}</td>
<td class="number">{{ "%.1f%%"|format(p.conversion * 100) }}</td></tr>
{% endfor %}
</table>
{% for spec, file in charts %}
<figure>
<img src="{{ file }}" alt="{{ spec.title }}">
<figcaption><strong>{{ spec.title }}.</strong> {{ spec.caption }}</figcaption>
</figure>
{% endfor %}
{% if not summary.categories %}
<p class="note">No catalog names the products' categories, so there is no user x category
heatmap (put NAME.products.csv beside NAME.csv or pass --catalog PATH).</p>
{% endif %}
</body>
</html>
"""
)
