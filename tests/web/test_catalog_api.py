"""GET /products (pages, category), GET /products/<id>, PUT /products (all or nothing)."""

from __future__ import annotations

import time

import pytest

from tests.builders import runtime_of

MAX_ID = 2**63 - 1
PRODUCT = {"product_id": 21, "name": "Green Kettle", "category": "Home", "price": 30}


def error_of(response) -> tuple[int, str, str]:
    body = response.get_json()
    assert list(body) == ["error"]
    return response.status_code, body["error"]["code"], body["error"]["message"]


# -- GET /products -------------------------------------------------------------------------------


def test_the_first_page_lists_products_by_id_with_their_fields(bundled_client):
    body = bundled_client.get("/products?limit=3").get_json()
    assert [p["product_id"] for p in body["products"]] == [1, 2, 3]
    assert set(body["products"][0]) == {"product_id", "name", "category", "price", "available"}
    assert body["next"] == "3"


def test_the_default_page_holds_the_whole_small_catalog(bundled_client):
    body = bundled_client.get("/products").get_json()
    assert len(body["products"]) == 20
    assert body["next"] is None


@pytest.mark.parametrize("limit", [1, 3, 7, 20])
@pytest.mark.parametrize("category", [None, "Books"])
def test_pages_concatenated_equal_one_larger_request(bundled_client, limit, category):
    where = f"&category={category}" if category else ""
    whole = bundled_client.get(f"/products?limit=1000{where}").get_json()["products"]
    pages, cursor = [], None
    while True:
        after = f"&cursor={cursor}" if cursor else ""
        body = bundled_client.get(f"/products?limit={limit}{where}{after}").get_json()
        assert len(body["products"]) <= limit
        pages.extend(body["products"])
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == whole


def test_the_category_filter_keeps_only_that_category(bundled_client):
    products = bundled_client.get("/products?category=Books").get_json()["products"]
    assert products and {p["category"] for p in products} == {"Books"}
    assert bundled_client.get("/products?category=Nothing").get_json() == {
        "products": [],
        "next": None,
    }


