"""The OpenAPI document, made from the views by spectree, and the Swagger UI that shows it.

Each view declares its shapes with ``@operation(...)`` (pydantic models from
``recsys.web.schemas``). For the endpoints written with this module the same
query model also parses the request (``validate=True``): parameters are
checked for repeats and emptiness as ``recsys.web.query_params`` does, then by the
model, and a failure is the usual JSON error naming the parameter and what it
accepts. The older endpoints keep their own parsing and are only described.

Security comes from the views' ``@requires`` roles, read when the document is
built, so the document cannot disagree with what ``recsys.web.auth`` enforces.
``/openapi.json`` and ``/docs`` (Swagger UI, its files served from the
``swagger-ui-py`` package, nothing from a CDN) answer without a key.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, abort, current_app, jsonify, request, send_from_directory
from pydantic import BaseModel, ValidationError
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import InType, SecureType

from recsys.config.api_keys import ADMIN
from recsys.errors import quote
from recsys.web.auth import API_KEY_HEADER, required_role
from recsys.web.context import settings_of
from recsys.web.errors import ApiError
from recsys.web.query_params import single_value
from recsys.web.schemas import NAME_PATTERN, TEXT_PATTERN, ErrorBody

API_VERSION = "0.1.0"
SECURITY_SCHEME = "ApiKey"
_DOCUMENT_KEY = "recsys.openapi"
Model = TypeVar("Model", bound=BaseModel)
_SUMMARY_ATTRIBUTE = "openapi_summary"

api = SpecTree(
    "flask",
    mode="strict",  # only views declared with @operation
    annotations=False,  # views take the parsed query from @operation, not from spectree
    title="Recommendation service",
    version=API_VERSION,
    description=(
        "Personal product lists, the catalog and users' histories. Errors are "
        '`{"error": {"code", "message"}}`. Every endpoint but the probes and this '
        f"documentation needs an API key in the `{API_KEY_HEADER}` header, with the role "
        "each operation names (`admin` includes `read` and `ingest`). Query parameters an "
        "operation does not name are ignored; one it names may be given once. Bodies are "
        "JSON in UTF-8 (no byte order mark, no `Content-Encoding`), at most 8 levels deep, "
        "with finite numbers (never NaN or Infinity; 8027.0 is the integer 8027). No text, "
        "in a body, a path or a query, may hold a control character (U+0000-U+001F, "
        "U+007F-U+009F). Answers are `Cache-Control: no-store` unless they say otherwise."
    ),
    # Components are named by their class (recsys.web.schemas keeps the names unique).
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    validation_error_status=400,
    validation_error_model=ErrorBody,
    security_schemes=[
        SecurityScheme(
            name=SECURITY_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.API_KEY,
                name=API_KEY_HEADER,
                field_in=InType.HEADER,
                description="a key from `flask --app app create-key --role ROLE`",
            ),
        )
    ],
)

_ERROR_TEXT = {
    400: "a parameter or the body is invalid",
    401: "no API key, or one that is not configured (`WWW-Authenticate: ApiKey`)",
    403: "the key lacks the role this operation needs",
    404: "not found",
    409: "conflict",
    413: "the body is longer than the service accepts (INGEST_MAX_BYTES)",
    415: "the body is not JSON",
    422: "the body names a product not in the catalog",
    429: "over the rate limit (`Retry-After`)",
    503: "the event store is unavailable or no model is published yet (`Retry-After`)",
}


def operation(
    summary: str,
    ok: tuple[int, type[BaseModel] | None],
    *,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    validate: bool = False,
    tags: Iterable[str] = (),
    extra: dict[int, type[BaseModel]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Describe a view in the OpenAPI document; with ``validate``, parse its query by the model.

    Args:
        summary: One line on what the operation does.
        ok: The success status and its body model.
        query: The query parameters' model.
        body: The JSON body's model (documented; the view validates the body itself).
        errors: Error statuses besides 400 and the key checks (404, 409, ...).
            503 is listed for every operation, since any may meet a store outage.
        validate: Parse the query with ``query`` and pass it to the view as ``query``.
        tags: Groups in the document.
        extra: More statuses with their own body models (``/readyz``'s 503).
    """
    document = api.validate(
        query=query,
        json=body,
        resp=_responses(ok, errors, extra or {}),
        tags=tuple(tags),
        skip_validation=True,  # requests are parsed below; answers are checked by the tests
    )

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if validate and query is not None:
            model_class = query
            inner = view

            @functools.wraps(inner)
            def view(*args: Any, **kwargs: Any) -> Any:
                return inner(*args, query=parsed_query(model_class), **kwargs)

        documented = document(view)
        setattr(documented, _SUMMARY_ATTRIBUTE, summary)

        # spectree's wrapper would take the view's answer apart and build it
        # again on every request, validating nothing (requests are parsed
        # above, answers checked by the tests). The route calls the view
        # itself; spectree finds the operation through ``__wrapped__``.
        @functools.wraps(view)
        def direct(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        direct.__wrapped__ = documented
        setattr(direct, _SUMMARY_ATTRIBUTE, summary)
        return direct

    return decorate


def _responses(
    ok: tuple[int, type[BaseModel] | None],
    errors: Iterable[int],
    extra: dict[int, type[BaseModel]],
) -> Response:
    """Return an operation's documented answers: success, its errors (503 always), extras."""
    status, model = ok
    responses: dict[str, Any] = {f"HTTP_{status}": model}
    for code in (*errors, 503):
        responses[f"HTTP_{code}"] = (ErrorBody, _ERROR_TEXT[code])
    for code, extra_model in extra.items():
        responses[f"HTTP_{code}"] = extra_model
    return Response(**responses)


def parsed_query(model: type[Model]) -> Model:
    """Return the request's query parameters parsed by a model.

    Each field is taken once (``duplicate_parameter`` otherwise), never empty,
    and required fields must be there (``missing_parameter``); then the model
    checks types and bounds (``invalid_parameter`` with what is accepted).
    Parameters the model does not name are ignored.

    Raises:
        ApiError: 400 naming the first parameter at fault.
    """
    values: dict[str, str] = {}
    for name, field in model.model_fields.items():
        value = single_value(request.args, name, required=field.is_required())
        if value is not None:
            values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        name = str(exc.errors()[0]["loc"][0])
        raise ApiError(
            400, "invalid_parameter", f"{accepted(model, name)}, got {quote(values[name])}"
        ) from None


def accepted(model: type[BaseModel], name: str) -> str:
    """Return what a parameter accepts, in words, from the model's JSON schema."""
    schema = model.model_json_schema()["properties"][name]
    schema = next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)
    if schema.get("type") == "integer":
        return f"{name} must be an integer from {schema['minimum']} to {schema['maximum']}"
    if schema.get("type") == "number":
        return f"{name} must be a number from {schema['minimum']} to {schema['maximum']}"
    if "maxLength" in schema:
        text = f"{name} must be a string of 1 to {schema['maxLength']} characters"
        if schema.get("pattern") == NAME_PATTERN:
            return f"{text}, not all white space, without control characters"
        if schema.get("pattern") == TEXT_PATTERN:
            return f"{text} without control characters"
        return text
    if "pattern" in schema:
        return f"{name} must be the next value of a previous page"
    return f"{name} is invalid"  # pragma: no cover - every parameter has a rule above


