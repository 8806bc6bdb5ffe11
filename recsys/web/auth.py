"""Who may call what: API keys and roles, checked before every request.

Each view declares the role it needs with ``@requires(ROLE)``; the few
endpoints that answer anyone are listed in ``OPEN_PATHS``. One check before
every view (``check_api_key``, run by ``request_hooks``) applies both: a
missing key is 401 ``missing_api_key``, an unknown one 401 ``invalid_api_key``
(both with ``WWW-Authenticate: ApiKey``), a key without the role 403
``forbidden``. With no key configured the service is open and the check lets
everything through.
An endpoint that declares nothing needs ``admin`` (and a test walks the URL
map so that none is left undeclared).

Keys travel only in the ``X-API-Key`` header, never in the URL, so access logs
never see them; no message here repeats what was presented. A browser cannot
add a header to a page load, so the dashboard's pages (and only they, marked
``@accepts_key_cookie``) also take the key from the ``recsys_key`` cookie that
its sign-in sets (``recsys.web.dashboard``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Request, current_app, g, request

from recsys.config.api_keys import ADMIN, ROLES, ApiKey, KeyRing
from recsys.web.context import settings_of
from recsys.web.errors import ApiError

API_KEY_HEADER = "X-API-Key"
# Answer without a key: probes, and the documentation and metrics to come.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/<asset>"}
    # The dashboard's sign-in (it checks the key it is given) and its CSS and script.
    | {"/dashboard/session", "/dashboard/static/<path:filename>"}
)
# ... except /metrics when RECSYS_METRICS_OPEN is off.
METRICS_PATH = "/metrics"
# Content types a browser form (or a no-CORS fetch) can send cross-site.
FORM_MIMETYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)

_ROLE_ATTRIBUTE = "required_role"
# Where an app keeps each route's role, by the route's path and endpoint (``endpoint_role``).
_ROUTE_ROLES_KEY = "recsys.route_roles"
KEY_COOKIE = "recsys_key"
_COOKIE_ATTRIBUTE = "accepts_key_cookie"
View = TypeVar("View", bound=Callable[..., Any])


def requires(role: str) -> Callable[[View], View]:
    """Declare the role a view needs; the view itself is returned unchanged.

    Args:
        role: One of ``read``, ``ingest``, ``admin``.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    def declare(view: View) -> View:
        setattr(view, _ROLE_ATTRIBUTE, role)
        return view

    return declare


def accepts_key_cookie(view: View) -> View:
    """Let a browser page take the key from the ``KEY_COOKIE`` cookie when no header has one."""
    setattr(view, _COOKIE_ATTRIBUTE, True)
    return view


def presented_key() -> str:
    """Return the key the current request presents: its header, else a page's cookie."""
    key = request.headers.get(API_KEY_HEADER, "")
    if key:
        return key
    view = current_app.view_functions.get(request.endpoint or "")
    return request.cookies.get(KEY_COOKIE, "") if getattr(view, _COOKIE_ATTRIBUTE, False) else ""


def declared_role(view: Callable[..., Any] | None) -> str | None:
    """Return the role a view declared with ``@requires``, or None."""
    return getattr(view, _ROLE_ATTRIBUTE, None)


def required_role(path: str, view: Callable[..., Any] | None, metrics_open: bool) -> str | None:
    """Return the role a request to this route needs, or None when it is open.

    Args:
        path: The route's rule (``/admin/jobs/<job_id>``), as in ``OPEN_PATHS``.
        view: Its view function.
        metrics_open: ``RECSYS_METRICS_OPEN``.
    """
    if path in OPEN_PATHS:
        return ADMIN if path == METRICS_PATH and not metrics_open else None
    # Undeclared means admin: a forgotten decorator closes an endpoint, never opens it.
    return declared_role(view) or ADMIN


def endpoint_role() -> str | None:
    """Return the role the current request's route needs (None: open or no route).

    Found once per route and app: the key check and the rate limiter ask on
    every request, and a route's view and path never change once it serves.
    """
    rule = request.url_rule
    if rule is None:
        return None
    roles = current_app.extensions.setdefault(_ROUTE_ROLES_KEY, {})
    route = (rule.rule, rule.endpoint)
    try:
        return roles[route]
    except KeyError:
        view = current_app.view_functions.get(rule.endpoint or "")
        role = required_role(rule.rule, view, settings_of(current_app).security.metrics_open)
        roles[route] = role
        return role


def authenticated_key() -> ApiKey | None:
    """Return the key the current request was let in with, if it needed one."""
    return g.get("api_key")


def check_api_key(request: Request) -> None:
    """Let the request through or raise the 401/403 ``ApiError`` that refuses it.

    Args:
        request: The request being handled (the current one: the helpers read it too).
    """
    if request.url_rule is None:
        return  # an unknown path or method: the routing error answers
    keys: KeyRing = settings_of(current_app).security.api_keys
    if not keys:
        return  # no keys configured: the service is open
    role = endpoint_role()
    if role is None:
        return
    presented = presented_key()
    if not presented:
        raise ApiError(
            401,
            "missing_api_key",
            f"this endpoint needs an API key in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    key = keys.authenticate(presented)
    if key is None:
        raise ApiError(
            401,
            "invalid_api_key",
            f"the key in the {API_KEY_HEADER} header is not a configured API key",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    if not key.allows(role):
        raise ApiError(
            403,
            "forbidden",
            f"{request.method} {readable_rule(request.url_rule.rule)} needs an API key with "
            f"the {role!r} role; "
            f"this key has {', '.join(key.roles)}",
        )
    g.api_key = key


_CONVERTER = re.compile(r"<(?:[^<>:]*:)?(\w+)>")


def readable_rule(rule: str) -> str:
    """Return a route's rule as the docs write it: ``/users/<user_id>``, no converter."""
    return _CONVERTER.sub(r"<\1>", rule)


def refuse_form_posts(request: Request) -> None:
    """Refuse bodies a cross-site HTML form could send: every endpoint takes JSON or nothing.

    A page on another site can make a browser POST a form (or text/plain)
    here without asking; any other content type needs a CORS preflight,
    which this service never grants. So refusing these three types keeps
    other sites from triggering writes, even when the service runs open.

    Args:
        request: The request being handled.
    """
    if request.url_rule is None:
        return
    if request.method == "POST" and request.mimetype in FORM_MIMETYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send JSON (Content-Type: application/json); form and text bodies are refused",
        )
