"""A/B tests through the API: defining, starting, serving variants, attribution and the report."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from recsys.experiments.definitions import experiment_from_spec
from recsys.experiments.report import attribute, experiment_report, report_text
from tests.builders import BUNDLED_LOG, POPULAR_VS_CHAMPION, AppFactory, runtime_of

POPULAR_VS_MODEL = POPULAR_VS_CHAMPION


@pytest.fixture()
def ab_app(tmp_path):
    factory = AppFactory(
        f"sqlite:///{tmp_path / 'events.db'}", tmp_path / "models", DATA_PATH=str(BUNDLED_LOG)
    )
    yield factory()
    factory.close()


@pytest.fixture()
def ab_client(ab_app):
    return ab_app.test_client()


def started(client, spec=POPULAR_VS_MODEL):
    assert client.post("/experiments", json=spec).status_code == 201
    response = client.post(f"/experiments/{spec['name']}/start")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_new_experiment_is_a_draft_with_its_planned_sample_size(ab_client):
    response = ab_client.post("/experiments", json=POPULAR_VS_MODEL)
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "draft"
    assert body["planned_per_variant"] == 356  # 30% -> 40%, power 0.8, alpha 0.05
    assert ab_client.get("/experiments").get_json()["experiments"][0]["name"] == "pop-vs-svd"


def test_without_a_running_experiment_answers_carry_no_experiment_fields(ab_client):
    ab_client.post("/experiments", json=POPULAR_VS_MODEL)  # a draft serves nothing
    body = ab_client.get("/recommend?user_id=3").get_json()
    assert not {"experiment", "variant", "recommendation_id"} & set(body)


def test_a_running_experiment_names_itself_the_variant_and_the_list_in_each_answer(ab_client):
    started(ab_client)
    body = ab_client.get("/recommend?user_id=3").get_json()
    assert body["experiment"] == "pop-vs-svd"
    assert body["variant"] in {"control", "personal"}
    assert len(body["recommendation_id"]) == 32
    again = ab_client.get("/recommend?user_id=3").get_json()
    assert again["variant"] == body["variant"]
    assert again["recommendation_id"] != body["recommendation_id"]


def test_each_variant_serves_its_own_strategy(ab_client):
    started(ab_client)
    strategies = {}
    for user_id in range(1, 40):
        body = ab_client.get(f"/recommend?user_id={user_id}").get_json()
        strategies.setdefault(body["variant"], set()).add(body["strategy"])
    assert strategies == {"control": {"popular"}, "personal": {"svd"}}


def test_every_variant_honours_the_filters_and_paging_of_the_request(ab_client):
    started(ab_client)
    books = {7, 11, 13, 18}  # products.csv
    for user_id in range(1, 40):
        query = f"/recommend?user_id={user_id}&n=2&category=Books&exclude=13&include_purchased=1"
        body = ab_client.get(query).get_json()
        listed = [item["product_id"] for item in body["recommendations"]]
        assert body["variant"] in {"control", "personal"}
        assert len(listed) == 2 and set(listed) <= books - {13}
        # Three books are eligible (purchases included): the second page is the third.
        second = ab_client.get(query + "&offset=2").get_json()["recommendations"]
        assert [item["product_id"] for item in second] == sorted(books - {13} - set(listed))


def test_a_model_variant_is_trained_on_demand_and_pinned_at_start(ab_client, ab_app):
    spec = {
        **POPULAR_VS_MODEL,
        "name": "svd-vs-als",
        "variants": [
            {"name": "control", "strategy": "champion"},
            {"name": "als", "strategy": "model", "model": "als"},
        ],
    }
    body = started(ab_client, spec)
    version = body["variants"][1]["version"]
    assert runtime_of(ab_app).registry.read_metadata(version).model_type == "als"
    answers = [ab_client.get(f"/recommend?user_id={u}").get_json() for u in range(1, 30)]
    assert {a["model_version"] for a in answers if a["variant"] == "als"} == {version}


def test_a_pinned_version_outlives_the_kept_versions_while_its_experiment_runs(tmp_path):
    factory = AppFactory(
        f"sqlite:///{tmp_path / 'events.db'}",
        tmp_path / "models",
        DATA_PATH=str(BUNDLED_LOG),
        KEEP_MODEL_VERSIONS="1",
    )
    app = factory()
    client = app.test_client()
    spec = {
        **POPULAR_VS_MODEL,
        "variants": [
            {"name": "control", "strategy": "champion"},
            {"name": "als", "strategy": "model", "model": "als"},
        ],
    }
    version = started(client, spec)["variants"][1]["version"]
    runtime = runtime_of(app)
    for _ in range(2):
        runtime.train_exclusively()
    assert version in runtime.registry.versions()
    answers = [client.get(f"/recommend?user_id={u}").get_json() for u in range(1, 30)]
    assert {a["model_version"] for a in answers if a["variant"] == "als"} == {version}
    assert client.post(f"/experiments/{spec['name']}/stop").status_code == 200
    runtime.train_exclusively()
    assert version not in runtime.registry.versions()
    factory.close()


def test_only_one_experiment_runs_at_a_time(ab_client):
    started(ab_client)
    other = {**POPULAR_VS_MODEL, "name": "second"}
    ab_client.post("/experiments", json=other)
    response = ab_client.post("/experiments/second/start")
    assert response.status_code == 409
    assert "pop-vs-svd" in response.get_json()["error"]["message"]


def test_stopping_returns_users_to_the_live_model(ab_client):
    started(ab_client)
    assert ab_client.post("/experiments/pop-vs-svd/stop").get_json()["status"] == "stopped"
    assert "experiment" not in ab_client.get("/recommend?user_id=3").get_json()
    assert ab_client.post("/experiments/pop-vs-svd/stop").status_code == 409


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "a b"}, "name must be"),
        ({"metric": "revenue"}, "metric must be one of conversion, click_through"),
        ({"baseline_rate": 1.5}, "baseline_rate must be a number between 0 and 1"),
        ({"mde": 0.9}, "mde must be above 0 and baseline + mde below 1"),
        ({"variants": [{"name": "a", "strategy": "popular"}]}, "variants must be an array of 2"),
        (
            {
                "variants": [
                    {"name": "a", "strategy": "popular"},
                    {"name": "a", "strategy": "champion"},
                ]
            },
            "variant names must differ",
        ),
        (
            {
                "variants": [
                    {"name": "a", "strategy": "magic"},
                    {"name": "b", "strategy": "popular"},
                ]
            },
            "variants[0].strategy must be one of champion, popular, model, version",
        ),
        (
            {
                "variants": [
                    {"name": "a", "strategy": "model", "model": "gpt"},
                    {"name": "b", "strategy": "popular"},
                ]
            },
            "variants[0].model: unknown model 'gpt'",
        ),
        (
            {
                "variants": [
                    {"name": "a", "strategy": "popular", "weight": 0},
                    {"name": "b", "strategy": "popular"},
                ]
            },
            "variants[0].weight must be a number from 0.001 to 1000",
        ),
        ({"colour": "red"}, "unexpected field(s) ['colour']"),
    ],
)
def test_a_malformed_experiment_is_refused_naming_the_field(ab_client, change, message):
    response = ab_client.post("/experiments", json={**POPULAR_VS_MODEL, **change})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_experiment"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/experiments/nothing", 404, "experiment_not_found"),
        ("GET", "/experiments/nothing/report", 404, "experiment_not_found"),
        ("POST", "/experiments/nothing/start", 404, "experiment_not_found"),
        ("POST", "/experiments/nothing/stop", 404, "experiment_not_found"),
    ],
)
def test_an_unknown_experiment_is_a_404(ab_client, method, path, status, code):
    response = ab_client.open(path, method=method)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_an_event_with_a_malformed_recommendation_id_is_refused_and_nothing_written(ab_client):
    events = [
        {"user_id": 3, "product_id": 1, "purchased": 0},
        {"user_id": 3, "product_id": 2, "purchased": 0, "recommendation_id": "not-an-id"},
    ]
    response = ab_client.post("/interactions", json=events)
    assert response.status_code == 400
    assert (
        "event 1: recommendation_id must be the 32 hex digits"
        in response.get_json()["error"]["message"]
    )


def test_clicks_and_purchases_sent_back_with_the_id_count_for_the_variant(ab_client):
    started(ab_client)
    answer = ab_client.get("/recommend?user_id=3").get_json()
    listed = answer["recommendations"][0]["product_id"]
    events = [
        {
            "user_id": 3,
            "product_id": listed,
            "purchased": 1,
            "recommendation_id": answer["recommendation_id"],
        },
        {"user_id": 3, "product_id": listed, "purchased": 0},  # no id: user level only
    ]
    assert ab_client.post("/interactions", json=events).status_code == 201
    report = ab_client.get("/experiments/pop-vs-svd/report").get_json()
    row = next(r for r in report["variants"] if r["variant"] == answer["variant"])
    assert (row["exposures"], row["clicks"], row["purchases"], row["buyers"]) == (1, 1, 1, 1)
    assert row["user_level"]["purchases"] == 1
    assert row["revenue"] is not None


def test_no_verdict_is_named_below_the_planned_sample_size(ab_client):
    started(ab_client)
    for user_id in range(1, 101):
        ab_client.get(f"/recommend?user_id={user_id}")
    report = ab_client.get("/experiments/pop-vs-svd/report").get_json()
    assert report["status"] == "collecting"
    assert "No verdict yet" in report["verdict"]
    assert "of the 356 users planned" in report["verdict"]


# -- attribution and the verdict, on fixed frames -------------------------------------------

SERVED = datetime(2026, 11, 30, 12, 0, 0)


def exposures_of(*rows):
    return pd.DataFrame(
        [
            {
                "recommendation_id": rid,
                "variant": variant,
                "user_id": user,
                "product_ids": ids,
                "latency_ms": 1.0,
                "failed": False,
                "served_at": SERVED,
            }
            for rid, variant, user, ids in rows
        ]
    )


def events_of(*rows):
    return pd.DataFrame(
        [
            {
                "recommendation_id": rid,
                "user_id": user,
                "product_id": product,
                "purchased": purchased,
                "created_at": SERVED + delay,
                "price": 10.0,
            }
            for rid, user, product, purchased, delay in rows
        ]
    )


def test_attribution_counts_only_listed_products_of_the_same_user_inside_the_window():
    exposures = exposures_of(("r1", "a", 7, "3 5 9"))
    events = events_of(
        ("r1", 7, 5, True, timedelta(hours=1)),  # counts
        ("r1", 7, 4, True, timedelta(hours=1)),  # product not on the list
        ("r1", 7, 9, False, timedelta(hours=25)),  # after the window
        ("r1", 7, 3, False, timedelta(seconds=-5)),  # before the list was served
        ("r1", 8, 3, False, timedelta(minutes=1)),  # another user's click
        ("r2", 7, 3, False, timedelta(minutes=1)),  # an unknown list
        ("r1", 7, 9, False, timedelta(hours=24)),  # the window's last moment counts
    )
    counted = attribute(exposures, events, timedelta(hours=24))
    assert counted[["product_id", "variant"]].values.tolist() == [[5, "a"], [9, "a"]]


def test_a_shorter_window_counts_fewer_events():
    exposures = exposures_of(("r1", "a", 7, "3 5 9"))
    events = events_of(("r1", 7, 5, True, timedelta(hours=2)))
    assert len(attribute(exposures, events, timedelta(hours=1))) == 0
    assert len(attribute(exposures, events, timedelta(hours=3))) == 1


def test_attribution_tells_clicks_on_explored_products_apart():
    exposures = exposures_of(("r1", "a", 7, "3 5 9")).assign(explored_ids="9")
    events = events_of(("r1", 7, 5, True, timedelta(hours=1)), ("r1", 7, 9, False, timedelta(0)))
    counted = attribute(exposures, events, timedelta(hours=24))
    assert counted[["product_id", "explored"]].values.tolist() == [[5, False], [9, True]]


def test_the_report_counts_each_variants_explored_slots_and_their_clicks():
    experiment = experiment_from_spec({**POPULAR_VS_MODEL, "name": "explored"})
    exposures = pd.concat(
        [
            exposures_of(("c1", "control", 1, "1 2 3"), ("c2", "control", 3, "1 2 4")).assign(
                explored_ids=["3", "4"]
            ),
            exposures_of(("p1", "personal", 2, "5 6 7")).assign(explored_ids=[None]),
        ],
        ignore_index=True,
    )
    events = events_of(("c1", 1, 3, False, timedelta(minutes=1)))
    purchases = pd.DataFrame(columns=["user_id", "product_id", "price", "created_at"])
    report = experiment_report(experiment, exposures, events, purchases, timedelta(hours=24))
    control, personal = report["variants"]
    assert (control["explored_slots"], control["explored_clicks"]) == (2, 1)
    assert (personal["explored_slots"], personal["explored_clicks"]) == (0, 0)
    assert "control          2 explored slots, 1 clicks on them" in report_text(report)


def fixed_report(control_buyers, variant_buyers, users, planned_spec=None):
    experiment = experiment_from_spec(planned_spec or {**POPULAR_VS_MODEL, "name": "fixed"})
    rows, events = [], []
    for variant, buyers in (("control", control_buyers), ("personal", variant_buyers)):
        for user in range(users):
            uid = user * 2 + (variant == "personal")
            rid = f"{variant}-{user}"
            rows.append((rid, variant, uid, "1 2 3"))
            if user < buyers:
                events.append((rid, uid, 2, True, timedelta(minutes=5)))
    purchases = pd.DataFrame(columns=["user_id", "product_id", "price", "created_at"])
    return experiment_report(
        experiment, exposures_of(*rows), events_of(*events), purchases, timedelta(hours=24)
    )


def test_a_clear_lift_at_the_planned_size_names_the_winner():
    report = fixed_report(control_buyers=120, variant_buyers=170, users=400)
    assert report["status"] == "winner"
    assert report["verdict"].startswith("personal beats control on conversion: +12.50%")


def test_the_same_lift_below_the_planned_size_names_no_winner():
    report = fixed_report(control_buyers=90, variant_buyers=128, users=300)
    assert report["variants"][1]["vs_control"]["p_value"] < 0.05  # significant, yet:
    assert report["status"] == "collecting"


def test_no_difference_at_the_planned_size_keeps_control():
    report = fixed_report(control_buyers=120, variant_buyers=125, users=400)
    assert report["status"] == "no_difference"
    assert "Keep control" in report["verdict"]


def test_a_skewed_split_is_reported_instead_of_a_winner():
    experiment = experiment_from_spec({**POPULAR_VS_MODEL, "name": "skew"})
    rows = [(f"c{u}", "control", u, "1") for u in range(600)]
    rows += [(f"p{u}", "personal", 10_000 + u, "1") for u in range(400)]
    purchases = pd.DataFrame(columns=["user_id", "product_id", "price", "created_at"])
    report = experiment_report(
        experiment, exposures_of(*rows), events_of(), purchases, timedelta(hours=24)
    )
    assert report["sample_ratio"]["mismatch"]
    assert report["status"] == "sample_ratio_mismatch"
    assert report["verdict"].startswith("Do not trust this result")


def test_exposures_name_the_explored_products_of_each_list(tmp_path):
    factory = AppFactory(
        f"sqlite:///{tmp_path / 'events.db'}",
        tmp_path / "models",
        DATA_PATH=str(BUNDLED_LOG),
        EXPLORATION="0.1",
    )
    client = factory().test_client()
    started(client)
    served = {}
    for user_id in range(1, 11):
        body = client.get(f"/recommend?user_id={user_id}&n=10").get_json()
        explored = [i["product_id"] for i in body["recommendations"] if i.get("explored")]
        served[body["recommendation_id"]] = " ".join(map(str, explored))
    runtime = runtime_of(client.application)
    runtime.exposure_log.flush()
    exposures = runtime.experiment_store.exposures_frame(POPULAR_VS_MODEL["name"])
    recorded = zip(exposures["recommendation_id"], exposures["explored_ids"], strict=True)
    assert dict(recorded) == served
    assert all(ids for ids in served.values())
    factory.close()
