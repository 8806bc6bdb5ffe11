"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from recsys.serving.service import NO_FILTER, ListFilter
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
    args = request.args
    user_id = params.user_id(args)
    n = params.list_length(args)
    filters = NO_FILTER
    if len(args) > 1:  # only user_id: the common request skips the optional parameters
        explain = params.flag(args, "explain")
        diversity = params.fraction(args, "diversity")
        offset = params.offset(args, n)
        filters = ListFilter.of(
            params.categories(args),
            params.product_id_list(args, "exclude"),
            params.flag(args, "include_purchased"),
        )
    else:
        explain, diversity, offset = False, 0.0, 0
    # Through the running A/B test's variant when there is one; else the service itself.
    answer = runtime().experiments.recommend(
        user_id, n, offset=offset, filters=filters, explain=explain, diversity=diversity
    )
    # The answer encodes itself once: a kept one is served as it was.
    return current_app.response_class(answer.json_body, mimetype="application/json")


@bp.get("/popular")
@operation(
    "The most-clicked products", (200, PopularProducts), query=ListLengthQuery, tags=["recommend"]
)
@requires("read")
def popular():
    n = params.list_length(request.args)
    items = runtime().service.popular(n)
    return jsonify({"strategy": "popular", "recommendations": [i.to_dict() for i in items]})
