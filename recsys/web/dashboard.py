"""The dashboard (``GET /``), its charts and sign-in, and ``GET /stats``.

Server-rendered Jinja templates (``recsys/web/templates``); the stylesheet and
the sign-in script come from ``recsys/web/static``, so the page loads nothing
from elsewhere (its Content-Security-Policy says ``'self'`` only).

Keys. The API reads keys from the ``X-API-Key`` header only, which a browser
cannot add to a page load. With keys configured, the dashboard asks for one:
its sign-in form sends it as JSON to ``POST /dashboard/session``, which checks
it (it must hold ``read``) and sets it as the ``recsys_key`` cookie:
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it), ``Secure`` over HTTPS, for ``SESSION_HOURS``. Only the dashboard's
own pages accept that cookie (``@accepts_key_cookie``), and they only read,
so another site can neither use it for a write nor sign a browser in (JSON
needs a CORS preflight that is never granted). Keys are never put in a URL
(``?api_key=`` would land in access logs, browser history and Referer
headers). The cookie holds the key itself, not a session id: servers keep no
session state and share no secret, and removing a key from
``RECSYS_API_KEYS`` signs out every browser that holds it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
)

from recsys.config.api_keys import READ, KeyRing
from recsys.data.charts import CHARTS
from recsys.data.interactions import MAX_ID
from recsys.errors import quote
from recsys.online import NoLiveModelError, UnknownProductError, similar_products
from recsys.runtime import (
    StoreStats,
    last_gate_decision,
    live_model_summary,
    lookup_user,
    running_experiment_report,
    stats,
)
from recsys.store.engine import STORE_OUTAGES
from recsys.web import query_params
from recsys.web.auth import KEY_COOKIE, accepts_key_cookie, requires
from recsys.web.bodies import json_body
from recsys.web.context import runtime, settings_of
from recsys.web.errors import ApiError, handle_store_outage
from recsys.web.openapi import operation
from recsys.web.schemas import Stats

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

SESSION_HOURS = 8
_STATS_KEY = "recsys.store_stats"
# The page may load its own files and nothing else, and may not be framed.
_PAGE_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_MAX_KEY_CHARS = 200


def store_stats() -> StoreStats:
    """Return this app's cached store figures (one per process)."""
    found = current_app.extensions.get(_STATS_KEY)
    if found is None:
        found = current_app.extensions.setdefault(_STATS_KEY, StoreStats(runtime().store))
    return found


@bp.get("/")
@requires("read")
@accepts_key_cookie
def dashboard():
    serving = runtime()
    snapshot = store_stats().snapshot()
    context: dict[str, Any] = {
        "snapshot": snapshot,
        "summary": snapshot.summary,
        "model": live_model_summary(serving.service),
        "gate": last_gate_decision(serving.registry),
        "experiment": running_experiment_report(serving),
        "signed_in": bool(request.cookies.get(KEY_COOKIE)),
        "user_query": request.args.get("user_id", ""),
        "product_query": request.args.get("product_id", ""),
        "chart_specs": CHARTS,
    }
    status = 200
    try:
        if "user_id" in request.args:
            context["user"] = lookup_user(serving, query_params.user_id(request.args))
        if "product_id" in request.args:
            product_id = query_params.bounded_int(request.args, "product_id", 1, MAX_ID)
            version = serving.service.live.current()
            context["similar"] = similar_products(version, product_id, 10)
    except ApiError as exc:
        context["lookup_error"] = exc.message
        status = exc.status
    except UnknownProductError as exc:
        context["lookup_error"] = str(exc)
        status = 404
    except NoLiveModelError:
        context["lookup_error"] = "no model is published yet, so nothing can be recommended"
        status = 503
    return render_template("dashboard.html", **context), status


@bp.get("/dashboard/charts/<name>.png")
@requires("read")
@accepts_key_cookie
def chart(name: str):
    png = store_stats().snapshot().chart(name)
    if png is None:
        raise ApiError(404, "not_found", f"no chart {quote(name)} for the data in the store")
    response = current_app.response_class(png, mimetype="image/png")
    response.headers["Cache-Control"] = f"private, max-age={int(store_stats().ttl_seconds)}"
    return response


@bp.post("/dashboard/session")
def sign_in():
    body = json_body('the key as {"api_key": "..."}')
    key = body.get("api_key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY_CHARS:
        raise ApiError(400, "invalid_body", 'expected {"api_key": "..."} with a non-empty key')
    keys: KeyRing = settings_of(current_app).security.api_keys
    response = make_response("", 204)
    if not keys:
        return response  # the service is open: nothing to remember
    found = keys.authenticate(key)
    if found is None:
        raise ApiError(401, "invalid_api_key", "this is not a configured API key")
    if not found.allows(READ):
        raise ApiError(403, "forbidden", "the dashboard needs a key with the 'read' role")
    response.set_cookie(
        KEY_COOKIE,
        key,
        max_age=timedelta(hours=SESSION_HOURS),
        httponly=True,
        samesite="Strict",
        secure=_over_https(),
    )
    return response


@bp.delete("/dashboard/session")
def sign_out():
    response = make_response("", 204)
    response.delete_cookie(KEY_COOKIE, httponly=True, samesite="Strict", secure=_over_https())
    return response


@bp.get("/stats")
@operation("The dashboard's numbers: data, live model, experiment", (200, Stats), tags=["stats"])
@requires("read")
def stats_json():
    return jsonify(stats(runtime(), store_stats()))


@bp.errorhandler(ApiError)
def refused(exc: ApiError):
    """Show the sign-in page for a page refused for its key; other errors stay JSON."""
    if exc.status not in (401, 403) or request.endpoint not in _PAGES:
        response = jsonify({"error": {"code": exc.code, "message": exc.message}})
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response
    page = render_template(
        "signin.html", code=exc.code, message=exc.message, session_hours=SESSION_HOURS
    )
    return page, exc.status, exc.headers


# A person reloads a page less eagerly than a client retries a call.
_PAGE_RETRY_SECONDS = 5


def store_unavailable(exc: Exception):
    """Show the dashboard page's outage as a page (503, retried); other answers stay JSON."""
    response = handle_store_outage(exc)
    if request.endpoint != "dashboard.dashboard":
        return response
    page = render_template("unavailable.html", retry_seconds=_PAGE_RETRY_SECONDS)
    return page, 503, {"Retry-After": str(_PAGE_RETRY_SECONDS)}


for _outage in STORE_OUTAGES:
    bp.register_error_handler(_outage, store_unavailable)


@bp.after_request
def page_headers(response: Response) -> Response:
    """Keep the pages unframed, self-contained and out of shared caches."""
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = _PAGE_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
    return response


_PAGES = frozenset({"dashboard.dashboard", "dashboard.chart"})


def _over_https() -> bool:
    # Behind a TLS-terminating proxy the request itself is plain HTTP; a forged
    # header could only make the cookie stricter.
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"
