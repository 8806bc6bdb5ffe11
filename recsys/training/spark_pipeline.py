"""Training on a Spark cluster: executors read, rate, split, fit and measure; the driver publishes.

``train_on_spark`` is ``train_and_publish`` for a log that lives beside the
cluster (a Parquet dataset or the PostgreSQL store over JDBC). Everything
that grows with the log or with its users stays in Spark (cached pairs,
checkpoints under the staging URI). The users' ids and factors go from the
executors into the artifact's file one block at a time (``user_arrays``);
the driver collects only what grows with the catalog (the products' factors,
ids and click counts, the catalog) and a few numbers, so its memory grows
neither with the log's length nor with its users.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.catalog import catalog_for_log
from recsys.data.timestamps import retention_cutoff
from recsys.models.als import ALSRecommender
from recsys.models.popularity import PopularityRecommender
from recsys.models.state import ModelState
from recsys.store.artifacts import ArtifactMetadata, ModelRegistry
from recsys.training.spark import (
    SparkALSEngine,
    dense_factors,
    refuse_arrivals,
    spark_reg_param,
    user_arrays,
    user_table,
)
from recsys.training.spark_data import (
    EventSource,
    indexed_ids,
    read_events,
    read_jdbc_catalog,
    spark_holdout,
    spark_ratings,
    summarise_events,
)
from recsys.training.spark_metrics import spark_ranking_metrics
from recsys.training.train import (
    NoTrainingDataError,
    TrainingSettings,
    describe_window,
    window_record,
)


def train_on_spark(
    engine: SparkALSEngine,
    source: EventSource,
    registry: ModelRegistry,
    settings: TrainingSettings | None = None,
    catalog_path: Path | None = None,
) -> ArtifactMetadata:
    """Train ALS on the events where they are, measure it on the holdout, and publish it.

    Args:
        engine: A started engine (inside its ``with``).
        source: The events: a Parquet dataset or the store over JDBC.
        registry: Where the artifact goes (a directory of the driver's).
        settings: The model's parameters, weights, holdout and metrics (model
            ``als``), and the retention window the events are read in.
        catalog_path: A Parquet source's catalog file (JDBC: the store's own).

    Returns:
        The published artifact's metadata.

    Raises:
        NoTrainingDataError: There is no event (in the retention window,
            ``settings.retention_days``, when there is one).
        ValueError: The model is not ALS, the events are invalid, or a
            Parquet dataset has no ``timestamp`` to apply the window to.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    started = time.perf_counter()
    settings = settings or TrainingSettings(model="als")
    if settings.model != ALSRecommender.name:
        raise ValueError(f"the spark engine trains als, not {settings.model!r}")
    refuse_arrivals(settings.model_params)
    template = ALSRecommender(**dict(settings.model_params))
    # The window local training reads (``train_and_publish``), whether or not
    # the events before it were pruned yet.
    since = retention_cutoff(settings.retention_days)
    events = read_events(engine.session, source, since).persist(StorageLevel.MEMORY_AND_DISK)
    summary = summarise_events(events, source.describe())
    if summary.events == 0:
        raise NoTrainingDataError(
            f"{source.describe()} holds no events{describe_window(settings)} to train on"
        )
    rows = _indexed_feedback(events, settings).persist(StorageLevel.MEMORY_AND_DISK)
    n_users, n_items, n_pairs = rows.agg(
        sf.max("user") + 1, sf.max("item") + 1, sf.count(sf.lit(1))
    ).first()
    events.unpersist()
    reg_param = spark_reg_param(template.regularization, n_pairs, n_users, n_items)
    metrics = _holdout_metrics(engine, template, rows, settings, n_items)

    fitted = engine.als(template, reg_param).fit(rows)
    users = user_table(rows.select("user_id", "user").distinct(), fitted.userFactors, n_users)
    try:
        users.count()  # cached while the pairs it comes from still are
        state, fallback = _model_states(rows, users, fitted, template, n_users, n_items)
        rows.unpersist()
        # The users' arrays are streamed from ``users`` as the registry writes them.
        return registry.publish(
            state,
            fallback=fallback,
            catalog=_catalog(engine.session, source, catalog_path, state.arrays["product_ids"]),
            data_fingerprint=summary.fingerprint,
            metrics=metrics,
            training={
                "interactions": summary.events,
                "users": int(n_users),
                "products": int(n_items),
                "seconds": round(time.perf_counter() - started, 3),
                **_weights_and_source(settings, source),
                **window_record(settings, since),
            },
        )
    finally:
        users.unpersist()


