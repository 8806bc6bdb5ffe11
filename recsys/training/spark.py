"""ALS on Apache Spark (PySpark ML), for logs that outgrow one machine.

``SparkALSEngine`` owns the SparkSession and sets up
``pyspark.ml.recommendation.ALS`` with implicit preferences. It trains two
ways, both ending in the ALS artifact every server loads unchanged:

- ``recsys.training.spark_pipeline.train_on_spark``, the cluster path: the
  executors read the events where they are, rate, split, fit and measure;
  the driver streams the users' factors and ids into the artifact block by
  block (``user_arrays``) and collects only the products' arrays;
- as a ``ModelFitter`` for ``publish_trained`` (a log this process already
  holds): the feedback rows travel to the executors inside the tasks.

Nothing is handed to the executors as a file of the driver's: checkpoints
go under the staging URI (``SPARK_STAGING_URI``), or in local mode into this
process's temporary directory.

How the parameters map, so both engines learn the same model:

- confidence: both use ``1 + alpha * engagement`` (Spark's ``alpha`` and
  ``implicitPrefs=True`` on the engagement column; our ALS builds the same
  confidences for ``implicit``);
- regularisation: Spark multiplies ``regParam`` by each user's (item's)
  number of ratings ("ALS-WR"), ``implicit`` does not, so no ``regParam``
  matches exactly. ``regParam`` = ``regularization`` / sqrt(mean products
  per user x mean users per product) weighs the user and the item solves
  alike (``spark_reg_param``). On the simulated shop Spark then ranks a
  little better than ``implicit`` (NDCG@10 up to about 0.17 higher: the count
  weighting suits a long tail); tests/training/test_spark.py states the tolerance;
- ``rank`` = ``factors``, ``maxIter`` = ``iterations``, ``seed`` = ``random_state``;
- ``coldStartStrategy="drop"``: Spark never scores users or items it did not
  train on (the artifact's popularity fallback answers them).

Spark's ids are 32-bit, so rows carry the model's inner indices (0..n-1),
which every training run builds anyway. pyspark and Java are needed only here
and only when this engine is chosen (``requirements-spark.txt``).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import RecsysError
from recsys.models.als import ALSRecommender
from recsys.models.base import Recommender
from recsys.models.state import ArrayChunks, ModelState

logger = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
# PostgreSQL's JDBC driver as Debian's libpostgresql-jdbc-java installs it;
# on a cluster, spark-submit --packages org.postgresql:postgresql:<version>.
POSTGRES_JDBC_JAR = Path("/usr/share/java/postgresql.jar")
ENGINES = ("implicit", "spark")
# The most users the driver holds at a time when it streams their ids and
# factors into an artifact (8192 x 32 factors x 4 bytes: 1 MiB), and the
# users in each partition the driver's JVM fetches whole to serve them.
STREAM_BLOCK_ROWS = 8192
STREAM_PARTITION_ROWS = 16 * STREAM_BLOCK_ROWS


class SparkUnavailableError(RecsysError, RuntimeError):
    """pyspark is not installed, or Spark could not start (no Java)."""


class SparkALSEngine:
    """Fits ALS models on Spark; a context manager that owns one SparkSession.

    Args:
        master: The Spark master URL: ``local[2]`` here, ``spark://host:7077``,
            ``yarn`` or ``k8s://...`` on a cluster; ignored under
            spark-submit, whose ``--master`` applies.
        driver_memory: Memory of the driver JVM (local mode runs everything in it).
        reg_param: Spark's ``regParam``; default from ``regularization`` (see
            the module docstring).
        jars: Jars for the driver and executors (default: PostgreSQL's JDBC
            driver when Debian's package has installed it).
        staging_uri: A folder or URI every executor reaches (``hdfs://``,
            ``s3a://``, a shared mount) for ALS's checkpoints; removed on exit.
    """

    def __init__(
        self,
        master: str = DEFAULT_MASTER,
        driver_memory: str = "4g",
        reg_param: float | None = None,
        jars: tuple[str, ...] | None = None,
        staging_uri: str | None = None,
    ):
        if jars is None:
            jars = (str(POSTGRES_JDBC_JAR),) if POSTGRES_JDBC_JAR.is_file() else ()
        self.jars = jars
        self.master = master
        self.driver_memory = driver_memory
        self.reg_param = reg_param
        self.staging_uri = staging_uri.rstrip("/") if staging_uri else None
        self._spark: Any = None
        self._owns_session = True
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._checkpoints: str | None = None

    @property
    def session(self) -> Any:
        """The SparkSession (inside ``with``)."""
        if self._spark is None:
            raise RuntimeError("use SparkALSEngine as a context manager (with ...:)")
        return self._spark

    def __enter__(self) -> SparkALSEngine:
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise SparkUnavailableError(
                "the spark engine needs pyspark: pip install -r requirements-spark.txt"
            ) from exc
        self._workdir = tempfile.TemporaryDirectory(prefix="recsys-spark-")
        # A session this process already runs (a notebook's, a test's) is
        # used as it is, master included, and left running on exit.
        self._owns_session = SparkSession.getActiveSession() is None
        builder = SparkSession.builder
        # Under spark-submit (which starts the JVM and hands Python its port)
        # the master and resources are spark-submit's to choose.
        submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
        if not submitted:
            # Python workers run this interpreter (the one with numpy and pandas),
            # not whatever `python3` is first on the PATH; PySpark reads the
            # variable when the context starts.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = builder.master(self.master)
        if self.jars:
            builder = builder.config("spark.jars", ",".join(self.jars))
        if not submitted and self.master.startswith("local"):
            # Local mode only: on a cluster each executor has its own local
            # directories, and this driver's would not exist on their hosts.
            builder = builder.config("spark.local.dir", self._workdir.name)
        try:
            self._spark = (
                builder.appName("recsys-als")
                .config("spark.driver.memory", self.driver_memory)
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", "8")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .getOrCreate()
            )
        except Exception as exc:  # py4j raises its own errors when Java cannot start
            self._workdir.cleanup()
            raise SparkUnavailableError(f"Spark could not start: {exc}") from exc
        self._spark.sparkContext.setLogLevel("ERROR")
        self._checkpoints = self._checkpoint_dir()
        if self._checkpoints is not None:
            self._spark.sparkContext.setCheckpointDir(self._checkpoints)
        return self

    def _checkpoint_dir(self) -> str | None:
        """Return where ALS checkpoints go: executors must all reach it, so never a driver path.

        Under the staging URI when one is set; in local mode (one machine) in
        this process's temporary directory; otherwise nowhere (ALS then keeps
        its lineage, fine for the usual 15 iterations).
        """
        if self.staging_uri is not None:
            return f"{self.staging_uri}/recsys-{uuid.uuid4().hex}/checkpoints"
        if self._spark.sparkContext.master.startswith("local") and self._workdir is not None:
            return str(Path(self._workdir.name) / "checkpoints")
        return None

    def __exit__(self, *exc_info: object) -> None:
        if self._spark is not None:
            if self.staging_uri is not None and self._checkpoints is not None:
                _delete_uri(self._spark, self._checkpoints.rsplit("/", 1)[0])
            if self._owns_session:
                self._spark.stop()
            self._spark = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def als(self, template: ALSRecommender, reg_param: float) -> Any:
        """Return PySpark ML's ALS set as ``template`` (rows ``user``, ``item``, ``engagement``)."""
        from pyspark.ml.recommendation import ALS

        return ALS(
            rank=template.factors,
            maxIter=template.iterations,
            regParam=self.reg_param if self.reg_param is not None else reg_param,
            alpha=template.alpha,
            implicitPrefs=True,
            coldStartStrategy="drop",
            seed=template.random_state,
            userCol="user",
            itemCol="item",
            ratingCol="engagement",
            checkpointInterval=5 if self._checkpoints is not None else -1,
        )

    def __call__(self, name: str, params: Mapping[str, Any], feedback: pd.DataFrame) -> Recommender:
        """Fit a model by name (only ``als``) on a feedback frame; the ``ModelFitter`` interface.

        Raises:
            ValueError: The model is not ALS.
        """
        if name != ALSRecommender.name:
            raise ValueError(f"the spark engine trains als only, not {name!r}")
        return self.fit_als(feedback, **dict(params))

    def fit_als(self, feedback: pd.DataFrame, **params: Any) -> ALSRecommender:
        """Fit ALS on Spark and return it as an ``ALSRecommender`` (the same artifact arrays).

        Args:
            feedback: ``user_id, product_id, engagement`` (a feedback frame).
            **params: ``ALSRecommender``'s parameters.
        """
        refuse_arrivals(params)
        template = ALSRecommender(**params)
        user_ids = np.unique(feedback["user_id"].to_numpy(dtype=np.int64))
        product_ids = np.unique(feedback["product_id"].to_numpy(dtype=np.int64))
        users = np.searchsorted(user_ids, feedback["user_id"].to_numpy(dtype=np.int64))
        items = np.searchsorted(product_ids, feedback["product_id"].to_numpy(dtype=np.int64))
        engagement = feedback["engagement"].to_numpy(dtype=np.float64)
        if (engagement < 0).any():
            raise ValueError("engagement must be non-negative for ALS confidences")
        # The rows travel to the executors inside the tasks (Arrow batches),
        # never as a file of this driver's that other hosts could not read.
        rows = pd.DataFrame(
            {
                "user": users.astype(np.int32),
                "item": items.astype(np.int32),
                "engagement": engagement.astype(np.float32),
            }
        )
        frame = self.session.createDataFrame(rows)
        reg_param = spark_reg_param(
            template.regularization, len(feedback), len(user_ids), len(product_ids)
        )
        fitted = self.als(template, reg_param).fit(frame)
        user_factors = dense_factors(fitted.userFactors, len(user_ids), template.factors)
        item_factors = dense_factors(fitted.itemFactors, len(product_ids), template.factors)
        state = ModelState(
            arrays={
                "user_ids": user_ids,
                "product_ids": product_ids,
                "user_factors": user_factors,
                "item_factors": item_factors,
            },
            params={"model": ALSRecommender.name, **template.params()},
        )
        return ALSRecommender.from_state(state)


def refuse_arrivals(params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when ALS's parameters ask for new arrivals, which Spark does not learn.

    The lift needs each product's first event and uptake, which the Spark
    pipeline does not compute: a model trained there would rank without it.
    """
    if float(params.get("arrival_days", 0.0)) > 0:
        raise ValueError(
            "the spark engine trains als without new arrivals: set arrival_days to 0 in "
            "its parameters, or train with the local engine"
        )


def spark_reg_param(regularization: float, rows: int, users: int, items: int) -> float:
    """Return Spark's ``regParam`` for ``implicit``'s absolute ``regularization``.

    Args:
        regularization: ``ALSRecommender``'s L2 weight.
        rows: Number of (user, product) pairs.
        users: Number of users.
        items: Number of products.
    """
    per_user = rows / max(1, users)
    per_item = rows / max(1, items)
    return regularization / float(np.sqrt(per_user * per_item))


def _delete_uri(spark: Any, uri: str) -> None:
    """Delete a directory on any file system Spark's Hadoop client reaches (file:, hdfs:, s3a:)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
    except Exception:  # py4j's errors: a leftover staging folder is not worth failing a run
        logger.warning("could not delete the staging folder %s", uri)


def dense_factors(factors: Any, size: int, rank: int) -> np.ndarray:
    """Return Spark's (id, features) factor table as a dense (size, rank) float32 array.

    The executors pack each Arrow batch of factors into two byte strings and
    the driver copies one partition's at a time into the array: the driver
    never holds more than the array and one partition, where ``toPandas``
    would hold a Python object per row besides. Rows Spark left out (none,
    with every id in training) stay zero.
    """
    dense = np.zeros((size, rank), dtype=np.float32)

    def packed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if len(batch):
                ids = batch["id"].to_numpy(dtype=np.int32)
                values = np.stack(batch["features"].to_numpy()).astype(np.float32)
                yield pd.DataFrame({"ids": [ids.tobytes()], "values": [values.tobytes()]})

    for row in factors.mapInPandas(packed, "ids binary, values binary").toLocalIterator():
        ids = np.frombuffer(row["ids"], dtype=np.int32)
        dense[ids] = np.frombuffer(row["values"], dtype=np.float32).reshape(len(ids), rank)
    return dense


def user_table(users: Any, user_factors: Any, n_users: int) -> Any:
    """Return the users' ``user``, ``user_id``, ``features`` in ranges of ``user``, sorted, cached.

    Args:
        users: Each user's inner index ``user`` and raw ``user_id``.
        user_factors: Spark's ``userFactors`` (``id`` = inner index, ``features``).
        n_users: The number of users (sets the number of partitions).

    Returns:
        The table ``user_arrays`` streams; persisted (unpersist it after use).
    """
    from pyspark import StorageLevel

    partitions = max(1, -(-n_users // STREAM_PARTITION_ROWS))
    return (
        users.join(user_factors.withColumnRenamed("id", "user"), "user", "left")
        .repartitionByRange(partitions, "user")
        .sortWithinPartitions("user")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def user_arrays(
    table: Any, n_users: int, rank: int, block_rows: int = STREAM_BLOCK_ROWS
) -> tuple[ArrayChunks, ArrayChunks]:
    """Return the users' id map and factors as arrays the executors stream in index order.

    Each pass over either array is one Spark job: the executors pack each
    run of at most ``block_rows`` consecutive users into bytes and the driver
    receives one partition after another (``toLocalIterator``), so it never
    holds more than one block of users. Users Spark left without factors get
    zeros, as ``dense_factors`` gives them.

    Args:
        table: ``user_table``'s output.
        n_users: The number of users (inner indices 0..n_users-1).
        rank: The number of factors.
        block_rows: The most users in one block.

    Returns:
        (``user_ids``, ``user_factors``) as ``ArrayChunks`` of shapes
        (n_users,) int64 and (n_users, rank) float32.
    """
    ids = ArrayChunks((n_users,), np.dtype(np.int64), _streamed(table, None, block_rows))
    factors = ArrayChunks((n_users, rank), np.dtype(np.float32), _streamed(table, rank, block_rows))
    return ids, factors


def _streamed(table: Any, rank: int | None, block_rows: int) -> Any:
    """Return a function that starts one pass over the ids (rank None) or the factors, in blocks."""
    dtype, row_shape = (np.int64, ()) if rank is None else (np.float32, (rank,))

    def packed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            index = batch["user"].to_numpy(dtype=np.int64)
            if len(index) > 1 and (np.diff(index) != 1).any():
                raise ValueError("the users' inner indices are not consecutive")
            for start in range(0, len(batch), block_rows):
                part = batch.iloc[start : start + block_rows]
                if rank is None:
                    values = part["user_id"].to_numpy(dtype=np.int64)
                else:
                    values = np.zeros((len(part), rank), dtype=np.float32)
                    for row, features in enumerate(part["features"]):
                        if features is not None:
                            values[row] = features
                yield pd.DataFrame({"first": [index[start]], "data": [values.tobytes()]})

    def blocks() -> Iterator[np.ndarray]:
        expected = 0
        stream = table.mapInPandas(packed, "first long, data binary").toLocalIterator()
        for row in stream:
            if row["first"] != expected:
                raise ValueError(f"Spark's users skip from index {expected} to {row['first']}")
            block = np.frombuffer(row["data"], dtype=dtype).reshape(-1, *row_shape)
            expected += len(block)
            yield block

    return blocks