# -- the document and the docs page ----------------------------------------------------------

bp = Blueprint("openapi", __name__)

# The Swagger UI files the page loads, from the swagger-ui-py package. Found
# without importing the package, whose handlers import other frameworks' code.
_SWAGGER_SPEC = importlib.util.find_spec("swagger_ui")
assert _SWAGGER_SPEC is not None and _SWAGGER_SPEC.submodule_search_locations
SWAGGER_UI_DIR = Path(next(iter(_SWAGGER_SPEC.submodule_search_locations))) / "static"
DOCS_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
)


def _script_hash(page: str) -> str:
    """Return the CSP source that allows the page's one inline script."""
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Recommendation service API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document(current_app))


# The page runs the bundle's script and its own start-up script (by hash),
# loads everything else from here, and may not be framed.
_DOCS_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    f"script-src 'self' '{_script_hash(_DOCS_PAGE)}'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/docs")
def docs():
    response = current_app.response_class(_DOCS_PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _DOCS_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.get("/docs/<asset>")
def docs_asset(asset: str):
    if asset not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(SWAGGER_UI_DIR, asset, max_age=86_400)


def document(app: Flask) -> dict[str, Any]:
    """Return the app's OpenAPI document (built once per app)."""
    built = app.extensions.get(_DOCUMENT_KEY)
    if built is None:
        built = _with_roles(copy.deepcopy(api.spec), app)
        app.extensions[_DOCUMENT_KEY] = built
    return built


def _with_roles(spec: dict[str, Any], app: Flask) -> dict[str, Any]:
    """Mark each operation's security and role as ``recsys.web.auth`` enforces them.

    Also sets each operation's summary and gives integer path ids their real range.
    """
    spec["security"] = []
    for rule in app.url_map.iter_rules():
        path, _ = api.backend.parse_path(rule, None)
        operations = spec["paths"].get(path, {})
        view = app.view_functions[rule.endpoint]
        role = required_role(rule.rule, view, settings_of(app).security.metrics_open)
        for method in rule.methods or ():
            op = operations.get(method.lower())
            if op is None:
                continue
            op["summary"] = getattr(view, _SUMMARY_ATTRIBUTE, op["summary"])
            for parameter in op["parameters"]:
                if parameter["in"] != "path":
                    continue
                if parameter["schema"].get("type") == "integer":
                    parameter["schema"]["format"] = "int64"  # spectree says int32 for <int:...>
                elif parameter["schema"].get("type") == "string":
                    # recsys.web.query_params refuses control characters in every path part.
                    parameter["schema"]["pattern"] = TEXT_PATTERN
            if role is None:
                op["security"] = []
                continue
            op["security"] = [{SECURITY_SCHEME: []}]
            op["x-required-role"] = role
            also = "" if role == ADMIN else " (or `admin`)"
            op["description"] = (
                f"{op.get('description') or ''}\n\nNeeds an API key with the `{role}` role{also}."
            ).strip()
            for code in (401, 403, 429):
                op["responses"][str(code)] = {
                    "description": _ERROR_TEXT[code],
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                }
    return spec


def init_app(app: Flask) -> None:
    """Serve /openapi.json, /docs and the page's files."""
    app.register_blueprint(bp)
