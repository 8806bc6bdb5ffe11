"""Model operations: start a retrain, follow its job, and describe the live model."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, url_for

from recsys.api.errors import ApiError
from recsys.training import RetrainInProgressError

bp = Blueprint("admin", __name__)


def _runtime():
    return current_app.extensions["recsys.runtime"]


@bp.post("/admin/retrain")
def retrain():
    try:
        job = _runtime().jobs.submit(trigger="api")
    except RetrainInProgressError as exc:
        raise ApiError(409, "retrain_in_progress", str(exc)) from None
    body = {"job_id": job.id, "state": job.state.value,
            "status_url": url_for("admin.job_status", job_id=job.id)}
    return jsonify(body), 202, {"Location": body["status_url"]}


@bp.get("/admin/jobs/<job_id>")
def job_status(job_id: str):
    job = _runtime().jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no training job {job_id!r}")
    return jsonify(job.to_dict())


@bp.get("/model")
def live_model():
    meta = _runtime().service.metadata
    return jsonify({
        "version": meta.version,
        "model_type": meta.model_type,
        "params": meta.params,
        "trained_at": meta.trained_at,
        "data_fingerprint": meta.data_fingerprint,
        "metrics": meta.metrics,
        "training": meta.training,
        "fallback_type": meta.fallback_type,
    })
