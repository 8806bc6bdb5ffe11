"""GET /users/<id>/history: a user's interactions, newest first, paged by a cursor."""

from __future__ import annotations

import pytest

MAX_ID = 2**63 - 1
EVENTS = [
    {"user_id": 700, "product_id": 4, "purchased": 0, "timestamp": "2026-01-02T10:00:00Z"},
    {"user_id": 700, "product_id": 5, "purchased": 1, "timestamp": "2026-01-03T10:00:00+01:00"},
    {"user_id": 700, "product_id": 6, "purchased": 0, "timestamp": "2026-01-01T10:00:00Z"},
    # Two at the same instant: the later row comes first.
    {"user_id": 700, "product_id": 7, "purchased": 0, "timestamp": "2026-01-02T10:00:00Z"},
    {"user_id": 701, "product_id": 8, "purchased": 1, "timestamp": "2026-01-05T10:00:00Z"},
]


@pytest.fixture()
def history_client(client):
    assert client.post("/interactions", json=EVENTS).status_code == 201
    return client


def test_interactions_are_listed_newest_first_with_utc_z_timestamps(history_client):
    body = history_client.get("/users/700/history").get_json()
    assert body == {
        "user_id": 700,
        "interactions": [
            {
                "product_id": 5,
                "type": "purchase",
                "value": None,
                "purchased": True,
                "timestamp": "2026-01-03T09:00:00Z",
            },
            {
                "product_id": 7,
                "type": "click",
                "value": None,
                "purchased": False,
                "timestamp": "2026-01-02T10:00:00Z",
            },
            {
                "product_id": 4,
                "type": "click",
                "value": None,
                "purchased": False,
                "timestamp": "2026-01-02T10:00:00Z",
            },
            {
                "product_id": 6,
                "type": "click",
                "value": None,
                "purchased": False,
                "timestamp": "2026-01-01T10:00:00Z",
            },
        ],
        "next": None,
    }


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_pages_concatenated_equal_one_larger_request(history_client, limit):
    whole = history_client.get("/users/700/history?limit=1000").get_json()["interactions"]
    pages, cursor = [], None
    while True:
        after = f"&cursor={cursor}" if cursor else ""
        body = history_client.get(f"/users/700/history?limit={limit}{after}").get_json()
        assert len(body["interactions"]) <= limit
        pages.extend(body["interactions"])
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == whole and len(whole) == 4


def test_a_bundled_users_pages_cover_every_event(bundled_client):
    # user 17's events were loaded at the same instant: the row id orders them.
    whole = bundled_client.get("/users/17/history?limit=1000").get_json()["interactions"]
    pages, cursor = [], None
    while True:
        after = f"&cursor={cursor}" if cursor else ""
        body = bundled_client.get(f"/users/17/history?limit=3{after}").get_json()
        pages.extend(body["interactions"])
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == whole and len(whole) > 3


def test_a_user_never_seen_is_404_unknown_user(bundled_client):
    response = bundled_client.get("/users/100000/history")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "unknown_user", "message": "user_id 100000 has no recorded events"}
    }


@pytest.mark.parametrize(
    "path", ["/users/0/history", "/users/abc/history", f"/users/{MAX_ID + 1}/history"]
)
def test_a_user_path_that_is_no_id_matches_no_route(bundled_client, path):
    response = bundled_client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


ACCEPTS_LIMIT = "limit must be an integer from 1 to 1000"
ACCEPTS_CURSOR = "cursor must be the next value of a previous page"


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("limit=0", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '0'"),
        ("limit=1001", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '1001'"),
        ("limit=ten", "invalid_parameter", f"{ACCEPTS_LIMIT}, got 'ten'"),
        ("limit= 5", "invalid_parameter", f"{ACCEPTS_LIMIT}, got ' 5'"),
        ("limit=", "invalid_parameter", "limit must not be empty"),
        ("limit=5&limit=5", "duplicate_parameter", "limit must be given once, got 2"),
        ("cursor=12", "invalid_parameter", f"{ACCEPTS_CURSOR}, got '12'"),
        ("cursor=1.2.3", "invalid_parameter", f"{ACCEPTS_CURSOR}, got '1.2.3'"),
        ("cursor=-1.2", "invalid_parameter", f"{ACCEPTS_CURSOR}, got '-1.2'"),
        ("cursor=99999999999999999999.1", "invalid_parameter",
         f"{ACCEPTS_CURSOR}, got '99999999999999999999.1'"),
        ("cursor=1.92233720368547758080", "invalid_parameter",
         f"{ACCEPTS_CURSOR}, got '1.92233720368547758080'"),
        ("cursor=", "invalid_parameter", "cursor must not be empty"),
        ("cursor=1.1&cursor=1.1", "duplicate_parameter", "cursor must be given once, got 2"),
    ],
)  # fmt: skip
def test_bad_history_parameters_are_400_naming_what_is_accepted(
    bundled_client, query, code, message
):
    response = bundled_client.get(f"/users/17/history?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"error": {"code": code, "message": message}}


def test_a_cursor_past_the_newest_entry_gives_the_first_page(bundled_client):
    first = bundled_client.get("/users/17/history?limit=3").get_json()
    past = bundled_client.get("/users/17/history?limit=3&cursor=9999999999999999999.1")
    assert past.status_code == 200
    assert past.get_json()["interactions"] == first["interactions"]


def test_a_cursor_with_an_id_past_the_largest_is_read_as_the_largest(bundled_client):
    # 1970-01-01 plus 1 microsecond: nothing is older.
    response = bundled_client.get("/users/17/history?cursor=1.9999999999999999999")
    assert response.status_code == 200
    assert response.get_json()["interactions"] == []


def test_a_users_history_shows_each_events_type_and_a_ratings_stars(client):
    events = [
        {
            "user_id": 702,
            "product_id": 4,
            "type": "rating",
            "value": 4,
            "timestamp": "2026-01-01T10:00:00Z",
        },
        {"user_id": 702, "product_id": 5, "type": "dislike", "timestamp": "2026-01-02T10:00:00Z"},
    ]
    assert client.post("/interactions", json=events).status_code == 201
    listed = client.get("/users/702/history").get_json()["interactions"]
    assert [(e["type"], e["value"], e["purchased"]) for e in listed] == [
        ("dislike", None, False),
        ("rating", 4, False),
    ]
