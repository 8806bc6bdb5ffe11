"""The OpenAPI document and the docs page: valid, complete, honest about roles, served offline."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from openapi_spec_validator import validate

from recsys.web.auth import required_role

DOCUMENTATION = {"/openapi.json", "/docs", "/docs/<asset>"}
# The dashboard's pages are for browsers, not part of the API (its numbers are, as /stats).
DOCUMENTATION |= {
    "/",
    "/dashboard/charts/<name>.png",
    "/dashboard/session",
    "/dashboard/static/<path:filename>",
}


@pytest.fixture(scope="module")
def spec(bundled_app):
    response = bundled_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3(spec):
    validate(spec)  # raises on any violation
    assert spec["openapi"].startswith("3.")


def test_every_route_but_the_documentation_is_documented_with_each_method(bundled_app, spec):
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method)
        for rule in bundled_app.url_map.iter_rules()
        if rule.rule not in DOCUMENTATION
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_each_operation_names_the_role_auth_enforces(bundled_app, spec):
    for rule in bundled_app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if path not in spec["paths"]:
            continue
        role = required_role(rule.rule, bundled_app.view_functions[rule.endpoint], True)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = spec["paths"][path][method.lower()]
            if role is None:
                assert op["security"] == [] and "401" not in op["responses"]
            else:
                assert op["security"] == [{"ApiKey": []}]
                assert op["x-required-role"] == role
                assert f"`{role}` role" in op["description"]
                assert {"401", "403"} <= set(op["responses"])


def test_the_api_key_scheme_is_the_x_api_key_header(spec):
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "name": "X-API-Key",
        "in": "header",
        "description": "a key from `flask --app app create-key --role ROLE`",
    }


def test_errors_are_documented_with_the_one_error_shape(spec):
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    recommend = spec["paths"]["/recommend"]["get"]["responses"]
    assert recommend["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_query_parameters_carry_their_ranges(spec):
    params = {p["name"]: p for p in spec["paths"]["/products"]["get"]["parameters"]}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["limit"]["schema"]["default"] == 100
    user = spec["paths"]["/users/{user_id}/history"]["get"]["parameters"][0]
    assert user["in"] == "path"
    assert user["schema"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": 2**63 - 1,
    }


def test_the_documentation_needs_no_key(keyed_documentation_client):
    assert keyed_documentation_client.get("/openapi.json").status_code == 200
    assert keyed_documentation_client.get("/docs").status_code == 200
    assert keyed_documentation_client.get("/docs/swagger-ui.css").status_code == 200
    assert keyed_documentation_client.get("/popular").status_code == 401


@pytest.fixture()
def keyed_documentation_client(app_factory):
    return app_factory(init=False, API_KEYS=f"read:{'a' * 64}").test_client()


# -- the docs page, offline -------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


EXPECTED_TYPES = {".css": "text/css", ".js": "javascript", ".png": "image/png"}


def test_the_docs_page_loads_every_asset_from_the_app(bundled_client):
    page = bundled_client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 3
    assert "//" not in " ".join(parser.urls)  # no CDN, no other host
    assert 'url: "/openapi.json"' in html
    for url in parser.urls:
        asset = bundled_client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert EXPECTED_TYPES[suffix] in asset.content_type, (url, asset.content_type)
        assert len(asset.data) > 100, url


def test_only_the_docs_page_files_are_served(bundled_client):
    for name in ("swagger-editor-bundle.js", "LICENSE", "..%2Fcore.py", "index.html"):
        response = bundled_client.get(f"/docs/{name}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_the_docs_page_sends_a_content_policy_and_may_not_be_framed(bundled_client):
    page = bundled_client.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    "path", ["/recommend?user_id=17", "/users/17/history", "/stats", "/popular", "/products/1"]
)
def test_an_api_answer_is_never_kept_by_a_cache(bundled_client, path):
    response = bundled_client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


# -- bounds: the document's and the code's are the same ------------------------------------


def _experiment(baseline_rate: float, mde: float, weight: float) -> dict:
    return {
        "name": "edge",
        "baseline_rate": baseline_rate,
        "mde": mde,
        "variants": [
            {"name": "control", "weight": weight, "strategy": "champion"},
            {"name": "b", "weight": weight, "strategy": "popular"},
        ],
    }


@pytest.mark.parametrize("edge", ["minimum", "maximum"])
def test_an_experiment_at_the_documented_edges_of_its_numbers_is_created(app, spec, edge):
    schemas = spec["components"]["schemas"]
    mde = schemas["ExperimentIn"]["properties"]["mde"]["minimum"]
    weight = schemas["VariantIn"]["properties"]["weight"][edge]
    response = app.test_client().post("/experiments", json=_experiment(0.5, mde, weight))
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [("mde", "below"), ("weight", "below"), ("weight", "above")],
)
def test_an_experiment_past_the_documented_edges_of_its_numbers_is_refused(app, spec, field, value):
    schemas = spec["components"]["schemas"]
    bounds = schemas["ExperimentIn" if field == "mde" else "VariantIn"]["properties"][field]
    number = bounds["minimum"] * 0.99 if value == "below" else bounds["maximum"] * 1.01
    body = _experiment(0.5, 0.02, 1)
    if field == "mde":
        body["mde"] = number
    else:
        body["variants"][0]["weight"] = number
    response = app.test_client().post("/experiments", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_experiment"
