"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

import threading

from cachetools import LRUCache
from flask import Blueprint, current_app, jsonify, request

from recsys.serving.service import NO_FILTER, AnswerKey, ListFilter, answer_key
from recsys.web import params
from recsys.web.auth import requires
from recsys.web.context import runtime
from recsys.web.openapi import operation
from recsys.web.schemas import ListLengthQuery, PopularProducts, Recommendations, RecommendQuery

bp = Blueprint("recommend", __name__)

# What each recent query string asked for, as kept answers name it. Parsing is
# a pure function of the string, and shops repeat their requests (a user's
# page, their standing exclusion list): a repeated one is looked up among the
# kept answers without parsing its parameters again. Least recently used out
# first; strings past _MEMO_CHARS are parsed every time (bounded memory: a
# few KiB an entry at most).
_MEMO_ENTRIES = 10_000
_MEMO_CHARS = 2_048
_known_queries: LRUCache[bytes, AnswerKey] = LRUCache(maxsize=_MEMO_ENTRIES)
_known_queries_lock = threading.Lock()


@bp.get("/recommend")
@operation(
    "A user's personal product list",
    (200, Recommendations),
    query=RecommendQuery,
    tags=["recommend"],
)
@requires("read")
def recommend():
    query = request.query_string
    # Only announced invalidations let a kept answer be trusted before parsing.
    memo = runtime().service.invalidations is not None and len(query) <= _MEMO_CHARS
    known = None
    if memo:
        with _known_queries_lock:
            known = _known_queries.get(query)
    if known is not None:
        kept = runtime().experiments.kept_answer(known)
        if kept is not None:
            return current_app.response_class(kept.json_body, mimetype="application/json")
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
    if memo and known is None and not explain and diversity == 0:
        with _known_queries_lock:
            _known_queries[query] = answer_key(user_id, n, offset, filters)
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
