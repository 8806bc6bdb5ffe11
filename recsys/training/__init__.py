"""Training: fit a model on the event store, publish it, and run retrain jobs.

One entry point takes the training lock (``Trainer``); one lifecycle runs a
job (``execute``); the quality gate (``GatePolicy``) keeps a version worse
than the live one from going live, in the serving process or in a worker that leases jobs
from the database; Spark fits ALS on a cluster.
"""

from recsys.training.gate import GatePolicy
from recsys.training.gate import describe as describe_gate
from recsys.training.jobs import (
    AutoRetrainer,
    RetrainInProgressError,
    Trainer,
    TrainingJobRunner,
    TrainingLock,
)
from recsys.training.spark import (
    DEFAULT_MASTER,
    SparkALSEngine,
    SparkUnavailableError,
    refuse_arrivals,
)
from recsys.training.spark_data import EventSource, jdbc_url_of
from recsys.training.spark_pipeline import train_on_spark
from recsys.training.train import (
    NoTrainingDataError,
    TrainingSettings,
    publish_trained,
    train_and_publish,
)
from recsys.training.worker import QueuedTrainingJobs, TrainingWorker

# What a training may be refused with, said to an operator in one line: unusable
# settings or events, no Spark, or nothing to train on (in the retention window).
TRAINING_REFUSALS = (ValueError, SparkUnavailableError, NoTrainingDataError)

__all__ = [
    "DEFAULT_MASTER",
    "TRAINING_REFUSALS",
    "AutoRetrainer",
    "EventSource",
    "GatePolicy",
    "NoTrainingDataError",
    "QueuedTrainingJobs",
    "RetrainInProgressError",
    "SparkALSEngine",
    "SparkUnavailableError",
    "Trainer",
    "TrainingJobRunner",
    "TrainingLock",
    "TrainingSettings",
    "TrainingWorker",
    "describe_gate",
    "jdbc_url_of",
    "publish_trained",
    "refuse_arrivals",
    "train_and_publish",
    "train_on_spark",
]
