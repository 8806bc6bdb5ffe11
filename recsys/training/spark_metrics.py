"""The holdout's ranking metrics computed by Spark's executors, with the local ranking code.

Each validation user's row (factors, training products, relevant held-out
products) goes to an executor, which ranks the user's top k with
``ALSRecommender.recommend`` (training products excluded, products the
holdout model never saw not allowed: as ``score_split`` ranks them) and
scores the lists with the metric functions of ``recsys.evaluation``. The
driver receives one row of sums per batch. The item factors travel to the
executors as a broadcast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.evaluate import RANKING_METRICS
from recsys.models.als import ALSRecommender


def spark_ranking_metrics(
    train: Any,
    test: Any,
    user_factors: Any,
    item_factors: np.ndarray,
    item_known: np.ndarray,
    k: int,
    threshold: float,
    max_users: int | None,
    seed: int,
) -> dict[str, float | int]:
    """Return ``score_split``'s ranking metrics of an ALS fit, computed in Spark.

    Args:
        train: The fit's rows (``user``, ``item`` inner indices).
        test: The held-out rows (``user``, ``item``, ``rating``).
        user_factors: Spark's ``userFactors`` of the fit (``id``, ``features``).
        item_factors: Dense (n_items, k) item factors of the fit.
        item_known: Which items the fit learned (the others are never ranked).
        k: The cut-off.
        threshold: A held-out rating at least this is relevant.
        max_users: Rank a seeded sample of at most this many test users (None: all).
        seed: The sample's seed.

    Returns:
        ``precision@k`` ... ``hit_rate@k`` (4 decimals) and ``ranked_users``;
        with a sample, ``eval_users_limit``; empty when no user has a relevant item.
    """
    from pyspark.sql import functions as sf

    users = test.select("user").distinct()
    if max_users is not None:
        users = users.orderBy(sf.xxhash64(sf.lit(seed), "user"), "user").limit(max_users)
    relevant = (
        test.where(sf.col("rating") >= threshold)
        .join(users, "user")
        .groupBy("user")
        .agg(sf.collect_list("item").alias("relevant"))
    )
    seen = (
        train.join(relevant.select("user"), "user")
        .groupBy("user")
        .agg(sf.collect_list("item").alias("seen"))
    )
    rows = relevant.join(seen, "user", "left").join(
        user_factors.withColumnRenamed("id", "user"), "user"
    )
    spark = train.sparkSession
    shared = spark.sparkContext.broadcast((item_factors, item_known))
    names = list(RANKING_METRICS)
    schema = "users long, " + ", ".join(f"{name} double" for name in names)

    def batch_sums(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        factors, known = shared.value
        for batch in batches:
            if len(batch):
                yield pd.DataFrame([_metric_sums(batch, factors, known, k)])

    totals = (
        rows.mapInPandas(batch_sums, schema)
        .agg(*(sf.sum(c).alias(c) for c in ["users", *names]))
        .first()
    )
    shared.unpersist()
    ranked = int(totals["users"] or 0)
    if ranked == 0:
        return {}
    metrics: dict[str, float | int] = {
        f"{name}@{k}": round(float(totals[name]) / ranked, 4) for name in names
    }
    metrics["ranked_users"] = ranked
    if max_users is not None:
        metrics["eval_users_limit"] = max_users
    return metrics


def _metric_sums(
    batch: pd.DataFrame, item_factors: np.ndarray, item_known: np.ndarray, k: int
) -> dict[str, float | int]:
    """Rank one batch of users and return its number of users and each metric's sum."""
    order = np.argsort(batch["user"].to_numpy())
    batch = batch.iloc[order]
    model = ALSRecommender()
    # Inner indices stand in for ids: the ranking's tie order (ascending id) is the same.
    model.product_ids = np.arange(len(item_factors), dtype=np.int64)
    model.item_factors = item_factors
    model.user_ids = batch["user"].to_numpy(dtype=np.int64)
    model.user_factors = np.stack(batch["features"].to_numpy()).astype(np.float32)
    exclude = {
        int(user): np.asarray(seen, dtype=np.int64)
        for user, seen in zip(model.user_ids, batch["seen"], strict=True)
        if seen is not None
    }
    lists = model.recommend(model.user_ids, k, exclude=exclude, allowed=item_known).lists
    ranked = {user: ranked.product_ids for user, ranked in lists.items()}
    relevant = {
        int(user): set(np.asarray(items).tolist())
        for user, items in zip(model.user_ids, batch["relevant"], strict=True)
    }
    sums: dict[str, float | int] = {"users": len(relevant)}
    for name, metric in RANKING_METRICS.items():
        sums[name] = metric(ranked, relevant, k) * len(relevant)
    return sums
