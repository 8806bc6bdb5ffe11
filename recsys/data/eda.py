"""Exploratory analysis of an interaction log: tables, figures, and a printable report.

``eda_summary`` gathers the key figures as JSON (the EDA report's
``summary.json`` and ``GET /stats``); ``recsys.data.charts`` draws them.
MovieLens ratings are read as interactions by ``load_eda_log``.

Product names and categories come from the log's own catalog (see
``recsys.data.catalog``); without one, products are shown by id and the
category tables are left out, never filled with invented names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.catalog import catalog_beside, load_catalog
from recsys.data.interactions import (
    EVENT_TYPES,
    csv_header,
    event_codes,
    load_interactions,
    read_csv_cells,
    read_data_file,
)
from recsys.data.loaders import DEFAULT_RELEVANCE_THRESHOLD, detect_format, load_dataset
from recsys.errors import DataFileError, quote

# MovieLens's film list beside its ratings, and the genre it gives a film with none.
MOVIELENS_MOVIES_FILE = "movies.csv"
MOVIELENS_MOVIES_HEADER = ("movieId", "title", "genres")
MOVIELENS_NO_GENRE = "(no genres listed)"
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


def events_by_type(interactions: pd.DataFrame) -> dict[str, int]:
    """Return how many events of each type the log holds (every type, in ``EVENT_TYPES`` order).

    A log without a ``type`` column holds clicks and purchases, as ``purchased`` says.
    """
    counts = np.bincount(event_codes(interactions), minlength=len(EVENT_TYPES))
    return {name: int(count) for name, count in zip(EVENT_TYPES, counts, strict=True)}


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
        "Events by type: "
        + ", ".join(f"{name} {count}" for name, count in events_by_type(interactions).items()),
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
            "by id (put NAME.products.csv beside NAME.csv or pass --catalog PATH)."
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


# -- figures for charts and summaries -----------------------------------------------------------

# The long tail is read at these shares of the catalog, most clicked first.
HEAD_SHARE = 0.2
# ... and this share of clicks: how few products gather it.
CLICK_SHARE = 0.8
# Products listed by name in a summary (the charts show as many).
SUMMARY_TOP_PRODUCTS = 10
# Floats in a summary are rounded to this many decimals (JSON stays readable).
SUMMARY_DECIMALS = 6


def clicks_per_user_counts(interactions: pd.DataFrame) -> pd.Series:
    """Return each user's number of clicks, indexed by user id."""
    return interactions.groupby("user_id").size().rename("clicks")


def popularity_curve(interactions: pd.DataFrame) -> pd.DataFrame:
    """Return the long-tail curve: products by clicks, with the cumulative share of clicks.

    Returns:
        ``rank`` (1 = most clicked), ``product_id``, ``clicks``,
        ``catalog_share`` (rank / products) and ``click_share`` (the share of
        all clicks that the products up to this rank received), one row per
        clicked product in ``clicks_by_product`` order.
    """
    ranked = clicks_by_product(interactions)[["product_id", "clicks"]]
    total = ranked["clicks"].sum()
    rank = pd.RangeIndex(1, len(ranked) + 1)
    return pd.DataFrame(
        {
            "rank": rank.to_numpy(),
            "product_id": ranked["product_id"].to_numpy(),
            "clicks": ranked["clicks"].to_numpy(),
            "catalog_share": rank.to_numpy() / max(len(ranked), 1),
            "click_share": ranked["clicks"].cumsum().to_numpy() / max(total, 1),
        }
    )


