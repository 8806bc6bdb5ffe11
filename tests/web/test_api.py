"""The HTTP contract of /recommend, /popular and /healthz, errors included."""

from __future__ import annotations

import pytest

from app import create_app
from recsys.config import SettingsError
from recsys.data.interactions import load_interactions
from recsys.errors import DataFileError
from tests.builders import BUNDLED_LOG


@pytest.fixture(scope="module")
def bundled_log():
    return load_interactions(BUNDLED_LOG)


def test_a_known_user_gets_five_named_svd_recommendations(bundled_client):
    body = bundled_client.get("/recommend?user_id=1").get_json()
    assert body["user_id"] == 1 and body["strategy"] == "svd"
    assert "fallback_reason" not in body
    items = body["recommendations"]
    assert len(items) == 5
    assert all(item["name"] and item["category"] for item in items)
    assert set(items[0]) == {"product_id", "name", "category", "score"}


def test_recommendations_are_sorted_by_score_then_product_id(bundled_client):
    for user in range(1, 30):
        items = bundled_client.get(f"/recommend?user_id={user}&n=20").get_json()["recommendations"]
        keys = [(-i["score"], i["product_id"]) for i in items]
        assert keys == sorted(keys)


def test_products_the_user_bought_are_never_recommended(bundled_client, bundled_log):
    bought = bundled_log[bundled_log["purchased"] == 1].groupby("user_id")["product_clicked"]
    for user, products in list(bought)[:30]:
        body = bundled_client.get(f"/recommend?user_id={user}&n=100").get_json()
        listed = {i["product_id"] for i in body["recommendations"]}
        assert not listed & set(products)
        # Everything not bought is still a candidate: fewer only when fewer remain.
        assert len(listed) == 20 - len(set(products))


@pytest.mark.parametrize("n", [1, 3, 7])
def test_n_sets_the_list_length(bundled_client, n):
    assert len(bundled_client.get(f"/recommend?user_id=2&n={n}").get_json()["recommendations"]) == n


def test_an_unknown_user_gets_popular_products_with_a_reason(bundled_client, bundled_log):
    body = bundled_client.get("/recommend?user_id=100000").get_json()
    assert body["strategy"] == "popular"
    assert body["fallback_reason"] == "unknown_user"
    counts = bundled_log["product_clicked"].value_counts()
    expected = sorted(counts.index, key=lambda p: (-counts[p], p))[:5]
    assert [i["product_id"] for i in body["recommendations"]] == expected


def test_popular_lists_the_most_clicked_products(bundled_client):
    response = bundled_client.get("/popular?n=3")
    assert response.status_code == 200
    body = response.get_json()
    assert body["strategy"] == "popular"
    clicks = [i["score"] for i in body["recommendations"]]
    assert len(clicks) == 3 and clicks == sorted(clicks, reverse=True)


def test_health_says_ok(bundled_client):
    assert bundled_client.get("/healthz").get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("", "missing_parameter", "user_id is required"),
        ("?user_id=", "invalid_parameter", "user_id must not be empty"),
        ("?user_id=abc", "invalid_parameter", "user_id must be an integer from 1 to"),
        ("?user_id=1.5", "invalid_parameter", "user_id must be an integer from 1 to"),
        ("?user_id=-3", "invalid_parameter", "user_id must be an integer from 1 to"),
        ("?user_id=0", "invalid_parameter", "user_id must be an integer from 1 to"),
        ("?user_id=%201", "invalid_parameter", "user_id must be an integer from 1 to"),
        ("?user_id=9223372036854775808", "invalid_parameter", "9223372036854775807"),
        ("?user_id=1&user_id=2", "duplicate_parameter", "user_id must be given once"),
        ("?user_id=1&n=0", "invalid_parameter", "n must be an integer from 1 to 100"),
        ("?user_id=1&n=101", "invalid_parameter", "n must be an integer from 1 to 100"),
        ("?user_id=1&n=two", "invalid_parameter", "n must be an integer from 1 to 100"),
        ("?user_id=1&n=", "invalid_parameter", "n must not be empty"),
        ("?user_id=1&n=2&n=3", "duplicate_parameter", "n must be given once"),
        ("?user_id=" + "1" * 4301, "invalid_parameter", "... (4303 characters)"),
        ("?user_id=1&n=" + "5" * 5000, "invalid_parameter", "n must be an integer from 1 to 100"),
        ("?user_id=\u0661\u0662", "invalid_parameter", "user_id must be an integer"),
        ("?user_id=\uff11\uff12", "invalid_parameter", "user_id must be an integer"),
        ("?user_id=1&n=\u096b", "invalid_parameter", "n must be an integer from 1 to 100"),
    ],
)
def test_bad_recommend_parameters_get_a_400_naming_the_problem(
    bundled_client, query, code, message
):
    response = bundled_client.get(f"/recommend{query}")
    assert response.status_code == 400
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert message in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/recommend?user_id=1"),
        ("GET", "/recommend?user_id=x"),
        ("GET", "/nowhere"),
        ("POST", "/popular"),
        ("GET", "/healthz"),
        ("POST", "/interactions"),
    ],
)
def test_every_answer_forbids_content_sniffing(bundled_client, method, path):
    response = bundled_client.open(path, method=method)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_an_error_message_echoes_at_most_about_100_characters_of_input(bundled_client):
    response = bundled_client.get("/recommend?user_id=" + "x" * 10_000)
    assert response.status_code == 400
    assert len(response.get_json()["error"]["message"]) < 250


