"""The event log as Spark DataFrames: read where it lives, rated and split by the executors.

Nothing here brings the log to the driver. A Parquet dataset (a file, a
directory or a URI such as ``s3a://`` or ``hdfs://``) is read by the
executors; PostgreSQL is read over JDBC in ranges of the primary key, one
range per task. Either read can keep to the retention window (the events
recorded at or after a cutoff), as local training does. The ratings
(``derive_ratings``'s rule) and the holdout split (``holdout_split``'s
rule: round(fraction x n) of each user's n pairs, at least 1 and at most
n - 1) are computed in Spark; only small results (counts, the catalog)
reach the driver.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from recsys.data.interactions import CLICK, PURCHASE, RATING, TIMESTAMP_COLUMN
from recsys.data.ratings import RATING_SCALE, EventWeights
from recsys.data.timestamps import format_utc
from recsys.store.bulk import TYPE_CODE_SQL

# PostgreSQL's JDBC driver class (Debian's libpostgresql-jdbc-java, or
# spark-submit --packages org.postgresql:postgresql:<version> on a cluster).
JDBC_DRIVER = "org.postgresql.Driver"
# Arguments of the modulus the fingerprint's hash sums are taken in: the sum of
# a billion values below it stays inside a 64-bit integer (Spark's ANSI mode
# would fail on an overflow).
_HASH_MODULUS = 1_000_000_007


@dataclass(frozen=True)
class EventSource:
    """Where the events are, for the executors to read: a Parquet dataset or PostgreSQL.

    Attributes:
        parquet: A Parquet file or dataset directory, local path or URI
            (``s3a://bucket/events/``, ``hdfs://...``) every executor can read.
        jdbc_url: ``jdbc:postgresql://HOST:PORT/DB?user=...`` of the event store.
        partitions: Parallel JDBC reads (ranges of the primary key).
    """

    parquet: str | None = None
    jdbc_url: str | None = None
    partitions: int = 4

    def __post_init__(self) -> None:
        if (self.parquet is None) == (self.jdbc_url is None):
            raise ValueError("give the events as a Parquet dataset or a JDBC URL, one of the two")
        if self.partitions < 1:
            raise ValueError(f"JDBC partitions must be at least 1, got {self.partitions}")

    def describe(self) -> str:
        """Return where the events are, without a password."""
        if self.parquet is not None:
            return self.parquet
        return str(self.jdbc_url).split("?", 1)[0]


def jdbc_url_of(database_url: str) -> str | None:
    """Return the JDBC URL of a PostgreSQL store's SQLAlchemy URL (None for another database).

    Host, port, database, user, password and ``sslmode`` come from the URL;
    the schema from ``options=-csearch_path=...``.
    """
    import sqlalchemy as sa

    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    query: dict[str, str] = {}
    if url.username:
        query["user"] = url.username
    if url.password:
        query["password"] = url.password
    if "sslmode" in url.query:
        query["sslmode"] = str(url.query["sslmode"])
    options = url.query.get("options", "")
    for option in options if isinstance(options, tuple) else (options,):
        if option.startswith("-csearch_path="):
            query["currentSchema"] = option.removeprefix("-csearch_path=")
    address = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"jdbc:postgresql://{address}/{url.database or ''}?{urllib.parse.urlencode(query)}"


def read_events(spark: Any, source: EventSource, since: datetime | None = None) -> Any:
    """Return the events as a DataFrame ``user_id, product_clicked, purchased`` (longs, ints).

    Args:
        spark: The Spark session.
        source: Where the events are.
        since: Only the events recorded at or after this moment (naive UTC;
            the retention window, ``retention_cutoff``); None: all of them.
            The store filters on ``created_at`` in the query Spark sends; a
            Parquet dataset on its ``timestamp`` column, where an event of
            unknown time (null) is left out, as it cannot be shown to be
            inside the window.

    Raises:
        ValueError: The Parquet dataset lacks one of the columns, or its
            ``timestamp`` column when a window is to be applied.
    """
    from pyspark.sql import functions as sf

    if source.parquet is not None:
        frame = spark.read.parquet(source.parquet)
        missing = [c for c in ("user_id", "product_clicked", "purchased") if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{source.parquet}: the events lack column(s) {missing}; "
                "expected user_id, product_clicked, purchased"
            )
        if since is not None:
            frame = _parquet_events_since(frame, since, source.parquet)
    else:
        frame = _read_jdbc_interactions(spark, str(source.jdbc_url), source.partitions, since)
    # A Parquet log holds clicks and purchases, as its purchased column says.
    typed = "type_code" in frame.columns
    return frame.select(
        sf.col("user_id").cast("long").alias("user_id"),
        sf.col("product_clicked").cast("long").alias("product_clicked"),
        sf.col("purchased").cast("int").alias("purchased"),
        (
            sf.col("type_code")
            if typed
            else sf.when(sf.col("purchased") == 1, PURCHASE).otherwise(CLICK)
        )
        .cast("int")
        .alias("type_code"),
        (sf.col("value") if typed else sf.lit(0)).cast("int").alias("value"),
    )


def _parquet_events_since(frame: Any, since: datetime, where: str) -> Any:
    """Return the rows of a Parquet log whose ``timestamp`` is at or after ``since`` (naive UTC).

    The column may be naive (``timestamp_ntz``: UTC, as ``write_log`` writes
    it), an instant (``timestamp``), or ISO-8601 text with an offset; the
    cutoff is compared as the same kind of value, so the session's time zone
    never shifts it.

    Raises:
        ValueError: The log has no ``timestamp`` column.
    """
    from pyspark.sql import functions as sf

    if TIMESTAMP_COLUMN not in frame.columns:
        raise ValueError(
            f"{where}: the events have no {TIMESTAMP_COLUMN} column, so the retention "
            "window (EVENT_RETENTION_DAYS) cannot be applied to them"
        )
    kind = frame.schema[TIMESTAMP_COLUMN].dataType.simpleString()
    stamps = sf.col(TIMESTAMP_COLUMN)
    if kind == "timestamp_ntz":
        cutoff = sf.lit(_naive_text(since)).cast("timestamp_ntz")
    else:
        # An instant, or text (unparsable text becomes null: of unknown time).
        stamps = stamps if kind == "timestamp" else stamps.try_cast("timestamp")
        cutoff = sf.lit(format_utc(since)).cast("timestamp")
    return frame.where(stamps >= cutoff)


def _read_jdbc_interactions(
    spark: Any, url: str, partitions: int, since: datetime | None = None
) -> Any:
    """Return the store's interactions over JDBC, read in ``partitions`` ranges of ids.

    The window is part of both queries Spark sends, so PostgreSQL leaves the
    old events out and the id ranges span only the events inside it.
    """
    properties = {"driver": JDBC_DRIVER}
    window = "" if since is None else f" WHERE {_created_since_sql(since)}"
    bounds = spark.read.jdbc(
        url,
        f"(SELECT min(id) AS low, max(id) AS high FROM interactions{window}) AS b",
        properties=properties,
    ).first()
    query = (
        "(SELECT id, user_id, product_id AS product_clicked, "
        f"CAST(purchased AS INTEGER) AS purchased, {TYPE_CODE_SQL} AS type_code, "
        f"COALESCE(value, 0) AS value FROM interactions{window}) AS i"
    )
    if bounds is None or bounds["low"] is None:
        return spark.read.jdbc(url, query, properties=properties)
    return spark.read.jdbc(
        url,
        query,
        column="id",
        lowerBound=int(bounds["low"]),
        upperBound=int(bounds["high"]) + 1,
        numPartitions=partitions,
        properties=properties,
    )


def _created_since_sql(since: datetime) -> str:
    """Return the SQL condition "recorded at or after ``since``" on the store's naive-UTC times.

    Spark's JDBC reader takes a query, not parameters; the literal is built
    from a datetime, never from text, so nothing can be injected through it.
    """
    return f"created_at >= TIMESTAMP '{_naive_text(since)}'"


def _naive_text(moment: datetime) -> str:
    """Return a naive-UTC moment as SQL's and Spark's timestamp text, to the microsecond."""
    return moment.isoformat(sep=" ", timespec="microseconds")


def read_jdbc_catalog(spark: Any, url: str) -> pd.DataFrame:
    """Return the store's catalog ``product_id, name, category, price`` (small: collected)."""
    return (
        spark.read.jdbc(url, "products", properties={"driver": JDBC_DRIVER})
        .withColumnRenamed("id", "product_id")
        .select("product_id", "name", "category", "price")
        .orderBy("product_id")
        .toPandas()
    )


@dataclass(frozen=True)
class EventSummary:
    """What one pass over the events says: their number, a digest, and whether they are valid."""

    events: int
    fingerprint: str


def summarise_events(events: Any, where: str) -> EventSummary:
    """Count and fingerprint the events in one pass, and check their values.

    The fingerprint is order-independent (sums of per-event hashes), so it
    differs from the local engine's digest of the same events; it changes
    whenever the events do.

    Raises:
        ValueError: An id is not positive or ``purchased`` is not 0 or 1.
    """
    from pyspark.sql import functions as sf

    hashed = sf.xxhash64("user_id", "product_clicked", "purchased")
    # A second hash with another seed: two sums make an accidental match far less likely.
    rehashed = sf.xxhash64(sf.lit(7), "user_id", "product_clicked", "purchased")
    row = events.agg(
        sf.count(sf.lit(1)).alias("events"),
        sf.min("user_id").alias("min_user"),
        sf.min("product_clicked").alias("min_product"),
        sf.min("purchased").alias("min_purchased"),
        sf.max("purchased").alias("max_purchased"),
        sf.sum(sf.pmod(hashed, sf.lit(_HASH_MODULUS))).alias("sum"),
        sf.sum(sf.pmod(rehashed, sf.lit(_HASH_MODULUS))).alias("sum2"),
    ).first()
    if row["events"] and (row["min_user"] < 1 or row["min_product"] < 1):
        raise ValueError(f"{where}: user_id and product_clicked must be positive integers")
    if row["events"] and (row["min_purchased"] < 0 or row["max_purchased"] > 1):
        raise ValueError(f"{where}: purchased must be 0 or 1")
    digest = f"spark-xxhash64:{row['events']}:{row['sum'] or 0}:{row['sum2'] or 0}"
    return EventSummary(events=int(row["events"]), fingerprint=digest)


def spark_ratings(events: Any, weights: EventWeights) -> Any:
    """Return the feedback frame of ``derive_ratings``, computed by the executors.

    Returns:
        ``user_id, product_id, clicks, purchases, engagement, rating``, one row per pair.
    """
    from pyspark.sql import functions as sf

    points = sf.lit(0.0)
    for code, weight in enumerate(weights.points().tolist()):
        points = sf.when(sf.col("type_code") == code, sf.lit(weight)).otherwise(points)
    # A rating is worth its weight times its stars (``event_points``).
    points = sf.when(sf.col("type_code") == RATING, points * sf.col("value")).otherwise(points)
    pairs = events.groupBy("user_id", "product_clicked").agg(
        sf.count(sf.lit(1)).alias("clicks"),
        sf.sum(sf.when(sf.col("type_code") == PURCHASE, 1).otherwise(0))
        .cast("long")
        .alias("purchases"),
        sf.sum(points).cast("double").alias("engagement"),
    )
    low, high = RATING_SCALE
    return pairs.withColumnRenamed("product_clicked", "product_id").withColumn(
        "rating", sf.least(sf.greatest(sf.col("engagement"), sf.lit(low)), sf.lit(high))
    )


def indexed_ids(frame: Any, column: str, index: str) -> Any:
    """Return the distinct ids of a column with dense indices 0..n-1 in ascending id order.

    The model's inner indices, as ``np.unique`` + ``searchsorted`` give them
    locally; Spark's ALS takes 32-bit ids, which raw ids need not fit.
    """
    ids = frame.select(column).distinct().orderBy(column)
    return ids.rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1])).toDF([column, index])


def spark_holdout(feedback: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """Split the feedback frame by ``holdout_split``'s rule, with seeded hash keys for the order.

    A user with n >= 2 pairs holds out rint(fraction x n) of them (half to
    even), at least 1 and at most n - 1; a user with one pair stays in
    training. Which pairs is decided by a hash of (seed, user, product), so
    the split does not depend on partitioning.

    Returns:
        (train, test) DataFrames with the feedback frame's columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    if not 0 < fraction < 1:
        raise ValueError(f"the holdout fraction must be between 0 and 1, got {fraction}")
    user = Window.partitionBy("user_id")
    ordered = user.orderBy(sf.xxhash64(sf.lit(seed), "user_id", "product_id"), "product_id")
    count = sf.count(sf.lit(1)).over(user)
    held = sf.least(sf.greatest(sf.rint(sf.lit(fraction) * count), sf.lit(1.0)), count - 1)
    marked = feedback.withColumn("_test", sf.row_number().over(ordered) <= held)
    columns = feedback.columns
    return (
        marked.where(~sf.col("_test")).select(*columns),
        marked.where(sf.col("_test")).select(*columns),
    )
