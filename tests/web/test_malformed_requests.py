"""Malformed requests to every endpoint, on both databases: never a 5xx, every error JSON.

The endpoints are read from the app's URL map, so a new one is covered the
day it is added. Each gets control characters and odd numbers in its path
and query, and each that takes a body gets NaN, Infinity, 1e308, NUL and
control characters in its fields, deep nesting, UTF-16, a byte order mark,
gzip and other encodings. Requests carry an admin key, so they reach the
views rather than the key check.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import jsonify

from recsys.config.api_keys import new_key
from tests.builders import AppFactory

ADMIN_KEY, ADMIN = new_key(["admin"])
HEADERS = {"X-API-Key": ADMIN_KEY}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Text for a path part or a query value, percent-encoded as it travels.
BAD_TEXT = ["%00", "a%00b", "%01", "%0A", "%1F", "%7F", "%C2%85", "%FF", "%ED%A0%80", "%20"]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e308", "-1e308", "5e-324", "9" * 30, "0x10"]

# JSON literals put where a body's number goes, and JSON strings where its text goes.
NUMBER_LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e308",
    "-1e308",
    "1e400",
    "5e-324",
    "8027.0",
    "1" + "0" * 30,
    "-0",
]
TEXT_LITERALS = [
    r'"a\u0000b"',
    r'"\u0001"',
    r'"\u007f"',
    r'"\u0085"',
    '"   "',
    r'"\ud800"',
    '"\t"',
]

_NUMBER, _TEXT = "__number__", "__text__"

# Per body endpoint: its body with a number slot and a text slot.
BODIES: dict[tuple[str, str], Callable[[Any, Any], Any]] = {
    ("PUT", "/products"): lambda number, text: [
        {"product_id": 101, "name": text, "category": "Books", "price": number}
    ],
    ("POST", "/interactions"): lambda number, text: {
        "user_id": number,
        "product_id": 1,
        "purchased": 0,
        "timestamp": text,
    },
    ("POST", "/experiments"): lambda number, text: {
        "name": "malformed",
        "baseline_rate": 0.1,
        "mde": number,
        "variants": [
            {"name": "control", "weight": number, "strategy": "champion"},
            {"name": "b", "weight": 1, "strategy": "model", "model": text},
        ],
    },
    ("POST", "/dashboard/session"): lambda number, text: {"api_key": text, "n": number},
    ("POST", "/recommend/session"): lambda number, text: {
        "items": [3, number],
        "category": [text],
    },
}


def _generic_body(number: Any, text: Any) -> Any:
    return {"value": number, "text": text}


def body_text(method: str, rule: str, number: str = "1", text: str = '"x"') -> str:
    """Return an endpoint's JSON body with raw literals in its number and text slots."""
    template = BODIES.get((method, rule), _generic_body)
    encoded = json.dumps(template(_NUMBER, _TEXT))
    return encoded.replace(f'"{_NUMBER}"', number).replace(f'"{_TEXT}"', text)