def long_tail_summary(interactions: pd.DataFrame) -> dict[str, float | int]:
    """Return how concentrated clicks are on few products.

    Returns:
        ``head_click_share``: the share of clicks on the most clicked
        ``HEAD_SHARE`` of the clicked products (at least one product);
        ``products_for_click_share``: how many products, most clicked first,
        gather ``CLICK_SHARE`` of all clicks; ``catalog_share_for_click_share``:
        that count as a share of the clicked products.
    """
    curve = popularity_curve(interactions)
    if curve.empty:
        raise ValueError("no interactions: the long tail is undefined")
    head = max(1, round(len(curve) * HEAD_SHARE))
    # The first rank whose cumulative share reaches CLICK_SHARE (a tiny
    # tolerance keeps 0.8 from being missed by floating-point sums).
    needed = int((curve["click_share"] < CLICK_SHARE - 1e-12).sum()) + 1
    return {
        "head_catalog_share": HEAD_SHARE,
        "head_products": head,
        "head_click_share": float(curve["click_share"].iloc[head - 1]),
        "click_share": CLICK_SHARE,
        "products_for_click_share": needed,
        "catalog_share_for_click_share": needed / len(curve),
    }


def eda_summary(interactions: pd.DataFrame, catalog: pd.DataFrame | None = None) -> dict[str, Any]:
    """Return the log's key figures as JSON-able values: what the report and /stats show.

    Every figure comes from the functions above (conversion, clicks per user,
    the most clicked products, the long tail, category affinity); floats are
    rounded to ``SUMMARY_DECIMALS``. An empty log gives zero counts and None
    for what is undefined on it.

    Args:
        interactions: ``user_id, product_clicked, purchased``, one row per click.
        catalog: ``product_id, name, category`` (None: products by id, no
            category figures).
    """
    if interactions.empty:
        return {
            "interactions": 0,
            "users": 0,
            "products": 0,
            "catalog_products": None if catalog is None else len(catalog),
            "purchases": 0,
            "events_by_type": dict.fromkeys(EVENT_TYPES, 0),
            "conversion": None,
            "clicks_per_user": None,
            "most_clicked": [],
            "long_tail": None,
            "categories": None,
        }
    per_product = conversion_by_product(interactions, catalog)
    described = clicks_per_user(interactions)
    return {
        "interactions": len(interactions),
        "users": int(interactions["user_id"].nunique()),
        "products": int(interactions["product_clicked"].nunique()),
        "catalog_products": None if catalog is None else len(catalog),
        "purchases": int(interactions["purchased"].sum()),
        "events_by_type": events_by_type(interactions),
        "conversion": _rounded(overall_conversion(interactions)),
        "clicks_per_user": {str(name): _rounded(value) for name, value in described.items()},
        "most_clicked": [
            {
                key: _rounded(value) if isinstance(value, float) else _plain(value)
                for key, value in row.items()
            }
            for row in per_product.head(SUMMARY_TOP_PRODUCTS).to_dict(orient="records")
        ],
        "long_tail": {
            key: _rounded(value) if isinstance(value, float) else value
            for key, value in long_tail_summary(interactions).items()
        },
        "categories": _category_summary(interactions, catalog),
    }


def _category_summary(
    interactions: pd.DataFrame, catalog: pd.DataFrame | None
) -> dict[str, Any] | None:
    affinity = user_category_affinity(interactions, catalog) if catalog is not None else None
    if affinity is None or affinity.empty:
        return None
    top = top_category_per_user(affinity)
    return {
        "mean_affinity": {str(k): _rounded(v) for k, v in affinity.mean().items()},
        "users_by_top_category": {
            str(k): int(v) for k, v in top["top_category"].value_counts().sort_index().items()
        },
    }


def _rounded(value: Any) -> float:
    return round(float(value), SUMMARY_DECIMALS)


def _plain(value: Any) -> Any:
    """Return numpy scalars as Python ones (JSON-able); other values unchanged."""
    return value.item() if hasattr(value, "item") else value


def ratings_as_interactions(
    feedback: pd.DataFrame, liked_threshold: float = DEFAULT_RELEVANCE_THRESHOLD
) -> pd.DataFrame:
    """Read explicit ratings (MovieLens) as a click log: each rating one click.

    A rating of at least ``liked_threshold`` (the threshold that makes a held-out
    item relevant in the ranking metrics) counts as the click's "purchase", so
    conversion reads as the share of ratings that liked the film.

    Args:
        feedback: A ``Dataset.feedback`` frame (``user_id, product_id, rating``).
        liked_threshold: The lowest rating that counts as liked.

    Returns:
        ``user_id, product_clicked, purchased`` (int64), one row per rating.
    """
    return pd.DataFrame(
        {
            "user_id": feedback["user_id"].to_numpy(dtype="int64"),
            "product_clicked": feedback["product_id"].to_numpy(dtype="int64"),
            "purchased": (feedback["rating"] >= liked_threshold).to_numpy(dtype="int64"),
        }
    )


