"""Read endpoints: /recommend and /popular."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from recsys.online import NO_FILTER, ListFilter, RecommendRequest
from recsys.web import query_params
from recsys.web.auth import requires
from recsys.web.context import runtime, runtime_of, settings_of
from recsys.web.openapi import operation
from recsys.web.schemas import ListLengthQuery, PopularProducts, Recommendations, RecommendQuery

bp = Blueprint("recommend", __name__)

MEMO_KEY = "recsys.query_memo"


class QueryMemo:
    """What each recent /recommend query string asked for, parsed.

    Parsing is a pure function of the string, and shops repeat their requests
    (a user's page, their standing exclusion list): a repeated one is not
    parsed again. Strings are held as 16-byte BLAKE2 digests; the least
    recently used go first once the entries weigh ``max_weight``, a request
    weighing 1 plus one per hundred excluded ids: a shop's standing list of a
    hundred ids stays memoised beside the plain request of every active user
    (weighed by a tenth of its ids, such lists pushed each other out, and each
    was parsed again on every request: 1.28x the CPU of a plain cached answer
    at 10,000 users, against 1.08x), while a list of 1,000 ids still weighs
    what eleven plain requests do.
    """

    def __init__(self, max_weight: int):
        # Most recently used last (cachetools' LRUCache took 2.2 us a hit, this 0.6).
        self._requests: OrderedDict[bytes, RecommendRequest] = OrderedDict()
        self._max_weight = max_weight
        self._weight = 0
        self._lock = threading.Lock()

    @staticmethod
    def digest(query: bytes) -> bytes:
        return hashlib.blake2b(query, digest_size=16).digest()

    def get(self, digest: bytes) -> RecommendRequest | None:
        with self._lock:
            parsed = self._requests.get(digest)
            if parsed is not None:
                self._requests.move_to_end(digest)
            return parsed

    def put(self, digest: bytes, parsed: RecommendRequest) -> None:
        weight = _weight(parsed)
        if weight > self._max_weight:
            return  # heavier than the whole memo: parsed again each time
        with self._lock:
            requests = self._requests
            replaced = requests.pop(digest, None)
            if replaced is not None:
                self._weight -= _weight(replaced)
            requests[digest] = parsed
            self._weight += weight
            while self._weight > self._max_weight:
                self._weight -= _weight(requests.popitem(last=False)[1])


def _weight(parsed: RecommendRequest) -> int:
    return 1 + len(parsed.filters.exclude) // 100


def init_app(app: Flask) -> None:
    """Register the read endpoints, with a query memo as large as the cached answers."""
    # Plain answers and those with an exclusion list are cached apart, up to
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
    # One look-up through the proxy, used thrice (werkzeug's documented way to unwrap it).
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    memo: QueryMemo = app.extensions[MEMO_KEY]
    query = QueryMemo.digest(request.query_string)
    parsed = memo.get(query)
    if parsed is None:
        parsed = _parse(request.args)
        memo.put(query, parsed)
    # Through the running A/B test's variant when there is one; else the live model's pipeline.
    answer = runtime_of(app).experiments.recommend(parsed)
    # The answer encodes itself once: a cached one is served as it was. (A
    # content type, unlike a mimetype, is not checked for a charset to add.)
    return app.response_class(answer.json_body, content_type="application/json")


def _parse(args: MultiDict) -> RecommendRequest:
    """Return what a /recommend query asks for (400 naming the first bad parameter)."""
    user_id = query_params.user_id(args)
    n = query_params.list_length(args)
    filters = NO_FILTER
    if len(args) > 1:  # only user_id: the common request skips the optional parameters
        explain = query_params.flag(args, "explain")
        diversity = query_params.fraction(args, "diversity")
        offset = query_params.offset(args, n)
        filters = ListFilter(
            categories=query_params.categories(args),
            exclude=query_params.product_id_list(args, "exclude"),
            include_purchased=query_params.flag(args, "include_purchased"),
        )
    else:
        explain, diversity, offset = False, 0.0, 0
    return RecommendRequest(user_id, n, offset, filters, explain, diversity)


@bp.get("/popular")
@operation(
    "The most-clicked products", (200, PopularProducts), query=ListLengthQuery, tags=["recommend"]
)
@requires("read")
def popular():
    n = query_params.list_length(request.args)
    items = runtime().service.popular(n)
    return jsonify({"strategy": "popular", "recommendations": [i.to_dict() for i in items]})
