"""The ``train`` subcommand of ``recommendation_system.py``: a log file in, an artifact out.

``flask --app app train`` trains on the event store; this trains on a log
file (Parquet or CSV, read in chunks) and publishes into a model directory in
the same artifact format, so servers pointed at that directory serve it. The
quality gate judges it first against the newest version there, as a server's
training does (``--force`` publishes whatever it says). With ``--engine
spark`` PySpark ML's ALS fits the model (``requirements-spark.txt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from recsys.cli.arguments import add_command
from recsys.data.catalog import catalog_beside, catalog_for_log
from recsys.data.log_files import is_parquet, iter_log
from recsys.evaluation.default_pipeline import PipelineResult
from recsys.models import MODELS, canonical_model_name
from recsys.training import DEFAULT_MASTER

if TYPE_CHECKING:
    from recsys.store.artifacts import ArtifactMetadata, ModelRegistry
    from recsys.training import GatePolicy, TrainingSettings

BUNDLED_LOG = Path(__file__).resolve().parents[2] / "interactions.csv"


def add_training_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to a subparsers object."""
    train = add_command(
        commands,
        "train",
        "train a model on a log file and publish it into a model directory",
        "Train a model on a log (Parquet or CSV: user_id,product_clicked,purchased), "
        "measure it on the holdout, and publish it as the newest version in --model-dir, "
        "the artifact format the servers load (RECSYS_MODEL_DIR).",
    )
    train.add_argument(
        "--data",
        type=Path,
        default=BUNDLED_LOG,
        metavar="PATH",
        help="the log, Parquet (.parquet) or CSV (default: the bundled interactions.csv)",
    )
    train.add_argument(
        "--jdbc-url",
        default=None,
        metavar="URL",
        help="read the log and catalog from the PostgreSQL event store over JDBC instead "
        "of --data (--engine spark; jdbc:postgresql://HOST:PORT/DB?user=...)",
    )
    train.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="PATH",
        help="its catalog (default: NAME.products.csv, else products.csv, beside --data)",
    )
    train.add_argument(
        "--model-dir", type=Path, required=True, metavar="DIR", help="where to publish (required)"
    )
    train.add_argument("--model", default="als", choices=sorted(MODELS), help="the model to train")
    train.add_argument(
        "--engine",
        default="local",
        choices=("local", "spark"),
        help="what fits the model: local (this process), or spark (ALS on PySpark ML)",
    )
    train.add_argument(
        "--spark-master",
        default=DEFAULT_MASTER,
        metavar="URL",
        help="the Spark master of --engine spark: local[N], spark://HOST:7077, yarn",
    )
    train.add_argument(
        "--staging-uri",
        default=None,
        metavar="URI",
        help="where Spark's executors keep checkpoints, a folder or URI they all reach "
        "(--engine spark; default: a temporary folder in local mode, none on a cluster)",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="publish even if the quality gate finds it worse than the newest version there",
    )
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    """Train on a log file (or the store over JDBC), publish the model, print what was published."""
    # The serving stack loads only when a model is trained, not for `--help`.
    from recsys.store.artifacts import ModelRegistry
    from recsys.training import GatePolicy, TrainingSettings, describe_gate, publish_trained

    registry = ModelRegistry(args.model_dir)
    settings = TrainingSettings(model=canonical_model_name(args.model))
    gate = GatePolicy(force=args.force)
    if args.engine == "spark" and settings.model != "als":
        print(f"error: the spark engine trains als, not {settings.model}", file=sys.stderr)
        return 2
    if args.jdbc_url is not None and args.engine != "spark":
        print("error: --jdbc-url reads through Spark: add --engine spark", file=sys.stderr)
        return 2
    if args.engine == "spark":
        from recsys.training import NoTrainingDataError

        try:
            meta = _train_with_spark(args, registry, settings, gate)
        except NoTrainingDataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        log, catalog = _read_log(args)
        meta = publish_trained(log, lambda: catalog, registry, settings, gate=gate)
    done = "kept as rejected" if meta.rejected else "published"
    print(
        f"{done} {meta.version} ({meta.model_type}, {args.engine} engine) in "
        f"{args.model_dir}, trained on {meta.training['interactions']} interactions"
    )
    for name, value in meta.metrics.items():
        print(f"  {name}: {value}")
    print(f"quality gate {describe_gate(meta.gate)}")
    if meta.rejected:
        print("error: the quality gate rejected it; --force publishes it anyway", file=sys.stderr)
        return 1
    return 0


def _train_with_spark(
    args: argparse.Namespace,
    registry: ModelRegistry,
    settings: TrainingSettings,
    gate: GatePolicy,
) -> ArtifactMetadata:
    """Train with Spark: the executors read the store or a Parquet log; a CSV is read here.

    The quality gate judges a CSV log's model; the executors' path publishes
    ungated (the gate ranks held-out users in this process, which would hold the log).
    """
    from recsys.training import (
        EventSource,
        SparkALSEngine,
        publish_trained,
        train_on_spark,
    )

    with SparkALSEngine(args.spark_master, staging_uri=args.staging_uri) as spark:
        if args.jdbc_url is not None:
            source = EventSource(jdbc_url=args.jdbc_url)
            return train_on_spark(spark, source, registry, settings)
        if is_parquet(args.data):
            source = EventSource(parquet=str(args.data))
            catalog_path = args.catalog or catalog_beside(args.data)
            return train_on_spark(spark, source, registry, settings, catalog_path)
        log, catalog = _read_log(args)
        return publish_trained(log, lambda: catalog, registry, settings, fitter=spark, gate=gate)


def _read_log(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    log = pd.concat([chunk.frame for chunk in iter_log(args.data, typed=True)], ignore_index=True)
    return log, catalog_for_log(log, args.catalog or catalog_beside(args.data))
