"""Exploratory analysis of an interaction log: tables, and a printable report.

Product names and categories come from the log's own catalog (see
``recsys.data.catalog``); without one, products are shown by id and the
category tables are left out, never filled with invented names.
"""

from __future__ import annotations

import pandas as pd

# Shown for a product the catalog does not name.
UNNAMED = "-"


def clicks_by_product(interactions: pd.DataFrame) -> pd.DataFrame:
    """Rank the products of a click log, most clicked first, ties by product id.

    The one ranking of "most-clicked products" in the project: the EDA tables
    and the pipeline's top 5 use it, and the popularity model agrees with it
    (a test checks).

    Args:
        interactions: ``user_id, product_clicked, purchased``, one row per click.

    Returns:
        ``product_id, clicks, purchases``, one row per clicked product.
    """
    per_product = (
        interactions.groupby("product_clicked")["purchased"]
        .agg(clicks="size", purchases="sum")
        .rename_axis("product_id")
        .reset_index()
    )
    ranked = per_product.sort_values(
        ["clicks", "product_id"], ascending=[False, True], kind="stable"
    )
    return ranked.reset_index(drop=True)


def conversion_by_product(
    interactions: pd.DataFrame, catalog: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return clicks, purchases and purchase conversion per product, most clicked first.

    Args:
        interactions: The click log.
        catalog: ``product_id, name, category`` (None: no names).

    Returns:
        ``product_id, [name, category,] clicks, purchases, conversion``; with a
        catalog, products it lacks have ``UNNAMED`` as name and category.
    """
    per_product = clicks_by_product(interactions)
    per_product["conversion"] = per_product["purchases"] / per_product["clicks"]
    if catalog is None:
        return per_product
    named = per_product.merge(
        catalog[["product_id", "name", "category"]], on="product_id", how="left"
    )
    named[["name", "category"]] = named[["name", "category"]].fillna(UNNAMED)
    return named[["product_id", "name", "category", "clicks", "purchases", "conversion"]]


def overall_conversion(interactions: pd.DataFrame) -> float:
    """Return the share of clicks that ended in a purchase."""
    if interactions.empty:
        raise ValueError("no interactions: conversion is undefined")
    return float(interactions["purchased"].mean())


def clicks_per_user(interactions: pd.DataFrame) -> pd.Series:
    """Return summary statistics of the number of clicks per user."""
    return interactions.groupby("user_id").size().describe()


def user_category_affinity(interactions: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Return each user's share of clicks per category (rows sum to 1).

    Clicks on products without a category in the catalog are left out.
    """
    with_category = interactions.merge(
        catalog[["product_id", "category"]].dropna(),
        left_on="product_clicked",
        right_on="product_id",
    )
    counts = pd.crosstab(with_category["user_id"], with_category["category"])
    return counts.div(counts.sum(axis=1), axis=0)


def top_category_per_user(affinity: pd.DataFrame) -> pd.DataFrame:
    """Return each user's most-clicked category and its share of their clicks."""
    return pd.DataFrame(
        {"top_category": affinity.idxmax(axis=1), "share": affinity.max(axis=1)}
    ).reset_index()


def eda_report(interactions: pd.DataFrame, catalog: pd.DataFrame | None = None) -> str:
    """Return a readable text report of the log's main patterns.

    Args:
        interactions: The click log.
        catalog: The log's catalog (``product_id, name, category``), or None
            when it has none: products are then shown by id and the category
            tables are left out.
    """
    per_product = conversion_by_product(interactions, catalog)
    decimals = {"float_format": lambda x: f"{x:.2f}"}
    parts = [
        f"Interactions: {len(interactions)} clicks by {interactions['user_id'].nunique()} users "
        f"on {interactions['product_clicked'].nunique()} products",
        f"Purchase conversion overall: {overall_conversion(interactions):.1%}",
        "",
        "Most-clicked products:",
        per_product.head(10).to_string(index=False, **decimals),
        "",
        "Conversion per product (lowest first):",
        per_product.sort_values(["conversion", "product_id"])
        .head(5)
        .to_string(index=False, **decimals),
        "",
        "Clicks per user:",
        clicks_per_user(interactions).to_string(float_format=lambda x: f"{x:.1f}"),
        "",
    ]
    affinity = user_category_affinity(interactions, catalog) if catalog is not None else None
    if affinity is None or affinity.empty:
        parts.append(
            "Categories: no catalog names the products' categories, so products are shown "
            "by id (put products.csv beside the log or pass --catalog PATH)."
        )
        return "\n".join(parts)
    top_category = top_category_per_user(affinity)
    parts += [
        "Users by their top category (share of their clicks in it):",
        top_category.groupby("top_category")["share"]
        .agg(users="size", mean_share="mean")
        .to_string(**decimals),
        "",
        "Mean user x category affinity (share of clicks):",
        affinity.mean().to_string(**decimals),
    ]
    return "\n".join(parts)
