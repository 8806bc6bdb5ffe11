"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from recsys.web import params
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.openapi import operation
from recsys.web.schemas import ListLengthQuery, PopularProducts, Recommendations, RecommendQuery

bp = Blueprint("recommend", __name__)


@bp.get("/recommend")
@operation(
    "A user's personal product list",
    (200, Recommendations),
    query=RecommendQuery,
    tags=["recommend"],
)
@requires("read")
def recommend():
    user_id = params.user_id(request.args)
    n = params.list_length(request.args)
    explain = params.flag(request.args, "explain")
    diversity = params.fraction(request.args, "diversity")
    # Through the running A/B test's variant when there is one; else the service itself.
    answer = runtime().experiments.recommend(user_id, n, explain=explain, diversity=diversity)
    return jsonify(answer.to_dict())


@bp.get("/popular")
@operation(
    "The most-clicked products", (200, PopularProducts), query=ListLengthQuery, tags=["recommend"]
)
@requires("read")
def popular():
    n = params.list_length(request.args)
    items = runtime().service.popular(n)
    return jsonify({"strategy": "popular", "recommendations": [i.to_dict() for i in items]})