def load_eda_log(
    path: str | Path, catalog_path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None, str | None]:
    """Read an interactions CSV, or MovieLens ratings as interactions, with its catalog.

    Args:
        path: An interactions CSV, MovieLens ``ratings.csv`` or ``u.data``
            (told apart by the first line, as ``recsys.data.loaders`` does).
        catalog_path: A catalog CSV (``product_id,name,category,price``); by
            default ``products.csv`` beside an interactions file, and
            MovieLens's ``movies.csv`` beside ratings (a film's category is its
            first genre).

    Returns:
        The click log, its catalog (None when there is none) and a note on
        how ratings were read (None for an interactions file).

    Raises:
        DataFileError: A file is unreadable or breaks its format.
    """
    path = Path(path)
    first_line = read_data_file(path).partition("\n")[0]
    if detect_format(path, first_line) == "interactions":
        catalog_path = catalog_path or catalog_beside(path)
        catalog = load_catalog(catalog_path) if catalog_path else None
        return load_interactions(path), catalog, None
    dataset = load_dataset(path, "movielens")
    note = (
        f"{dataset.name}: ratings read as interactions, one click per rating; a rating of "
        f"{DEFAULT_RELEVANCE_THRESHOLD:g} or more counts as a purchase (liked)"
    )
    if catalog_path is not None:
        catalog = load_catalog(catalog_path)
    else:
        movies = path.with_name(MOVIELENS_MOVIES_FILE)
        catalog = load_movielens_catalog(movies) if movies.is_file() else None
    return ratings_as_interactions(dataset.feedback), catalog, note


def load_movielens_catalog(path: str | Path) -> pd.DataFrame:
    """Read MovieLens's ``movies.csv`` as a catalog: title as name, first genre as category.

    Raises:
        DataFileError: The header is not ``movieId,title,genres``.
    """
    movies, ids = _read_movielens_movies(path)
    genre = movies["genres"].str.split("|").str[0]
    return pd.DataFrame(
        {
            "product_id": ids,
            "name": movies["title"],
            "category": genre.where(genre != MOVIELENS_NO_GENRE),
        }
    )


def _read_movielens_movies(path: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """Read and check ``movies.csv``: its cells, and the ids as integers.

    Raises:
        DataFileError: The header or an id is wrong.
    """
    path = Path(path)
    text = read_data_file(path)
    header = csv_header(text)
    if header != list(MOVIELENS_MOVIES_HEADER):
        raise DataFileError(
            path,
            f"expected the header {','.join(MOVIELENS_MOVIES_HEADER)}, got "
            f"{quote(','.join(header))}",
            line=1,
        )
    movies = read_csv_cells(path, text)
    ids = pd.to_numeric(movies["movieId"], errors="coerce")
    bad = ids.isna() | (ids < 1) | (ids != ids.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataFileError(
            path,
            f"movieId must be a positive integer, got {quote(movies['movieId'].iloc[row])}",
            line=row + 2,  # line 1 is the header
        )
    return movies, ids.astype("int64")


def load_movielens_genres(path: str | Path) -> dict[int, frozenset[str]]:
    """Read every genre of each film from MovieLens's ``movies.csv`` (none for "no genres").

    Raises:
        DataFileError: The header or an id is wrong.
    """
    movies, ids = _read_movielens_movies(path)
    return {
        int(product_id): frozenset(g for g in genres.split("|") if g != MOVIELENS_NO_GENRE)
        for product_id, genres in zip(ids, movies["genres"], strict=True)
    }