def test_the_largest_64_bit_user_id_is_a_valid_unknown_user(bundled_client):
    response = bundled_client.get("/recommend?user_id=9223372036854775807")
    assert response.status_code == 200
    assert response.get_json()["fallback_reason"] == "unknown_user"


@pytest.mark.parametrize("query", ["?n=0", "?n=101", "?n=x"])
def test_bad_popular_parameters_get_a_400(bundled_client, query):
    response = bundled_client.get(f"/popular{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"


def test_an_unknown_route_is_a_json_404(bundled_client):
    response = bundled_client.get("/nowhere")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_a_wrong_method_is_a_json_405_listing_the_allowed_ones(bundled_client):
    response = bundled_client.post("/recommend?user_id=1")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_a_crash_is_a_json_500_not_an_html_page(app_factory):
    app = app_factory(init=False, DATA_PATH=str(BUNDLED_LOG))

    @app.get("/test-crash")
    def crash():
        raise RuntimeError("boom")

    response = app.test_client().get("/test-crash")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }


@pytest.mark.parametrize(("model", "strategy"), [("popularity", "popular"), ("als", "als")])
def test_the_model_behind_recommend_is_configurable(app_factory, model, strategy):
    app = app_factory(MODEL=model, DATA_PATH=str(BUNDLED_LOG))
    body = app.test_client().get("/recommend?user_id=1").get_json()
    assert body["strategy"] == strategy and "fallback_reason" not in body
    assert len(body["recommendations"]) == 5


def test_an_unknown_model_name_is_refused_at_start_up():
    with pytest.raises(SettingsError, match="MODEL: unknown model 'magic'; expected one of"):
        create_app({"MODEL": "magic", "DATA_PATH": str(BUNDLED_LOG)})


def test_the_service_trains_with_the_tuned_parameters_file(app_factory, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"svd": {"n_factors": 3, "n_epochs": 7}}')
    app = app_factory(MODEL_PARAMS_PATH=str(params))
    model = app.test_client().get("/model").get_json()
    assert model["params"]["n_factors"] == 3 and model["params"]["n_epochs"] == 7


def test_svd_without_regularisation_answers_a_new_visitor_after_one_click(app_factory, tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"svd": {"reg_all": 0.0}}')
    client = app_factory(MODEL_PARAMS_PATH=str(params)).test_client()
    event = {"user_id": 777_001, "product_id": 3, "purchased": 0}
    assert client.post("/interactions", json=event).status_code == 201
    answer = client.get("/recommend?user_id=777001")
    assert answer.status_code == 200
    assert answer.get_json()["strategy"] == "svd"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{not json", "not valid JSON"),
        ('{"svd": {"n_factorz": 3}}', "bad parameters for 'svd'"),
    ],
)
def test_a_bad_parameters_file_is_refused_at_start_up(tmp_path, content, message):
    params = tmp_path / "params.json"
    if content is not None:
        params.write_text(content)
    with pytest.raises(DataFileError, match=message):
        create_app({"TESTING": True, "MODEL_PARAMS_PATH": str(params)})


def test_the_service_serves_any_valid_log_naming_products_only_by_id(app_factory, write_csv):
    path = write_csv("user_id,product_clicked,purchased\n1,2,1\n1,3,0\n2,3,0\n2,4,0\n")
    app = app_factory(DATA_PATH=str(path))
    body = app.test_client().get("/recommend?user_id=1").get_json()
    # Product 2 was bought, so only 3 and 4 remain; no catalog, so no invented names.
    assert sorted(i["product_id"] for i in body["recommendations"]) == [3, 4]
    assert {(i["name"], i["category"]) for i in body["recommendations"]} == {(None, None)}


def test_the_service_names_products_from_the_catalog_beside_the_log(app_factory, write_csv):
    path = write_csv("user_id,product_clicked,purchased\n1,2,1\n1,3,0\n2,3,0\n2,4,0\n")
    write_csv("product_id,name,category,price\n3,Teal Mug,Kitchen,9.5\n", name="products.csv")
    app = app_factory(DATA_PATH=str(path))
    body = app.test_client().get("/recommend?user_id=1").get_json()
    names = {i["product_id"]: i["name"] for i in body["recommendations"]}
    assert names == {3: "Teal Mug", 4: None}


def test_readyz_before_init_names_the_missing_model_and_tables_and_says_to_run_init(app_factory):
    app = app_factory(init=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "not_ready",
        "missing": ["model", "database"],
        "error": {
            "code": "no_model_and_no_database",
            "message": "not ready: no model and no database: the event store lacks the "
            "service's tables: run `.venv/bin/flask --app app init` to create or migrate them",
        },
    }
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_on_a_refused_database_keeps_the_drivers_words_to_itself(app_factory):
    # The probe is unauthenticated: the database's host and port stay in the logs.
    app = app_factory(init=False, DATABASE_URL="postgresql+psycopg://127.0.0.1:1/recsys")
    error = app.test_client().get("/readyz").get_json()["error"]
    assert error == {
        "code": "no_model_and_no_database",
        "message": "not ready: no model and no database",
    }


def test_readyz_is_200_when_a_model_is_loaded_and_the_database_answers(bundled_client):
    response = bundled_client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})


def test_a_request_before_init_is_a_503_saying_what_to_run(app_factory):
    app = app_factory(init=False)
    response = app.test_client().get("/recommend?user_id=1")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "model_unavailable"
    assert "flask --app app init" in response.get_json()["error"]["message"]
