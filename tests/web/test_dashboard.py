"""The dashboard at GET /: the data, the live model, lookups, charts, empty states, sign-in."""

from __future__ import annotations

import html
import re

import pytest

from recsys.data.charts import CHART_NAMES
from recsys.runtime.dashboard import StoreStats
from recsys.store.migrate import upgrade_to_head
from tests.builders import POPULAR_VS_CHAMPION, runtime_of
from tests.web.test_auth import API_KEYS, KEYS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def page_of(response) -> str:
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def figure(page: str, name: str) -> str:
    found = re.search(rf'id="figure-{name}">([^<]*)<', page)
    assert found, f"no figure {name}"
    return found.group(1)


def test_the_overview_shows_the_numbers_of_stats(bundled_client):
    page = page_of(bundled_client.get("/"))
    data = bundled_client.get("/stats").get_json()["data"]
    assert figure(page, "users") == str(data["users"]) == "100"
    assert figure(page, "interactions") == str(data["interactions"]) == "3223"
    assert figure(page, "products") == "20"
    assert figure(page, "purchases") == str(data["purchases"])
    assert figure(page, "conversion") == "25.3%"


def test_every_chart_on_the_page_is_served_as_a_png(bundled_client):
    page = page_of(bundled_client.get("/"))
    sources = re.findall(r'<img class="chart" src="([^"]+)"', page)
    assert sources == [f"/dashboard/charts/{name}.png" for name in CHART_NAMES]
    for source in sources:
        response = bundled_client.get(source)
        assert response.status_code == 200
        assert response.mimetype == "image/png"
        assert response.data.startswith(PNG_SIGNATURE)
        assert len(response.data) > 5_000


def test_every_asset_of_the_page_is_served_by_the_service(bundled_client):
    page = page_of(bundled_client.get("/"))
    assets = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert all(asset.startswith("/") and not asset.startswith("//") for asset in assets)
    for asset in assets:
        assert bundled_client.get(asset).status_code == 200, asset


def test_the_page_allows_only_its_own_files_and_no_framing(bundled_client):
    response = bundled_client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "img-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store"


def test_the_live_model_shows_its_version_type_and_offline_metrics(bundled_client):
    page = page_of(bundled_client.get("/"))
    stats = bundled_client.get("/stats").get_json()["model"]
    assert f'<td id="model-version">{stats["version"]}</td>' in page
    assert 'id="model-type">svd' in page
    assert "ndcg@10" in page
    assert str(stats["metrics"]["ndcg@10"]) in page


def test_a_known_user_is_shown_with_history_and_personal_recommendations(bundled_client):
    page = page_of(bundled_client.get("/?user_id=17"))
    assert 'data-user-id="17"' in page
    assert '<span class="tag" id="strategy">svd</span>' in page
    assert 'id="fallback-reason"' not in page
    answer = bundled_client.get("/recommend?user_id=17&n=10").get_json()
    listed = re.findall(r'<tr><td>\d+</td><td class="number">(\d+)</td>', page)
    assert [int(p) for p in listed] == [r["product_id"] for r in answer["recommendations"]]
    history = bundled_client.get("/users/17/history?limit=20").get_json()["interactions"]
    assert page.count("<td>yes</td>") + page.count("<td>no</td>") == len(history)


def test_an_unknown_user_gets_popular_products_and_the_fallback_reason(bundled_client):
    page = page_of(bundled_client.get("/?user_id=999999"))
    assert '<span class="tag" id="strategy">popular</span>' in page
    assert 'id="fallback-reason">unknown_user</span>' in page
    assert 'id="no-history"' in page


def test_a_user_who_joined_after_training_is_shown_with_a_personal_list(client):
    event = {"user_id": 5001, "product_id": 3, "purchased": 0}
    assert client.post("/interactions", json=event).status_code == 201
    page = page_of(client.get("/?user_id=5001"))
    strategy = client.get("/model").get_json()["model_type"]
    assert f'<span class="tag" id="strategy">{strategy}</span>' in page
    assert 'id="fallback-reason"' not in page
    assert "<td>no</td>" in page  # the one click, in the history column