def _weights_and_source(settings: TrainingSettings, source: EventSource) -> dict[str, Any]:
    """Return the rest of the artifact's training record: the weights, the engine, the source."""
    return {
        "event_weights": settings.weights.as_dict(),
        "engine": "spark",
        "source": source.describe(),
    }


def _model_states(
    rows: Any, users: Any, fitted: Any, template: ALSRecommender, n_users: int, n_items: int
) -> tuple[ModelState, ModelState]:
    """Return the ALS state and the popularity fallback's, the users' arrays streamed from Spark.

    The products' arrays are collected (they grow with the catalog); the
    users' id map and factors stay on the executors until the registry
    writes them block by block, and checks them as written.
    """
    user_ids, user_factors = user_arrays(users, n_users, template.factors)
    product_ids = _id_map(rows, "product_id", "item")
    state = ModelState(
        arrays={
            "product_ids": product_ids,
            "item_factors": dense_factors(fitted.itemFactors, n_items, template.factors),
        },
        params={"model": ALSRecommender.name, **template.params()},
        streamed={"user_ids": user_ids, "user_factors": user_factors},
    )
    fallback = ModelState(
        arrays={"product_ids": product_ids, "item_clicks": _item_clicks(rows, n_items)},
        params={"model": PopularityRecommender.name},
        streamed={"user_ids": user_ids},
    )
    return state, fallback


def _indexed_feedback(events: Any, settings: TrainingSettings) -> Any:
    """Return the feedback frame with each pair's inner ``user`` and ``item`` indices (ints)."""
    from pyspark.sql import functions as sf

    feedback = spark_ratings(events, settings.weights)
    users = indexed_ids(feedback, "user_id", "user")
    items = indexed_ids(feedback, "product_id", "item")
    return (
        feedback.join(users, "user_id")
        .join(items, "product_id")
        .withColumn("user", sf.col("user").cast("int"))
        .withColumn("item", sf.col("item").cast("int"))
    )


def _holdout_metrics(
    engine: SparkALSEngine,
    template: ALSRecommender,
    rows: Any,
    settings: TrainingSettings,
    n_items: int,
) -> dict[str, Any]:
    """Fit on the holdout's training rows; return its ranking metrics (empty: none held out)."""
    from pyspark.sql import functions as sf

    train, test = spark_holdout(rows, settings.holdout_fraction, settings.seed)
    train = train.persist()
    counts = train.agg(
        sf.count(sf.lit(1)).alias("pairs"),
        sf.countDistinct("user").alias("users"),
        sf.countDistinct("item").alias("items"),
    ).first()
    if test.isEmpty():
        train.unpersist()
        return {}
    reg_param = spark_reg_param(
        template.regularization, counts["pairs"], counts["users"], counts["items"]
    )
    fitted = engine.als(template, reg_param).fit(train)
    item_factors = dense_factors(fitted.itemFactors, n_items, template.factors)
    known = np.zeros(n_items, dtype=bool)
    known[train.select("item").distinct().toPandas()["item"].to_numpy()] = True
    metrics = spark_ranking_metrics(
        train,
        test,
        fitted.userFactors,
        item_factors,
        known,
        settings.metrics_k,
        settings.relevance_threshold,
        settings.max_eval_users,
        settings.seed,
    )
    train.unpersist()
    return metrics


def _id_map(rows: Any, column: str, index: str) -> np.ndarray:
    """Return the raw ids in inner-index order (ascending), as the artifact's id map (products)."""
    ids = rows.select(column, index).distinct().orderBy(index).toPandas()
    return ids[column].to_numpy(dtype=np.int64)


def _item_clicks(rows: Any, n_items: int) -> np.ndarray:
    """Return each product's clicks over all users (the popularity fallback's counts)."""
    from pyspark.sql import functions as sf

    clicks = rows.groupBy("item").agg(sf.sum("clicks").alias("clicks")).toPandas()
    dense = np.zeros(n_items, dtype=np.float64)
    dense[clicks["item"].to_numpy()] = clicks["clicks"].to_numpy(dtype=np.float64)
    return dense


def _catalog(
    spark: Any, source: EventSource, catalog_path: Path | None, product_ids: np.ndarray
) -> pd.DataFrame:
    """Return the catalog to publish: the store's or the file's, covering every trained product."""
    covered = pd.DataFrame({"product_clicked": product_ids})
    if source.jdbc_url is None:
        return catalog_for_log(covered, catalog_path)
    known = read_jdbc_catalog(spark, source.jdbc_url)
    missing = np.setdiff1d(product_ids, known["product_id"].to_numpy(dtype=np.int64))
    if len(missing) == 0:
        return known
    extra = catalog_for_log(pd.DataFrame({"product_clicked": missing}), None)
    return pd.concat([known, extra], ignore_index=True)
