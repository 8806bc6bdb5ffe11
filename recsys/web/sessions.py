"""POST /recommend/session: a list for an anonymous visitor from the products of their session."""

from __future__ import annotations

from flask import Blueprint, current_app
from pydantic import ValidationError

from recsys.online import ListFilter, RecommendRequest
from recsys.web.auth import requires
from recsys.web.bodies import json_body
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import MAX_LIST_END, SessionBody, SessionRecommendations

bp = Blueprint("sessions", __name__)


@bp.post("/recommend/session")
@operation(
    "A list for an anonymous session, from its products alone (nothing is written)",
    (200, SessionRecommendations),
    body=SessionBody,
    errors=[413, 415, 422],
    tags=["recommend"],
)
@requires("read")
def recommend_session():
    session = _parse(json_body("the session"))
    service = runtime().service
    unknown = service.live.current().unknown_products(session.items)
    if unknown:
        index = session.items.index(unknown[0])
        raise ApiError(
            422,
            "unknown_product",
            f"items[{index}]: product_id {unknown[0]} is not in the catalog"
            + (f" ({len(unknown)} unknown in all)" if len(unknown) > 1 else ""),
        )
    request = RecommendRequest(
        None,
        session.n,
        session.offset,
        ListFilter(frozenset(session.category), frozenset(session.exclude)),
        session.explain,
        session.diversity,
    )
    answer = service.recommend_session(session.items, request)
    return current_app.response_class(answer.json_body, mimetype="application/json")


def _parse(body: object) -> SessionBody:
    """Return the session a body describes (400 naming the first field at fault)."""
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_body",
            'send one object: {"items": [product ids, most recent last], "n": 5}',
        )
    try:
        session = SessionBody.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        raise ApiError(400, "invalid_parameter", f"{where}: {error['msg']}") from None
    if session.offset + session.n > MAX_LIST_END:
        raise ApiError(
            400,
            "invalid_parameter",
            f"offset + n must be at most {MAX_LIST_END}, got {session.offset} + {session.n}",
        )
    return session
