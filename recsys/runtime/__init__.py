"""The wiring: build the store, the online path, training and experiments from the settings.

``ServingRuntime`` owns one process's parts and their moments (init, load,
start, close); the dashboard's figures are read from it.
"""

from recsys.runtime.dashboard import (
    StoreStats,
    last_gate_decision,
    live_model_summary,
    lookup_user,
    running_experiment_report,
    stats,
)
from recsys.runtime.memory import return_large_blocks_at_once
from recsys.runtime.recommendation_export import (
    ExportRefusedError,
    ExportReport,
    export_recommendations,
    read_user_ids,
)
from recsys.runtime.startup import InitReport
from recsys.runtime.wiring import ServingRuntime

__all__ = [
    "ExportRefusedError",
    "ExportReport",
    "InitReport",
    "ServingRuntime",
    "StoreStats",
    "export_recommendations",
    "last_gate_decision",
    "live_model_summary",
    "lookup_user",
    "read_user_ids",
    "return_large_blocks_at_once",
    "running_experiment_report",
    "stats",
]
