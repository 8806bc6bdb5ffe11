"""Read endpoints: /recommend, /popular and /healthz."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request

from recsys.api import params

bp = Blueprint("recommend", __name__)


def _service():
    return current_app.extensions["recsys.service"]


@bp.get("/recommend")
def recommend():
    user_id = params.user_id(request.args)
    n = params.list_length(request.args)
    return jsonify(_service().recommend(user_id, n).to_dict())


@bp.get("/popular")
def popular():
    n = params.list_length(request.args)
    items = _service().popular(n)
    return jsonify({"strategy": "popular", "recommendations": [asdict(i) for i in items]})


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})