ACCEPTS_LIMIT = "limit must be an integer from 1 to 1000"
ACCEPTS_CURSOR = "cursor must be the next value of a previous page"


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("limit=0", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '0'"),
        ("limit=1001", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '1001'"),
        ("limit=abc", "invalid_parameter", f"{ACCEPTS_LIMIT}, got 'abc'"),
        ("limit=%2B5", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '+5'"),
        ("limit=5.0", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '5.0'"),
        ("limit=%D9%A3", "invalid_parameter", f"{ACCEPTS_LIMIT}, got '\u0663'"),
        ("limit=", "invalid_parameter", "limit must not be empty"),
        ("limit=1&limit=2", "duplicate_parameter", "limit must be given once, got 2"),
        ("cursor=abc", "invalid_parameter", f"{ACCEPTS_CURSOR}, got 'abc'"),
        ("cursor=-1", "invalid_parameter", f"{ACCEPTS_CURSOR}, got '-1'"),
        ("cursor=92233720368547758080", "invalid_parameter", f"{ACCEPTS_CURSOR}, got "
         "'92233720368547758080'"),
        ("cursor=", "invalid_parameter", "cursor must not be empty"),
        ("category=", "invalid_parameter", "category must not be empty"),
        ("category=a&category=b", "duplicate_parameter", "category must be given once, got 2"),
        (f"category={'x' * 101}", "invalid_parameter",
         "category must be a string of 1 to 100 characters without control characters, got "
         "'xxxx"),
    ],
)  # fmt: skip
def test_bad_product_list_parameters_are_400_naming_what_is_accepted(
    bundled_client, query, code, message
):
    status, got_code, got_message = error_of(bundled_client.get(f"/products?{query}"))
    assert (status, got_code) == (400, code)
    assert got_message.startswith(message)


# -- GET /products/<id> --------------------------------------------------------------------------


def test_one_product_is_shown_by_id(bundled_client):
    body = bundled_client.get("/products/13").get_json()
    assert body == bundled_client.get("/products?limit=13").get_json()["products"][12]
    assert body["name"] == "Black Poetry Book"


@pytest.mark.parametrize("path", ["/products/999", f"/products/{MAX_ID}"])
def test_an_unknown_product_is_404_unknown_product(bundled_client, path):
    status, code, message = error_of(bundled_client.get(path))
    assert (status, code) == (404, "unknown_product")
    assert message == f"product_id {path.rsplit('/', 1)[1]} is not in the catalog"


@pytest.mark.parametrize("path", ["/products/0", "/products/abc", f"/products/{MAX_ID + 1}"])
def test_a_product_path_that_is_no_id_matches_no_route(bundled_client, path):
    assert error_of(bundled_client.get(path))[:2] == (404, "not_found")


# -- PUT /products -------------------------------------------------------------------------------


def test_put_adds_and_updates_products_in_one_batch(client):
    renamed = {"product_id": 13, "name": "Red Poetry Book", "category": "Books", "price": 9.5}
    response = client.put("/products", json=[PRODUCT, renamed])
    assert response.status_code == 200
    assert response.get_json() == {"accepted": 2}
    assert client.get("/products/21").get_json() == {**PRODUCT, "price": 30.0, "available": True}
    assert client.get("/products/13").get_json() == {**renamed, "available": True}


def test_renamed_products_show_at_once_in_the_live_models_answers(client):
    before = client.get("/recommend?user_id=17&n=20").get_json()["recommendations"]
    assert {"product_id": 13, "name": "Black Poetry Book"}.items() <= next(
        i for i in before if i["product_id"] == 13
    ).items()
    client.put(
        "/products",
        json=[{"product_id": 13, "name": "Red Poetry Book", "category": "Poetry", "price": 1}],
    )
    after = client.get("/recommend?user_id=17&n=20").get_json()["recommendations"]
    item = next(i for i in after if i["product_id"] == 13)
    assert (item["name"], item["category"]) == ("Red Poetry Book", "Poetry")


def test_another_process_shows_new_names_within_a_refresh_period(app_factory):
    writer = app_factory().test_client()
    reader = app_factory(MODEL_REFRESH_SECONDS=0.05).test_client()
    assert reader.get("/similar?product_id=13").status_code == 200  # started: refreshing
    writer.put(
        "/products",
        json=[{"product_id": 13, "name": "Red Poetry Book", "category": "Books", "price": 1}],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = reader.get("/recommend?user_id=17&n=20").get_json()["recommendations"]
        if next(i for i in items if i["product_id"] == 13)["name"] == "Red Poetry Book":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the other app never showed the new name")


def test_a_new_product_is_shown_by_similar_as_its_categorys_best_sellers(client):
    client.put("/products", json=[PRODUCT])
    body = client.get("/similar?product_id=21").get_json()
    assert body["fallback_reason"] == "not_in_model"
    assert {i["category"] for i in body["recommendations"]} == {"Home"}


def _product(**changes):
    return {**PRODUCT, **changes}


ACCEPTS_ID = f"product_id must be an integer from 1 to {MAX_ID}"
ACCEPTS_PRICE = "price must be a number from 0 to 1000000000"
ACCEPTS_NAME = (
    "name must be a string of 1 to 200 characters, not all white space, without control characters"
)
FIELDS = "['product_id', 'name', 'category', 'price', 'available']"
INVALID = (400, "invalid_product")


@pytest.mark.parametrize(
    ("body", "status_and_code", "message"),
    [
        ({"product_id": 21}, (400, "invalid_body"), "send an array of product objects"),
        ([], (400, "empty_batch"), "the array holds no products; send 1 to 10000"),
        ([PRODUCT, 5], INVALID, "product 1: a product must be a JSON object, got int"),
        ([PRODUCT, _product(product_id=0)], INVALID, f"product 1: {ACCEPTS_ID}, got 0"),
        ([_product(product_id=MAX_ID + 1)], INVALID, f"product 0: {ACCEPTS_ID}, got {MAX_ID + 1}"),
        ([_product(product_id="21")], INVALID, f"product 0: {ACCEPTS_ID}, got '21'"),
        ([_product(product_id=True)], INVALID, f"product 0: {ACCEPTS_ID}, got True"),
        ([_product(product_id=21.5)], INVALID, f"product 0: {ACCEPTS_ID}, got 21.5"),
        ([_product(name="")], INVALID, f"product 0: {ACCEPTS_NAME}, got ''"),
        ([_product(name=None)], INVALID, f"product 0: {ACCEPTS_NAME}, got None"),
        ([_product(name="   ")], INVALID, f"product 0: {ACCEPTS_NAME}, got '   '"),
        ([_product(name="\u3000")], INVALID, rf"product 0: {ACCEPTS_NAME}, got '\u3000'"),
        ([_product(category="x" * 101)], INVALID,
         "product 0: category must be a string of 1 to 100 characters, not all white space, "
         "without control characters, got 'xxx"),
        ([_product(category=" ")], INVALID,
         "product 0: category must be a string of 1 to 100 characters, not all white space"),
        ([_product(price=-1)], INVALID, f"product 0: {ACCEPTS_PRICE}, got -1"),
        ([_product(price="3")], INVALID, f"product 0: {ACCEPTS_PRICE}, got '3'"),
        ([_product(price=False)], INVALID, f"product 0: {ACCEPTS_PRICE}, got False"),
        ([_product(price=1e308)], INVALID, f"product 0: {ACCEPTS_PRICE}, got 1e+308"),
        ([{"product_id": 21, "name": "x", "category": "y"}], INVALID,
         "product 0: missing field(s) ['price']"),
        ([_product(colour="red")], INVALID,
         f"product 0: unexpected field(s) ['colour']; accepted: {FIELDS}"),
        ([PRODUCT, _product(name="Other")], INVALID, "product 1: product_id 21 repeats product 0"),
        ([PRODUCT] * 10_001, (400, "batch_too_large"),
         "a batch holds at most 10000 products, got 10001"),
    ],
)  # fmt: skip
def test_a_bad_batch_is_refused_whole_naming_the_product(
    app, client, body, status_and_code, message
):
    store = runtime_of(app).store
    before = store.products_frame()
    response = client.put("/products", json=body)
    got_status, got_code, got_message = error_of(response)
    assert (got_status, got_code) == status_and_code
    assert got_message.startswith(message)
    assert store.products_frame().equals(before)  # nothing written


def test_a_body_that_is_not_json_is_refused(client):
    assert error_of(client.put("/products", data="[]", content_type="text/plain"))[:2] == (
        415,
        "unsupported_media_type",
    )
    assert error_of(client.put("/products", data="[{", content_type="application/json"))[:2] == (
        400,
        "invalid_json",
    )
    assert error_of(
        client.put(
            "/products",
            data='[{"product_id": 1, "product_id": 2}]',
            content_type="application/json",
        )
    ) == (400, "invalid_json", "the key 'product_id' appears twice")


@pytest.mark.parametrize("cursor", ["9223372036854775807", "9999999999999999999"])
def test_a_cursor_past_the_largest_id_gives_an_empty_last_page(bundled_client, cursor):
    response = bundled_client.get(f"/products?cursor={cursor}")
    assert response.status_code == 200
    assert response.get_json() == {"products": [], "next": None}