def test_a_product_lookup_lists_its_neighbours(bundled_client):
    page = page_of(bundled_client.get("/?product_id=3"))
    answer = bundled_client.get("/similar?product_id=3&n=10").get_json()
    assert f'id="similar-strategy">{answer["strategy"]}</span>' in page
    section = page[page.index('id="similar-result"') :]
    listed = re.findall(r'<tr><td>\d+</td><td class="number">(\d+)</td>', section)
    assert [int(p) for p in listed] == [r["product_id"] for r in answer["recommendations"]]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("user_id=abc", 400, "user_id must be an integer from 1 to"),
        ("user_id=0", 400, "user_id must be an integer from 1 to"),
        ("user_id=", 400, "user_id must not be empty"),
        ("product_id=x", 400, "product_id must be an integer from 1 to"),
        ("product_id=999", 404, "product_id 999 is not in the catalog"),
    ],
)
def test_a_bad_lookup_is_explained_on_the_page(bundled_client, query, status, message):
    response = bundled_client.get(f"/?{query}")
    assert response.status_code == status
    assert message in page_of(response)


def test_an_empty_store_without_a_model_says_so(app_factory):
    app = app_factory(init=False, DATA_PATH="")
    upgrade_to_head(runtime_of(app).store.engine)
    client = app.test_client()
    page = page_of(client.get("/"))
    assert 'id="no-data"' in page
    assert 'id="no-model"' in page
    assert "<img" not in page
    assert figure(page, "interactions") == "0"
    assert figure(page, "conversion") == "-"
    assert client.get("/dashboard/charts/most_clicked.png").status_code == 404
    lookup = client.get("/?user_id=1")
    assert lookup.status_code == 503
    assert "no model is published yet" in page_of(lookup)


def test_a_store_outage_is_a_page_that_says_so_and_the_api_stays_json(app):
    # A real SQLite failure: the table the figures come from is gone.
    with runtime_of(app).store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE interactions RENAME TO interactions_gone")
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "The event store is unavailable" in page_of(page)
    api = client.get("/stats")
    assert api.status_code == 503 and api.mimetype == "application/json"
    assert api.get_json()["error"]["code"] == "store_unavailable"


def test_no_experiment_section_while_none_runs(bundled_client):
    assert 'id="experiment"' not in page_of(bundled_client.get("/"))
    assert bundled_client.get("/stats").get_json()["experiment"] is None


def test_a_running_experiments_report_is_shown_with_its_verdict_and_variants(client):
    spec = POPULAR_VS_CHAMPION
    assert client.post("/experiments", json=spec).status_code == 201
    assert client.post(f"/experiments/{spec['name']}/start").status_code == 200
    for user_id in range(1, 31):
        assert client.get(f"/recommend?user_id={user_id}").status_code == 200

    report = client.get("/stats").get_json()["experiment"]
    assert report["experiment"]["name"] == spec["name"]
    assert sum(row["exposures"] for row in report["variants"]) == 30
    assert report["status"] == "collecting"  # 30 users are far below the planned size

    page = page_of(client.get("/"))
    section = page[page.index('id="experiment"') :]
    assert f"Running experiment: {spec['name']}" in section
    assert html.escape(report["verdict"]) in section
    assert "<td>control</td>" in section and "<td>personal</td>" in section


def test_the_figures_are_cached_until_they_are_too_old(app):
    store = runtime_of(app).store
    now = [0.0]
    stats = StoreStats(store, ttl_seconds=30, clock=lambda: now[0])
    before = stats.snapshot()
    client = app.test_client()
    event = {"user_id": 17, "product_id": 3, "purchased": 1}
    assert client.post("/interactions", json=event).status_code == 201
    now[0] = 29.9
    assert stats.snapshot() is before
    now[0] = 30.0
    after = stats.snapshot()
    assert after.summary["interactions"] == before.summary["interactions"] + 1
    assert after.summary["purchases"] == before.summary["purchases"] + 1


