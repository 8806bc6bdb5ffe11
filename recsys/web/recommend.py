"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, jsonify, request

from recsys.web import params
from recsys.web.context import runtime

bp = Blueprint("recommend", __name__)


@bp.get("/recommend")
def recommend():
    user_id = params.user_id(request.args)
    n = params.list_length(request.args)
    explain = params.flag(request.args, "explain")
    diversity = params.fraction(request.args, "diversity")
    answer = runtime().service.recommend(user_id, n, explain=explain, diversity=diversity)
    return jsonify(answer.to_dict())


@bp.get("/popular")
def popular():
    n = params.list_length(request.args)
    items = runtime().service.popular(n)
    return jsonify({"strategy": "popular", "recommendations": [asdict(i) for i in items]})
