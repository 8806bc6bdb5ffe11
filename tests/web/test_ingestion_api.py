"""POST /interactions: all-or-nothing batches, JSON errors, and their immediate effects."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.builders import runtime_of, uncached_list

GOOD = {"user_id": 7, "product_id": 3, "purchased": 0}


def interaction_count(app) -> int:
    return runtime_of(app).store.counts().interactions


def test_one_event_is_accepted(any_app_factory):
    app = any_app_factory()
    before = interaction_count(app)
    response = app.test_client().post("/interactions", json=GOOD)
    assert response.status_code == 201
    assert response.get_json() == {"accepted": 1, "new": 1, "known": 0}
    assert interaction_count(app) == before + 1


def test_a_batch_with_timestamps_and_boolean_purchases_is_accepted(any_app_factory):
    app = any_app_factory()
    before = interaction_count(app)
    batch = [
        {"user_id": 9001, "product_id": 1, "purchased": True, "timestamp": "2026-11-29T10:00:00Z"},
        {
            "user_id": 9001,
            "product_id": 2,
            "purchased": False,
            "timestamp": "2026-11-29T11:00:00+01:00",
        },
        {"user_id": 9002, "product_id": 2, "purchased": 1},
    ]
    response = app.test_client().post("/interactions", json=batch)
    assert (response.status_code, response.get_json()) == (
        201,
        {"accepted": 3, "new": 3, "known": 0},
    )
    assert interaction_count(app) == before + 3
    assert runtime_of(app).store.user_history(9001).purchased == {1}


def test_a_batch_with_one_unknown_product_writes_nothing(any_app_factory):
    app = any_app_factory()
    before = runtime_of(app).store.counts()
    batch = [dict(GOOD, user_id=8000 + i) for i in range(5)] + [dict(GOOD, product_id=999)]
    response = app.test_client().post("/interactions", json=batch)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unknown_product"
    assert "event 5" in response.get_json()["error"]["message"]
    assert runtime_of(app).store.counts() == before


@pytest.mark.slow
def test_eight_clients_posting_500_events_each_record_exactly_4000(any_app_factory):
    app = any_app_factory()
    before = interaction_count(app)
    failures: list[tuple[int, str]] = []
    start = threading.Barrier(8)

    def post_events(thread: int) -> None:
        client = app.test_client()
        start.wait()
        for i in range(500):
            event = {
                "user_id": 20_000 + thread * 1000 + i % 10,
                "product_id": 1 + i % 20,
                "purchased": i % 3 == 0,
            }
            response = client.post("/interactions", json=event)
            if response.status_code != 201:
                failures.append((response.status_code, response.get_data(as_text=True)))

    threads = [threading.Thread(target=post_events, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert interaction_count(app) - before == 4000


def _too_many():
    return [GOOD] * 10_001


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        pytest.param([], 400, "empty_batch", "no events", id="empty-array"),
        pytest.param("hello", 400, "invalid_body", "event object", id="json-string"),
        pytest.param(42, 400, "invalid_body", "event object", id="json-number"),
        pytest.param(
            [1],
            400,
            "invalid_event",
            "event 0: an event must be a JSON object",
            id="array-of-numbers",
        ),
        pytest.param(
            {"user_id": 1, "product_id": 1},
            400,
            "invalid_event",
            "missing field(s) ['type (or purchased)']",
            id="missing-purchased",
        ),
        pytest.param(
            dict(GOOD, colour="red"), 400, "invalid_event", "unexpected field(s)", id="extra-field"
        ),
        pytest.param(
            dict(GOOD, user_id="7"),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-string",
        ),
        pytest.param(
            dict(GOOD, user_id=0),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-zero",
        ),
        pytest.param(
            dict(GOOD, user_id=-3),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-negative",
        ),
        pytest.param(
            dict(GOOD, user_id=2**63),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-too-large",
        ),
        pytest.param(
            dict(GOOD, user_id=1.5),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-float",
        ),
        pytest.param(
            dict(GOOD, user_id=True),
            400,
            "invalid_event",
            "user_id must be an integer from 1 to",
            id="user-id-bool",
        ),
        pytest.param(
            dict(GOOD, product_id=None),
            400,
            "invalid_event",
            "product_id must be an integer from 1 to",
            id="product-id-null",
        ),
        pytest.param(
            dict(GOOD, purchased=2),
            400,
            "invalid_event",
            "purchased must be 0, 1",
            id="purchased-two",
        ),
        pytest.param(
            dict(GOOD, purchased="yes"),
            400,
            "invalid_event",
            "purchased must be 0, 1",
            id="purchased-text",
        ),
        pytest.param(
            dict(GOOD, timestamp="yesterday"), 400, "invalid_event", "ISO-8601", id="timestamp-text"
        ),
        pytest.param(
            dict(GOOD, timestamp=1764410000),
            400,
            "invalid_event",
            "ISO-8601",
            id="timestamp-number",
        ),
        pytest.param(
            dict(GOOD, purchased=0.5),
            400,
            "invalid_event",
            "purchased must be 0, 1",
            id="purchased-fraction",
        ),
        pytest.param(
            dict(GOOD, timestamp="9999-12-31T23:59:59-14:00"),
            400,
            "invalid_event",
            "from 1970-01-01 to one day after now",
            id="timestamp-overflows-utc",
        ),
        pytest.param(
            dict(GOOD, timestamp="0001-01-01T00:00:00+14:00"),
            400,
            "invalid_event",
            "from 1970-01-01 to one day after now",
            id="timestamp-underflows-utc",
        ),
        pytest.param(
            dict(GOOD, timestamp="9999-01-01T00:00:00Z"),
            400,
            "invalid_event",
            "from 1970-01-01 to one day after now",
            id="timestamp-year-9999",
        ),
        pytest.param(
            dict(GOOD, timestamp="0001-01-01T00:00:00Z"),
            400,
            "invalid_event",
            "from 1970-01-01 to one day after now",
            id="timestamp-year-1",
        ),
        pytest.param(
            dict(GOOD, timestamp="1969-12-31T23:59:59Z"),
            400,
            "invalid_event",
            "from 1970-01-01",
            id="timestamp-before-1970",
        ),
        pytest.param(
            dict(GOOD, timestamp=(datetime.now(UTC) + timedelta(days=2)).isoformat()),
            400,
            "invalid_event",
            "one day after now",
            id="timestamp-two-days-ahead",
        ),
        pytest.param(
            dict(GOOD, timestamp="2026-11-29"),
            400,
            "invalid_event",
            "with a UTC offset",
            id="timestamp-date-only",
        ),
        pytest.param(
            dict(GOOD, timestamp="2026-11-29T10:00:00"),
            400,
            "invalid_event",
            "with a UTC offset",
            id="timestamp-without-offset",
        ),
        pytest.param(
            dict(GOOD, user_id="9" * 5000),
            400,
            "invalid_event",
            "... (5002 characters)",
            id="long-value-echo-capped",
        ),
        pytest.param(
            [GOOD, GOOD, dict(GOOD, purchased=None)],
            400,
            "invalid_event",
            "event 2:",
            id="third-row-bad",
        ),
        pytest.param(
            dict(GOOD, product_id=999),
            422,
            "unknown_product",
            "product_id 999 is not in the catalog",
            id="unknown-product",
        ),
        pytest.param(_too_many(), 400, "batch_too_large", "at most 10000", id="10001-events"),
    ],
)
def test_a_bad_payload_is_rejected_with_a_json_error_and_writes_nothing(
    app, client, body, status, code, message
):
    before = runtime_of(app).store.counts()
    response = client.post("/interactions", json=body)
    assert response.status_code == status
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    assert runtime_of(app).store.counts() == before


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        pytest.param("{not json", "application/json", 400, "invalid_json", id="broken-json"),
        pytest.param(
            json.dumps(GOOD),
            "text/plain",
            415,
            "unsupported_media_type",
            id="not-json-content-type",
        ),
        pytest.param("", "application/json", 400, "invalid_json", id="empty-body"),
        pytest.param(
            "[" * 10_000 + "]" * 10_000,
            "application/json",
            400,
            "invalid_json",
            id="nested-10000-levels",
        ),
        pytest.param(
            '{"user_id": 7, "product_id": 3, "purchased": 0, "purchased": 1}',
            "application/json",
            400,
            "invalid_json",
            id="duplicate-key",
        ),
        pytest.param(b"\xff\xfe[1]", "application/json", 400, "invalid_json", id="not-utf-8"),
    ],
)
def test_a_body_that_is_not_json_is_rejected(app, client, data, content_type, status, code):
    before = interaction_count(app)
    response = client.post("/interactions", data=data, content_type=content_type)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert interaction_count(app) == before


def test_an_oversized_body_is_rejected_before_parsing(app_factory):
    app = app_factory(INGEST_MAX_BYTES=100)
    response = app.test_client().post("/interactions", json=[GOOD] * 10)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_over_the_limit_is_refused_with_bounded_memory(app_factory):
    app = app_factory(INGEST_MAX_BYTES=1000)

    class EndlessBody:
        """A body with no Content-Length that never ends, as a chunked upload arrives."""

        read_bytes = 0

        def read(self, size=-1):
            size = 65536 if size is None or size < 0 else size
            self.read_bytes += size
            return b" " * size

        def readline(self, size=-1):
            return self.read(size)

    body = EndlessBody()
    environ = EnvironBuilder(
        path="/interactions", method="POST", content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    # What a server sets for a chunked request: the stream ends on its own.
    environ.update({"wsgi.input": body, "wsgi.input_terminated": True})
    chunks, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("413")
    assert json.loads(b"".join(chunks))["error"]["code"] == "payload_too_large"
    assert body.read_bytes < 1_000_000, "the body was read well past the limit"


def test_a_timestamp_with_an_offset_is_stored_in_utc(app, client):
    response = client.post(
        "/interactions", json=dict(GOOD, user_id=5150, timestamp="2026-01-31T13:00:00+01:00")
    )
    assert response.status_code == 201
    with runtime_of(app).store.engine.connect() as conn:
        stamp = conn.execute(
            sa.text("SELECT created_at FROM interactions WHERE user_id = 5150")
        ).scalar_one()
    assert str(stamp).startswith("2026-01-31 12:00:00")


def test_get_on_interactions_is_a_json_405(client):
    response = client.get("/interactions")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_a_purchase_posted_now_is_excluded_from_the_next_answer_without_retraining(
    any_app_factory,
):
    app = any_app_factory()
    client = app.test_client()
    first = client.get("/recommend?user_id=1&n=5").get_json()
    top = first["recommendations"][0]["product_id"]
    assert (
        client.post(
            "/interactions", json={"user_id": 1, "product_id": top, "purchased": 1}
        ).status_code
        == 201
    )
    second = client.get("/recommend?user_id=1&n=5").get_json()
    assert top not in [item["product_id"] for item in second["recommendations"]]
    assert second["model_version"] == first["model_version"]
    # The same model, folding in the purchase: the list the store's history makes now.
    assert [i["product_id"] for i in second["recommendations"]] == uncached_list(app, 1, 5)
    assert second["history_events"] == first["history_events"] + 1


def test_a_clicked_but_not_bought_product_is_still_recommended(client):
    first = client.get("/recommend?user_id=1&n=5").get_json()
    top = first["recommendations"][0]["product_id"]
    client.post("/interactions", json={"user_id": 1, "product_id": top, "purchased": 0})
    second = client.get("/recommend?user_id=1&n=5").get_json()
    assert second["recommendations"][0]["product_id"] == top


def test_a_new_user_with_events_gets_a_personal_list_at_once(client):
    client.post(
        "/interactions",
        json=[{"user_id": 555_555, "product_id": p, "purchased": 1} for p in (1, 2)],
    )
    answer = client.get("/recommend?user_id=555555&n=3").get_json()
    assert answer["strategy"] == client.get("/model").get_json()["model_type"]
    assert "fallback_reason" not in answer
    assert answer["history_events"] == 2
    assert not {1, 2} & {i["product_id"] for i in answer["recommendations"]}


def test_a_users_second_event_changes_their_list_without_a_retrain(client):
    client.post("/interactions", json={"user_id": 555_556, "product_id": 1, "purchased": 0})
    first = client.get("/recommend?user_id=555556&n=10").get_json()
    client.post("/interactions", json={"user_id": 555_556, "product_id": 9, "purchased": 1})
    second = client.get("/recommend?user_id=555556&n=10").get_json()
    assert (first["history_events"], second["history_events"]) == (1, 2)
    assert second["model_version"] == first["model_version"]
    assert [i["score"] for i in second["recommendations"]] != [
        i["score"] for i in first["recommendations"]
    ]


def test_a_user_with_events_only_on_products_added_after_training_is_marked_not_in_model(
    client,
):
    added = {"product_id": 901, "name": "New kettle", "category": "Kitchen", "price": 30.0}
    assert client.put("/products", json=[added]).status_code in (200, 201)
    client.post("/interactions", json={"user_id": 555_557, "product_id": 901, "purchased": 0})
    answer = client.get("/recommend?user_id=555557&n=3").get_json()
    assert answer["strategy"] == "popular"
    assert answer["fallback_reason"] == "not_in_model"
    popular = client.get("/popular?n=3").get_json()["recommendations"]
    assert answer["recommendations"] == popular


def test_a_user_without_events_is_still_an_unknown_user(client):
    answer = client.get("/recommend?user_id=777777").get_json()
    assert (answer["strategy"], answer["fallback_reason"]) == ("popular", "unknown_user")
    assert answer["model_version"] == client.get("/model").get_json()["version"]


def test_auto_retrain_after_n_events_serves_a_new_version(app_factory):
    app = app_factory(RETRAIN_EVERY_EVENTS=3)
    client = app.test_client()
    old = client.get("/model").get_json()["version"]
    client.post(
        "/interactions",
        json=[
            {"user_id": 424_242, "product_id": 1, "purchased": 1},
            {"user_id": 424_242, "product_id": 2, "purchased": 0},
        ],
    )
    runtime_of(app).jobs.wait_all(timeout=60)
    assert client.get("/model").get_json()["version"] == old, "2 events are below the threshold"
    client.post("/interactions", json={"user_id": 424_242, "product_id": 3, "purchased": 0})
    runtime_of(app).jobs.wait_all(timeout=60)
    answer = client.get("/recommend?user_id=424242").get_json()
    assert answer["model_version"] != old
    assert answer["strategy"] == "svd"


def test_with_auto_retrain_off_no_count_of_events_starts_a_retrain(app_factory):
    app = app_factory(AUTO_RETRAIN=0, RETRAIN_EVERY_EVENTS=1)
    client = app.test_client()
    old = client.get("/model").get_json()["version"]
    client.post("/interactions", json={"user_id": 424_242, "product_id": 1, "purchased": 1})
    runtime_of(app).jobs.wait_all(timeout=60)
    assert runtime_of(app).registry.versions() == [old]


def test_an_unreachable_store_is_a_json_503_not_a_500(app, client, monkeypatch):
    def database_down(events):
        raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(runtime_of(app).store, "ingest", database_down)
    response = client.post("/interactions", json=GOOD)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "store_unavailable"
    assert response.headers["Retry-After"] == "1"