def whole_body_cases(valid: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Return (name, body, headers) for malformed bodies built around a valid one."""
    json_type = {"Content-Type": "application/json"}
    return [
        ("utf-16", valid.encode("utf-16"), json_type),
        ("utf-16-le", valid.encode("utf-16-le"), json_type),
        ("bom", b"\xef\xbb\xbf" + valid.encode(), json_type),
        (
            "charset-utf-16",
            valid.encode("utf-16"),
            {"Content-Type": "application/json; charset=utf-16"},
        ),
        ("gzip", gzip.compress(valid.encode()), {**json_type, "Content-Encoding": "gzip"}),
        ("deflate", valid.encode(), {**json_type, "Content-Encoding": "deflate"}),
        ("deep-arrays", b"[" * 100_000 + b"]" * 100_000, json_type),
        ("deep-objects", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, json_type),
        ("nine-levels", b"[" * 9 + b"]" * 9, json_type),
        ("invalid-utf-8", valid.encode().replace(b'"x"', b'"\xff"'), json_type),
        ("raw-nul", valid.encode().replace(b'"x"', b'"\x00"'), json_type),
        ("duplicate-key", b'{"a": 1, "a": 2}', json_type),
        ("empty", b"", json_type),
        ("null", b"null", json_type),
        ("truncated", valid.encode()[:-1], json_type),
        ("text-plain", valid.encode(), {"Content-Type": "text/plain"}),
        ("no-content-type", valid.encode(), {}),
    ]


def routes(app) -> list[tuple[str, str]]:
    """Return every (method, rule) the app answers, from its URL map."""
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule))
    return sorted(found)


_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def url(rule: str, value: str | None = None) -> str:
    """Return a URL for a rule: each argument a plausible value, or ``value`` in the first."""
    replaced = []

    def fill(match: re.Match) -> str:
        plain = "1" if match.group(1) == "int" else "x"
        first = not replaced
        replaced.append(match)
        return value if value is not None and first else plain

    return _ARGUMENT.sub(fill, rule)


def documented_query_names(app, method: str, rule: str) -> set[str]:
    """Return the query parameters the OpenAPI document names for an operation."""
    document = app.test_client().get("/openapi.json").get_json()
    path = _ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule)
    operation = document["paths"].get(path, {}).get(method.lower(), {})
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}


def problem(response) -> str | None:
    """Return what breaks the contract in an answer, or None when it keeps it."""
    status = response.status_code
    if status >= 500:
        return f"{status}: {response.get_data(as_text=True)[:200]}"
    if response.mimetype != "application/json":
        # Pages, charts and the docs' files answer in their own types, errors included
        # only when a person should read them (the dashboard's sign-in page).
        if status >= 400 and response.mimetype != "text/html":
            return f"{status} answered as {response.mimetype}"
        return None
    try:
        body = orjson.loads(response.get_data())  # strict: NaN or Infinity fails
    except orjson.JSONDecodeError as exc:
        return f"{status} with invalid JSON ({exc}): {response.get_data()[:200]!r}"
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if not (
            isinstance(error, dict)
            and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)
        ):
            return f"{status} without an error code and message: {body!r}"
    return None


@pytest.fixture
def keyed_app(database_url, tmp_path):
    """Yield a live service with an admin key, over each database."""
    factory = AppFactory(database_url, tmp_path / "models", API_KEYS=ADMIN.config_entry())
    yield factory()
    factory.close()


def requests_for(app, kind: str):
    """Yield (label, request keyword arguments) for one kind of malformed request."""
    for method, rule in routes(app):
        if kind == "path" and "<" in rule:
            for value in [*BAD_TEXT, *BAD_NUMBERS]:
                yield f"{method} {url(rule, value)}", {"method": method, "path": url(rule, value)}
        if kind == "query":
            names = documented_query_names(app, method, rule) | {"user_id", "product_id"}
            for name in sorted(names):
                for value in [*BAD_TEXT, *BAD_NUMBERS]:
                    path = f"{url(rule)}?{name}={value}"
                    yield f"{method} {path}", {"method": method, "path": path}
            path = f"{url(rule)}?%00=1"
            yield f"{method} {path}", {"method": method, "path": path}
        if kind == "body" and method in BODY_METHODS:
            json_type = {"Content-Type": "application/json"}
            for number in NUMBER_LITERALS:
                body = body_text(method, rule, number=number)
                yield (
                    f"{method} {rule} {body}",
                    {
                        "method": method,
                        "path": url(rule),
                        "data": body.encode(),
                        "headers": json_type,
                    },
                )
            for text in TEXT_LITERALS:
                body = body_text(method, rule, text=text)
                yield (
                    f"{method} {rule} {body}",
                    {
                        "method": method,
                        "path": url(rule),
                        "data": body.encode(),
                        "headers": json_type,
                    },
                )
            for name, data, headers in whole_body_cases(body_text(method, rule)):
                yield (
                    f"{method} {rule} ({name})",
                    {
                        "method": method,
                        "path": url(rule),
                        "data": data,
                        "headers": headers,
                    },
                )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["path", "query", "body"])
def test_no_malformed_request_gets_a_server_error_or_an_answer_that_is_not_json(keyed_app, kind):
    client = keyed_app.test_client()
    failures = []
    count = 0
    for label, request in requests_for(keyed_app, kind):
        headers = {**HEADERS, **request.pop("headers", {})}
        response = client.open(headers=headers, **request)
        count += 1
        found = problem(response)
        if found is not None:
            failures.append(f"{label[:160]} -> {found}")
    assert count > 50, "the table reached too few requests to mean anything"
    assert not failures, f"{len(failures)} of {count} requests broke the contract:\n" + "\n".join(
        failures[:40]
    )


def test_every_endpoint_that_takes_a_body_has_a_malformed_body_template(bundled_client):
    document = bundled_client.get("/openapi.json").get_json()
    with_bodies = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    templated = {
        (method, _ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule)) for method, rule in BODIES
    }
    assert with_bodies <= templated


def test_every_body_is_read_by_the_one_bounded_reader():
    # Flask's own reader takes UTF-16, NaN and any depth: only recsys.web.bodies reads bodies.
    package = Path(__file__).resolve().parents[2] / "recsys"
    readers = {
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if re.search(r"\bget_json\(|request\.json\b|request\.get_data\(", path.read_text())
    }
    assert readers == {"recsys/web/bodies.py"}


# -- the requests reported, one by one ------------------------------------------------------------


def _experiment(**variant: Any) -> dict[str, Any]:
    return {
        "name": "weights",
        "baseline_rate": 0.1,
        "mde": 0.02,
        "variants": [
            {"name": "control", "strategy": "champion", **variant},
            {"name": "b", "strategy": "popular"},
        ],
    }


def _json(value: Any) -> dict[str, Any]:
    return {"data": json.dumps(value), "headers": {"Content-Type": "application/json"}}


EVENT = b'{"user_id": 1, "product_id": 1, "purchased": 0}'


def _raw(text: str | bytes, **headers: str) -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    return {"data": data, "headers": {"Content-Type": "application/json", **headers}}


@pytest.mark.parametrize(
    ("method", "path", "request_body", "status", "code"),
    [
        pytest.param(
            "POST", "/experiments",
            _raw(json.dumps(_experiment(weight=1)).replace('"weight": 1', '"weight": Infinity')),
            400, "invalid_json", id="weight-infinity",
        ),
        pytest.param(
            "POST", "/experiments", _json(_experiment(weight=1e308)), 400, "invalid_experiment",
            id="weight-1e308",
        ),
        pytest.param(
            "POST", "/experiments", _json(_experiment(weight=1e-300)), 400, "invalid_experiment",
            id="weight-1e-300",
        ),
        pytest.param(
            "POST", "/experiments", _json({**_experiment(), "mde": 5e-324}), 400,
            "invalid_experiment", id="mde-5e-324",
        ),
        pytest.param(
            "GET", "/products?category=%00", {}, 400, "invalid_parameter", id="category-nul"
        ),
        pytest.param(
            "PUT", "/products",
            _json([{"product_id": 21, "name": "a\u0000b", "category": "c", "price": 1}]),
            400, "invalid_json", id="product-name-nul",
        ),
        pytest.param(
            "PUT", "/products",
            _json([{"product_id": 21, "name": "   ", "category": "c", "price": 1}]),
            400, "invalid_product", id="product-name-blank",
        ),
        pytest.param("GET", "/experiments/%00", {}, 400, "invalid_parameter", id="experiment-nul"),
        pytest.param("GET", "/users//1/history", {}, 404, "not_found", id="doubled-slash"),
        pytest.param("GET", "/products/%2F1", {}, 404, "not_found", id="encoded-slash"),
        pytest.param("GET", "//admin//jobs/1", {}, 404, "not_found", id="doubled-slashes"),
        pytest.param(
            "POST", "/experiments", _json(_experiment(strategy="version", version="v" * 65)), 400,
            "invalid_experiment", id="version-too-long",
        ),
        pytest.param("GET", "/admin/jobs/%00", {}, 400, "invalid_parameter", id="job-nul"),
        pytest.param(
            "POST", "/dashboard/session", _raw("[" * 100_000 + "]" * 100_000), 400, "invalid_json",
            id="session-deeply-nested",
        ),
        pytest.param(
            "POST", "/interactions",
            _raw(EVENT.decode().encode("utf-16")),
            400, "invalid_json", id="utf-16",
        ),
        pytest.param(
            "POST", "/interactions",
            _raw(b"\xef\xbb\xbf" + EVENT),
            400, "invalid_json", id="bom",
        ),
        pytest.param(
            "POST", "/interactions",
            _raw(gzip.compress(EVENT), **{"Content-Encoding": "gzip"}),
            415, "unsupported_media_type", id="gzip",
        ),
        pytest.param(
            "POST", "/interactions",
            _raw(EVENT, **{"Content-Type": "application/json; charset=latin-1"}),
            415, "unsupported_media_type", id="latin-1",
        ),
    ],
)  # fmt: skip
def test_each_reported_malformed_request_is_a_400_family_json_error(
    keyed_app, method, path, request_body, status, code
):
    headers = {**HEADERS, **request_body.get("headers", {})}
    response = keyed_app.test_client().open(
        path, method=method, data=request_body.get("data"), headers=headers
    )
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "request_body"),
    [
        ("GET", "/experiments/" + "a" * 500, {}),
        ("POST", "/experiments/" + "a" * 500 + "/start", _json({})),
        ("POST", "/experiments", _json({**_experiment(), "name": "a" * 500})),
        ("POST", "/experiments", _json({**_experiment(), "metric": "m" * 500})),
        ("POST", "/experiments", _json(_experiment(strategy="model", model="m" * 10_000))),
    ],
)
def test_an_error_message_quotes_at_most_a_hundred_characters_of_what_was_sent(
    keyed_app, method, path, request_body
):
    response = keyed_app.test_client().open(
        path,
        method=method,
        data=request_body.get("data"),
        headers={**HEADERS, **request_body.get("headers", {})},
    )
    assert 400 <= response.status_code < 500
    assert len(response.get_json()["error"]["message"]) < 300


# Query strings as a server hands them over, undecoded: the raw bytes as latin-1 text.
@pytest.mark.parametrize(
    ("raw_query", "status"),
    [
        ("user_id=1&x=\x01", 400),
        ("user_id=1\x7f", 400),
        ("x\x00=1&user_id=1", 400),
        ("user_id=1&x=\xc2\x85", 400),  # U+0085 in UTF-8
        ("user_id=1&x=%01", 400),
        ("user_id=1&x=a+%C2%85", 400),
        ("user_id=1&x=a+b~!*'()$,;:@/?", 200),
        ("user_id=1&x=%C3%A9", 200),
    ],
)
def test_a_query_string_is_refused_exactly_when_its_text_holds_a_control_character(
    bundled_client, raw_query, status
):
    response = bundled_client.get("/recommend", environ_overrides={"QUERY_STRING": raw_query})
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 400:
        assert response.get_json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("method", "path", "request_body", "status"),
    [
        pytest.param(
            "PUT", "/products",
            _raw('[{"product_id": 8027.0, "name": "Atlas", "category": "Books", "price": 3}]'),
            200, id="integral-float-product-id",
        ),
        pytest.param(
            "POST", "/interactions",
            _raw('{"user_id": 17.0, "product_id": 1, "purchased": 1.0}'), 201,
            id="integral-float-event",
        ),
        pytest.param("GET", "/recommend?user_id=17&exclude=0", {}, 200, id="exclude-zero"),
        pytest.param(
            "GET", "/recommend?user_id=17&exclude=9999999999999999999", {}, 200,
            id="exclude-past-int64",
        ),
    ],
)  # fmt: skip
def test_what_the_document_allows_is_accepted(keyed_app, method, path, request_body, status):
    headers = {**HEADERS, **request_body.get("headers", {})}
    response = keyed_app.test_client().open(
        path, method=method, data=request_body.get("data"), headers=headers
    )
    assert response.status_code == status, response.get_data(as_text=True)


def test_an_answer_never_carries_nan_or_infinity(bundled_app):
    with bundled_app.test_request_context():
        body = jsonify({"rate": float("nan"), "lift": [float("inf"), 1.5]}).get_data()
    assert orjson.loads(body) == {"rate": None, "lift": [None, 1.5]}


def test_an_answer_is_the_compact_json_text_flask_writes_with_keys_in_order(bundled_app):
    value = {"z": 1, "caf\u00e9": ["\u2603", 2.5, None, True], "a": {"n": -0.0}}
    with bundled_app.test_request_context():
        body = jsonify(value).get_data(as_text=True)
    assert body == json.dumps(value, separators=(",", ":")) + "\n"
    assert body == '{"z":1,"caf\\u00e9":["\\u2603",2.5,null,true],"a":{"n":-0.0}}\n'


def test_debug_answers_are_indented_as_flask_writes_them(app_factory: AppFactory):
    app = app_factory(init=False)
    app.debug = True
    with app.test_request_context():
        body = jsonify({"b": 1, "a": float("inf")}).get_data(as_text=True)
    assert body == '{\n  "b": 1,\n  "a": null\n}\n'


@pytest.mark.parametrize("path", ["/products/{}", "/users/{}/history"])
@pytest.mark.parametrize(
    ("digits", "meaning"),
    [
        ("%D9%A1", "U+0661, the Arabic-Indic digit one"),
        ("%EF%BC%91", "U+FF11, the full-width digit one"),
        ("%E0%A5%A7", "U+0967, the Devanagari digit one"),
        ("%D9%A1%D9%A7", "17 in Arabic-Indic digits"),
    ],
)
def test_a_path_id_in_digits_other_than_0_to_9_matches_no_route(
    bundled_client, path, digits, meaning
):
    assert bundled_client.get(path.format("1")).status_code == 200
    response = bundled_client.get(path.format(digits))
    assert response.status_code == 404, meaning
    assert response.get_json()["error"]["code"] == "not_found"
