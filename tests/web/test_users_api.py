"""DELETE /users/<id>, GET /users/<id>/export and PUT /products' availability, on both databases."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from recsys.data.timestamps import utc_now
from tests.builders import exposure_row, runtime_of

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN_KEYS = f"admin:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"


@pytest.fixture
def client(any_app_factory):
    return any_app_factory().test_client()


def test_a_deletion_answers_its_audit_record(client):
    response = client.delete("/users/17")
    assert response.status_code == 200
    body = response.get_json()
    assert body["user_id"] == 17 and body["deleted_by"] == "open"
    assert body["rows"] == {"interactions": 23, "exposure_events": 0, "exposures": 0, "users": 1}
    assert body["deleted_at"].endswith("Z")


def test_after_a_deletion_the_user_is_unknown_everywhere_in_the_api(client):
    assert client.delete("/users/17").status_code == 200
    assert client.get("/users/17/history").status_code == 404
    assert client.get("/users/17/export").status_code == 404
    assert client.delete("/users/17").get_json()["error"]["code"] == "unknown_user"
    recommended = client.get("/recommend?user_id=17").get_json()
    assert recommended["fallback_reason"] == "unknown_user" and recommended["history_events"] == 0


def test_the_audit_names_the_api_key_that_deleted_never_the_key(any_app_factory):
    client = any_app_factory(API_KEYS=ADMIN_KEYS).test_client()
    body = client.delete("/users/17", headers={"X-API-Key": ADMIN_KEY}).get_json()
    assert body["deleted_by"].startswith("key-") and ADMIN_KEY not in body["deleted_by"]


def test_the_export_returns_the_user_row_and_every_event(client):
    body = client.get("/users/17/export").get_json()
    assert body["user_id"] == 17 and body["user"]["id"] == 17
    assert len(body["interactions"]) == 23
    assert {"product_id", "purchased", "created_at"} <= set(body["interactions"][0])
    assert body["exposures"] == [] and body["exposure_events"] == []


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("DELETE", "/users/999999", "unknown_user"),
        ("GET", "/users/999999/export", "unknown_user"),
        ("DELETE", "/users/0", "not_found"),
        ("DELETE", "/users/abc", "not_found"),
        ("GET", "/users/-1/export", "not_found"),
        ("DELETE", "/users/99999999999999999999", "not_found"),
    ],
)
def test_an_unknown_user_or_a_bad_id_gets_a_json_404(client, method, path, code):
    response = client.open(path, method=method)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == code


def test_events_acknowledged_before_a_delete_never_survive_it_under_concurrent_posts(
    any_app_factory,
):
    app = any_app_factory()
    client = app.test_client()
    acknowledged: list[tuple[int, float]] = []
    stop = threading.Event()

    def post() -> None:
        poster = app.test_client()
        product = 0
        while not stop.is_set():
            product = product % 20 + 1
            event = {"user_id": 4242, "product_id": product, "purchased": 0}
            assert poster.post("/interactions", json=event).status_code == 201
            acknowledged.append((product, time.monotonic()))

    thread = threading.Thread(target=post)
    thread.start()
    try:
        while len(acknowledged) < 30:
            time.sleep(0.01)
        began = time.monotonic()
        assert client.delete("/users/4242").status_code == 200
        stored_after = runtime_of(app).store.user_history(4242).events
        acked_after = sum(1 for _, at in acknowledged if at > began)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    # Whatever was acknowledged before the delete began is gone: only events
    # acknowledged after it (or in flight at its end) can be stored.
    assert stored_after <= acked_after + 1


# -- PUT /products: availability ---------------------------------------------------------------

PRODUCT = {"product_id": 13, "name": "Black Poetry Book", "category": "Books", "price": 12.58}


@pytest.mark.parametrize("value", ["no", 0, 1, [], {}])
def test_availability_must_be_true_or_false(client, value):
    response = client.put("/products", json=[{**PRODUCT, "available": value}])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_product" and "product 0: available" in error["message"]


def test_a_product_is_shown_as_unavailable_and_then_available_again(client):
    assert client.put("/products", json=[{**PRODUCT, "available": False}]).status_code == 200
    assert client.get("/products/13").get_json()["available"] is False
    assert client.put("/products", json=[PRODUCT]).status_code == 200  # absent: unchanged
    assert client.get("/products/13").get_json()["available"] is False
    assert client.put("/products", json=[{**PRODUCT, "available": True}]).status_code == 200
    assert client.get("/products/13").get_json()["available"] is True


def exposure(user_id: int, served_at) -> dict:
    return exposure_row(user_id, served_at, f"r{served_at:%H%M%S%f}")


def test_exposures_queued_before_a_deletion_never_outlive_it(any_app_factory):
    runtime = runtime_of(any_app_factory(AB_EXPOSURE_LOG="1"))
    log = runtime.exposure_log
    before = utc_now()
    log.record(exposure(17, before))  # queued here: written, then deleted
    record = runtime.delete_user(17, "test")
    assert record is not None and record.rows["exposures"] == 1
    log.record(exposure(17, before))  # queued elsewhere before the deletion, written after
    log.flush()
    assert runtime.store.export_user(17) is None
    log.record(exposure(17, utc_now()))  # the user came back: kept
    log.flush()
    assert len(runtime.store.export_user(17)["exposures"]) == 1
