"""Exploratory analysis of an interaction log: tables, and a printable report."""

from __future__ import annotations

import pandas as pd


def most_clicked(interactions: pd.DataFrame, catalog: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Return the n most-clicked products with names, ties by product id.

    Returns:
        ``product_id, name, category, clicks, purchases, conversion``.
    """
    return conversion_by_product(interactions, catalog).head(n).reset_index(drop=True)


def conversion_by_product(interactions: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Return clicks, purchases and purchase conversion per product, most clicked first."""
    per_product = (
        interactions.groupby("product_clicked")["purchased"]
        .agg(clicks="size", purchases="sum")
        .rename_axis("product_id")
        .reset_index()
    )
    per_product["conversion"] = per_product["purchases"] / per_product["clicks"]
    named = per_product.merge(
        catalog[["product_id", "name", "category"]], on="product_id", how="left"
    )
    named = named.sort_values(["clicks", "product_id"], ascending=[False, True], kind="stable")
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
    """Return each user's share of clicks per category (rows sum to 1)."""
    with_category = interactions.merge(
        catalog[["product_id", "category"]], left_on="product_clicked", right_on="product_id"
    )
    counts = pd.crosstab(with_category["user_id"], with_category["category"])
    return counts.div(counts.sum(axis=1), axis=0)


def top_category_per_user(affinity: pd.DataFrame) -> pd.DataFrame:
    """Return each user's most-clicked category and its share of their clicks."""
    return pd.DataFrame(
        {"top_category": affinity.idxmax(axis=1), "share": affinity.max(axis=1)}
    ).reset_index()


def eda_report(interactions: pd.DataFrame, catalog: pd.DataFrame) -> str:
    """Return a readable text report of the log's main patterns."""
    affinity = user_category_affinity(interactions, catalog)
    top_category = top_category_per_user(affinity)
    per_product = conversion_by_product(interactions, catalog)
    parts = [
        f"Interactions: {len(interactions)} clicks by {interactions['user_id'].nunique()} users "
        f"on {interactions['product_clicked'].nunique()} products",
        f"Purchase conversion overall: {overall_conversion(interactions):.1%}",
        "",
        "Most-clicked products:",
        per_product.head(10).to_string(index=False, float_format=lambda x: f"{x:.2f}"),
        "",
        "Conversion per product (lowest first):",
        per_product.sort_values(["conversion", "product_id"])
        .head(5)
        .to_string(index=False, float_format=lambda x: f"{x:.2f}"),
        "",
        "Clicks per user:",
        clicks_per_user(interactions).to_string(float_format=lambda x: f"{x:.1f}"),
        "",
        "Users by their top category (share of their clicks in it):",
        top_category.groupby("top_category")["share"]
        .agg(users="size", mean_share="mean")
        .to_string(float_format=lambda x: f"{x:.2f}"),
        "",
        "Mean user x category affinity (share of clicks):",
        affinity.mean().to_string(float_format=lambda x: f"{x:.2f}"),
    ]
    return "\n".join(parts)
