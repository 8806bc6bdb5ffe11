"""Model operations (the admin role): start a retrain, follow its job, describe the live model.

A job the quality gate rejected ends ``rejected`` with both figures (``gate``);
``/model`` shows the live version's gate record and the gate's last decision,
which may be a rejected version that never served.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from recsys.errors import quote
from recsys.runtime import last_gate_decision
from recsys.training import RetrainInProgressError
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import Job, LiveModelInfo, RetrainStarted

bp = Blueprint("admin", __name__)


@bp.post("/admin/retrain")
@operation(
    "Start a retrain in the background", (202, RetrainStarted), errors=[409, 415], tags=["admin"]
)
@requires("admin")
def retrain():
    try:
        job = runtime().jobs.submit(trigger="api")
    except RetrainInProgressError as exc:
        raise ApiError(409, "retrain_in_progress", str(exc)) from None
    body = {
        "job_id": job.id,
        "state": job.state.value,
        "status_url": url_for("admin.job_status", job_id=job.id),
    }
    return jsonify(body), 202, {"Location": body["status_url"]}


@bp.get("/admin/jobs/<job_id>")
@operation("A training job's state, times and metrics", (200, Job), errors=[404], tags=["admin"])
@requires("admin")
def job_status(job_id: str):
    job = runtime().jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no training job {quote(job_id)}")
    return jsonify(job.to_dict())


@bp.get("/model")
@operation(
    "The live model version, and the quality gate's last decision",
    (200, LiveModelInfo),
    tags=["admin"],
)
@requires("admin")
def live_model():
    serving = runtime()
    meta = serving.service.metadata
    return jsonify(
        {
            "version": meta.version,
            "model_type": meta.model_type,
            "params": meta.params,
            "trained_at": meta.trained_at,
            "data_fingerprint": meta.data_fingerprint,
            "metrics": meta.metrics,
            "training": meta.training,
            "fallback_type": meta.fallback_type,
            "selected_by": meta.selected_by,
            **({"selection": meta.selection} if meta.selection else {}),
            "gate": meta.gate or None,
            "last_gate_decision": last_gate_decision(serving.registry),
        }
    )
