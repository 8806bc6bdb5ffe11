"""A/B tests: definitions, assignment, exposures, attribution, the report and its statistics.

The experiment layer routes each user to a variant's answering pipeline and
records what was shown; the report joins exposures with the events that
followed and says whether a variant won, with statistics that refuse to name
a winner too early.
"""

from recsys.experiments.definitions import (
    CONVERSION,
    MAX_VARIANTS,
    MAX_WEIGHT,
    MIN_MDE,
    MIN_WEIGHT,
    NAME_CHARS,
    InvalidExperimentError,
)
from recsys.experiments.exposure_log import ExposureLog
from recsys.experiments.layer import ExperimentAnswer, ExperimentLayer, NoSuchExperimentError
from recsys.experiments.records import ExperimentExistsError, ExperimentStateError, ExperimentStore
from recsys.experiments.report import Guardrails, report_text

__all__ = [
    "CONVERSION",
    "MAX_VARIANTS",
    "MAX_WEIGHT",
    "MIN_MDE",
    "MIN_WEIGHT",
    "NAME_CHARS",
    "ExperimentAnswer",
    "ExperimentExistsError",
    "ExperimentLayer",
    "ExperimentStateError",
    "ExperimentStore",
    "ExposureLog",
    "Guardrails",
    "InvalidExperimentError",
    "NoSuchExperimentError",
    "report_text",
]
