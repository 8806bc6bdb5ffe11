"""Liveness and readiness: /healthz (the process answers) and /readyz (it can serve)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from recsys.web.openapi import operation
from recsys.web.schemas import Health, Readiness

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation("Liveness: the process answers", (200, Health), tags=["probes"])
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@operation(
    "Readiness: a model is loaded and the database answers",
    (200, Readiness),
    extra={503: Readiness},
    tags=["probes"],
)
def readyz():
    missing = current_app.extensions["recsys.runtime"].check_ready()
    if not missing:
        return jsonify({"status": "ready"})
    # The code names what is missing, as the message does: no_model (an empty
    # store before its first events, or no valid version), no_database, or both.
    absent = " and no ".join(missing)
    # Why the database failed, when it says: a store nobody initialised is told to run init.
    reasons = "".join(f": {why}" for why in missing.values() if why)
    body = {
        "status": "not_ready",
        "missing": list(missing),
        "error": {
            "code": "no_" + absent.replace(" ", "_"),
            "message": f"not ready: no {absent}{reasons}",
        },
    }
    return jsonify(body), 503, {"Retry-After": "5"}
