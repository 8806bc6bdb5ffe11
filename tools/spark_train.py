"""Train ALS on a Spark cluster and publish it for the servers: the spark-submit entry point.

The app's settings come from the environment as for any process of the
service (``RECSYS_DATABASE_URL``, ``RECSYS_MODEL_DIR``, ``RECSYS_MODEL=als``,
``RECSYS_SPARK_STAGING_URI``, ``RECSYS_SPARK_JDBC_PARTITIONS``); the options
below override the last two. spark-submit's ``--master`` and resources
apply. The executors read the events (the PostgreSQL store over JDBC, or a
Parquet dataset with ``--data``), rate, split, fit and measure; the driver
publishes the ALS artifact into the model directory, under the training
lock, the users' ids and factors streamed into it block by block.

Usage (see docs/scaling.md, "Spark on a cluster"):
    zip -qr recsys.zip recsys
    RECSYS_MODEL=als RECSYS_MODEL_DIR=/shared/models \\
    spark-submit --master spark://HOST:7077 --deploy-mode client \\
        --py-files recsys.zip --jars /usr/share/java/postgresql.jar \\
        tools/spark_train.py [--data URI] [--staging-uri URI] [--jdbc-partitions N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app
from recsys.training import TRAINING_REFUSALS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        metavar="URI",
        help="a Parquet dataset the executors read (a shared path, hdfs://, s3a://) "
        "instead of the store; its catalog: RECSYS_CATALOG_PATH",
    )
    parser.add_argument(
        "--staging-uri",
        metavar="URI",
        help="where executors keep checkpoints (default: RECSYS_SPARK_STAGING_URI)",
    )
    parser.add_argument(
        "--jdbc-partitions",
        type=int,
        metavar="N",
        help="parallel reads of the store (default: RECSYS_SPARK_JDBC_PARTITIONS)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The settings are read from the environment when the app is created.
    if args.staging_uri:
        os.environ["RECSYS_SPARK_STAGING_URI"] = args.staging_uri
    if args.jdbc_partitions:
        os.environ["RECSYS_SPARK_JDBC_PARTITIONS"] = str(args.jdbc_partitions)
    runtime = create_app().extensions["recsys.runtime"]
    try:
        meta = runtime.train_exclusively(engine="spark", data=args.data)
    except TRAINING_REFUSALS as exc:
        # As `flask train` says it: one line, not a driver's traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"published {meta.version} ({meta.model_type}) on {meta.training['interactions']} "
        f"events; ndcg@10 {meta.metrics.get('ndcg@10')} over "
        f"{meta.metrics.get('ranked_users', 0)} users"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