# -- with API keys -----------------------------------------------------------------------------


@pytest.fixture()
def keyed_client(app_factory):
    return app_factory(API_KEYS=API_KEYS).test_client()


def test_without_a_key_the_page_asks_for_one(keyed_client):
    response = keyed_client.get("/")
    assert response.status_code == 401
    page = page_of(response)
    assert '<form id="signin"' in page
    assert 'id="overview"' not in page


def test_signing_in_keeps_the_read_key_in_a_strict_http_only_cookie(keyed_client):
    response = keyed_client.post("/dashboard/session", json={"api_key": KEYS["read"]})
    assert response.status_code == 204
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"recsys_key={KEYS['read']};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS it is Secure
    assert keyed_client.get("/").status_code == 200
    assert keyed_client.get("/dashboard/charts/long_tail.png").status_code == 200


def test_the_cookie_is_secure_behind_an_https_proxy(keyed_client):
    response = keyed_client.post(
        "/dashboard/session",
        json={"api_key": KEYS["read"]},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_the_cookie_opens_only_the_dashboard_never_the_api(keyed_client):
    assert (
        keyed_client.post("/dashboard/session", json={"api_key": KEYS["admin"]}).status_code == 204
    )
    assert keyed_client.get("/").status_code == 200
    assert keyed_client.get("/stats").status_code == 401
    assert keyed_client.get("/recommend?user_id=1").status_code == 401
    event = {"user_id": 1, "product_id": 3, "purchased": 0}
    assert keyed_client.post("/interactions", json=event).status_code == 401


def test_signing_out_forgets_the_key(keyed_client):
    keyed_client.post("/dashboard/session", json={"api_key": KEYS["read"]})
    response = keyed_client.delete("/dashboard/session")
    assert response.status_code == 204
    assert "recsys_key=;" in response.headers["Set-Cookie"]
    assert keyed_client.get("/").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"api_key": "not-a-key"}, 401, "invalid_api_key"),
        ({"api_key": KEYS["ingest"]}, 403, "forbidden"),
        ({"api_key": ""}, 400, "invalid_body"),
        ({"key": KEYS["read"]}, 400, "invalid_body"),
        ([KEYS["read"]], 400, "invalid_body"),
        ({"api_key": "x" * 201}, 400, "invalid_body"),
    ],
)
def test_a_sign_in_with_a_bad_key_sets_no_cookie(keyed_client, body, status, code):
    response = keyed_client.post("/dashboard/session", json=body)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert "Set-Cookie" not in response.headers


def test_a_sign_in_form_post_from_another_site_is_refused(keyed_client):
    response = keyed_client.post("/dashboard/session", data={"api_key": KEYS["read"]})
    assert response.status_code == 415
    assert "Set-Cookie" not in response.headers


def test_a_cookie_with_a_key_no_longer_configured_asks_again(keyed_client):
    keyed_client.set_cookie("recsys_key", "a-revoked-key")
    response = keyed_client.get("/")
    assert response.status_code == 401
    assert "no longer configured" in page_of(response)


def test_an_open_service_needs_no_sign_in(client):
    assert client.get("/").status_code == 200
    response = client.post("/dashboard/session", json={"api_key": "anything"})
    assert response.status_code == 204 and "Set-Cookie" not in response.headers


def test_a_store_without_categories_has_no_heatmap_and_says_why(app_factory, write_csv):
    log = write_csv("user_id,product_clicked,purchased\n1,1,0\n1,2,1\n2,1,1\n2,3,0\n3,2,0\n")
    client = app_factory(DATA_PATH=str(log)).test_client()
    page = page_of(client.get("/"))
    assert "No product has a category in the catalog" in page
    assert "category_affinity.png" not in page
    assert client.get("/dashboard/charts/category_affinity.png").status_code == 404
    assert client.get("/dashboard/charts/long_tail.png").status_code == 200


def test_an_unknown_chart_is_not_found(bundled_client):
    response = bundled_client.get("/dashboard/charts/pie.png")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
