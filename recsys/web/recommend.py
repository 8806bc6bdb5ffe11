"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

import hashlib
import threading

from cachetools import LRUCache
from flask import Blueprint, Flask, current_app, jsonify, request

from recsys.serving.service import NO_FILTER, AnswerKey, ListFilter, answer_key
from recsys.web import params
from recsys.web.auth import requires
from recsys.web.context import runtime, settings_of
from recsys.web.openapi import operation
from recsys.web.schemas import ListLengthQuery, PopularProducts, Recommendations, RecommendQuery

bp = Blueprint("recommend", __name__)

MEMO_KEY = "recsys.query_memo"


class QueryMemo:
    """What each recent /recommend query string asked for, as kept answers name it.

    Parsing is a pure function of the string, and shops repeat their requests
    (a user's page, their standing exclusion list): a repeated one is looked
    up among the kept answers without parsing its parameters again. Strings
    are held as 16-byte BLAKE2 digests, so an entry costs the same whatever
    the exclusion list's length; the least recently used go first.
    """

    def __init__(self, max_entries: int):
        self._keys: LRUCache[bytes, AnswerKey] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()

    @staticmethod
    def digest(query: bytes) -> bytes:
        return hashlib.blake2b(query, digest_size=16).digest()

    def get(self, digest: bytes) -> AnswerKey | None:
        with self._lock:
            return self._keys.get(digest)

    def put(self, digest: bytes, key: AnswerKey) -> None:
        with self._lock:
            self._keys[digest] = key


def init_app(app: Flask) -> None:
    """Register the read endpoints, with a query memo as large as the kept answers."""
    # Plain answers and those with an exclusion list are kept apart, up to
    # CACHE_MAX_ENTRIES each: a memo entry for each of them.
    app.extensions[MEMO_KEY] = QueryMemo(2 * settings_of(app).cache.max_entries)
    app.register_blueprint(bp)


@bp.get("/recommend")
@operation(
    "A user's personal product list",
    (200, Recommendations),
    query=RecommendQuery,
    tags=["recommend"],
)
@requires("read")
def recommend():
    # Only announced invalidations let a kept answer be trusted before parsing.
    memo: QueryMemo | None = None
    known = None
    if runtime().service.invalidations is not None:
        memo = current_app.extensions[MEMO_KEY]
        query = QueryMemo.digest(request.query_string)
        known = memo.get(query)
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
        filters = ListFilter(
            categories=params.categories(args),
            exclude=params.product_id_list(args, "exclude"),
            include_purchased=params.flag(args, "include_purchased"),
        )
    else:
        explain, diversity, offset = False, 0.0, 0
    # Through the running A/B test's variant when there is one; else the service itself.
    answer = runtime().experiments.recommend(
        user_id, n, offset=offset, filters=filters, explain=explain, diversity=diversity
    )
    if memo is not None and known is None and not explain and diversity == 0:
        memo.put(query, answer_key(user_id, n, offset, filters))
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
