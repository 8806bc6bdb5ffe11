"""GET /similar: products like a given one, from the live model."""

from __future__ import annotations

from flask import Blueprint, jsonify

from recsys.online import UnknownProductError, similar_products
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import SimilarProducts, SimilarQuery

bp = Blueprint("similar", __name__)


@bp.get("/similar")
@operation(
    "Products like a given one",
    (200, SimilarProducts),
    query=SimilarQuery,
    errors=[404],
    validate=True,
    tags=["recommend"],
)
@requires("read")
def similar(query: SimilarQuery):
    version = runtime().service.live.current()
    try:
        answer = similar_products(version, query.product_id, query.n)
    except UnknownProductError as exc:
        raise ApiError(404, "unknown_product", str(exc)) from None
    return jsonify(answer.to_dict())
