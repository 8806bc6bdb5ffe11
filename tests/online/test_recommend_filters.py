"""/recommend's filters and paging: category, exclude, include_purchased, offset.

Filters apply before the list is cut, so an answer holds n products whenever
n eligible ones exist, from the cache or not, for known and unknown users.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import ROOT, buy, listed, runtime_of

CATALOG = pd.read_csv(ROOT / "products.csv")
CATEGORY_OF = dict(zip(CATALOG["product_id"], CATALOG["category"], strict=True))
CATEGORIES = sorted(set(CATEGORY_OF.values()))


def ranked_products(app) -> set[int]:
    """Return every product the live version can list (its model's and its fallback's)."""
    version = runtime_of(app).service.live.current()
    return set(np.union1d(version.model.product_ids, version.popularity.product_ids).tolist())


# -- bad values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("category=", "category must be 1 to 100 characters without control characters"),
        ("category=" + "x" * 101, "category must be 1 to 100 characters without control"),
        ("category=Books%0A", "'category' must hold no control characters, got 'Books\\n'"),
        ("category=%00", "'category' must hold no control characters, got '\\x00'"),
        ("category=%C2%85", "'category' must hold no control characters, got '\\x85'"),
        ("&".join(["category=c"] * 51), "category may be given at most 50 times, got 51"),
        ("exclude=", "exclude must not be empty"),
        ("exclude=1,,2", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=1,", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=-3", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=1.5", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=1%202", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=%D9%A1", "exclude must be up to 1,000 comma-separated product ids"),
        ("exclude=12345678901234567890", "exclude must be up to 1,000 comma-separated product"),
        ("exclude=" + ",".join(["1"] * 1001), "got 1,001"),
        ("exclude=" + "1" * 20001, "got 20,001 characters"),
        ("exclude=1&exclude=2", "exclude must be given once"),
        ("include_purchased=yes", "include_purchased must be true, false, 1 or 0"),
        ("include_purchased=", "include_purchased must not be empty"),
        ("include_purchased=true&include_purchased=true", "include_purchased must be given once"),
        ("offset=-1", "offset must be an integer from 0 to 999"),
        ("offset=1000", "offset must be an integer from 0 to 999"),
        ("offset=x", "offset must be an integer from 0 to 999"),
        ("offset=", "offset must not be empty"),
        ("offset=996", "offset + n must be at most 1000, got 996 + 5"),
        ("offset=901&n=100", "offset + n must be at most 1000, got 901 + 100"),
    ],
)
def test_a_bad_filter_or_paging_value_is_a_400_naming_it(bundled_client, query, message):
    response = bundled_client.get(f"/recommend?user_id=3&{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] in ("invalid_parameter", "duplicate_parameter")
    assert message in error["message"]


@pytest.mark.parametrize(
    "query",
    ["offset=900&n=100", "exclude=" + ",".join(str(i) for i in range(1, 1001)), "offset=0"],
)
def test_the_limits_themselves_are_accepted(bundled_client, query):
    assert bundled_client.get(f"/recommend?user_id=3&{query}").status_code == 200


# -- what the filters do --------------------------------------------------------------------


def test_a_category_filter_lists_only_that_category_and_fills_the_list(bundled_app):
    products = listed(bundled_app.test_client().get("/recommend?user_id=3&category=Books&n=4"))
    assert len(products) == 4  # the catalog has four books, and user 3 bought none
    assert {CATEGORY_OF[p] for p in products} == {"Books"}


def test_several_categories_may_be_asked_for_at_once(bundled_app):
    client = bundled_app.test_client()
    products = listed(client.get("/recommend?user_id=3&category=Books&category=Home&n=20"))
    books_and_home = {p for p, c in CATEGORY_OF.items() if c in ("Books", "Home")}
    assert sorted(products) == sorted(books_and_home - purchases(bundled_app, 3))


def test_a_category_with_no_products_gives_an_empty_list_not_an_error(bundled_client):
    response = bundled_client.get("/recommend?user_id=3&category=Garden")
    assert listed(response) == []


def test_excluded_products_are_left_out_and_the_next_best_fill_their_places(bundled_client):
    plain = listed(bundled_client.get("/recommend?user_id=3&n=6"))
    excluded = plain[:2]
    products = listed(
        bundled_client.get(f"/recommend?user_id=3&n=4&exclude={excluded[0]},{excluded[1]}")
    )
    assert products == plain[2:6]


def test_an_unknown_user_gets_popular_products_of_the_asked_category(bundled_client):
    body = bundled_client.get("/recommend?user_id=999999&category=Sports&n=3").get_json()
    assert body["fallback_reason"] == "unknown_user"
    assert [CATEGORY_OF[i["product_id"]] for i in body["recommendations"]] == ["Sports"] * 3


def test_purchases_are_listed_only_when_asked_for(client):
    bought = listed(client.get("/recommend?user_id=17&n=1"))[0]
    buy(client, 17, bought)
    assert bought not in listed(client.get("/recommend?user_id=17&n=20"))
    assert bought in listed(client.get("/recommend?user_id=17&n=20&include_purchased=true"))


def test_pages_put_together_equal_one_longer_list(app_factory):
    for cache in ("1", "0"):
        client = app_factory(CACHE=cache).test_client()
        for user in (3, 17, 42, 999999):
            for query in ("", "&category=Books&category=Beauty", "&exclude=1,2,3"):
                whole = listed(client.get(f"/recommend?user_id={user}&n=12{query}"))
                pages = [
                    listed(client.get(f"/recommend?user_id={user}&n=3&offset={start}{query}"))
                    for start in range(0, 12, 3)
                ]
                assert list(itertools.chain(*pages)) == whole, (cache, user, query)


def test_filtered_answers_from_the_cache_equal_computed_ones(app_factory):
    uncached = app_factory(CACHE="0").test_client()
    cached = app_factory(init=False).test_client()
    queries = [
        "n=3&category=Electronics",
        "n=10&exclude=6,15,18,3,11",
        "n=5&offset=4&category=Home&exclude=4",
        "n=20&include_purchased=1",
    ]
    for user in (1, 3, 17, 64, 100, 123456):
        for query in queries:
            path = f"/recommend?user_id={user}&{query}"
            expected = uncached.get(path).get_json()
            assert cached.get(path).get_json() == expected  # computed, then cached
            assert cached.get(path).get_json() == expected  # the cached answer


def test_explanations_and_diversity_combine_with_the_filters(bundled_client):
    query = "user_id=3&n=3&category=Books&category=Home&explain=true&diversity=0.5&offset=1"
    body = bundled_client.get(f"/recommend?{query}").get_json()
    items = body["recommendations"]
    assert len(items) == 3
    assert {CATEGORY_OF[i["product_id"]] for i in items} <= {"Books", "Home"}
    assert all("because" in item for item in items)


def test_the_api_document_names_the_filters(bundled_client):
    document = bundled_client.get("/openapi.json").get_json()
    parameters = {p["name"]: p for p in document["paths"]["/recommend"]["get"]["parameters"]}
    assert {"category", "exclude", "include_purchased", "offset"} <= set(parameters)
    assert parameters["category"]["schema"]["anyOf"][0]["type"] == "array"


# -- the property: every product satisfies the filters, and the list is full ----------------


@pytest.fixture(scope="module")
def filtered_app(tmp_path_factory):
    """A service over the bundled log in which user 17 bought three products."""
    from tests.builders import BUNDLED_LOG, AppFactory

    state = tmp_path_factory.mktemp("filtered_app")
    factory = AppFactory(
        f"sqlite:///{state / 'events.db'}", state / "models", DATA_PATH=str(BUNDLED_LOG)
    )
    app = factory()
    client = app.test_client()
    for product in (6, 15, 18):
        buy(client, 17, product)
    yield app
    factory.close()


def purchases(app, user_id: int) -> set[int]:
    return set(runtime_of(app).store.user_history(user_id).purchased)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user=st.sampled_from([1, 3, 17, 50, 100, 777777]),
    n=st.integers(1, 20),
    offset=st.integers(0, 20),
    categories=st.sets(st.sampled_from([*CATEGORIES, "Garden"]), max_size=3),
    exclude=st.sets(st.integers(1, 25), max_size=10),
    include_purchased=st.booleans(),
)
def test_every_listed_product_satisfies_the_filters_and_the_list_is_full_when_it_can_be(
    filtered_app, user, n, offset, categories, exclude, include_purchased
):
    query = [f"user_id={user}", f"n={n}", f"offset={offset}"]
    query += [f"category={c}" for c in sorted(categories)]
    if exclude:
        query.append("exclude=" + ",".join(map(str, sorted(exclude))))
    if include_purchased:
        query.append("include_purchased=true")
    products = listed(filtered_app.test_client().get("/recommend?" + "&".join(query)))

    bought = purchases(filtered_app, user)
    eligible = {
        p
        for p in ranked_products(filtered_app)
        if (not categories or CATEGORY_OF.get(p) in categories)
        and p not in exclude
        and (include_purchased or p not in bought)
    }
    assert set(products) <= eligible
    assert len(products) == len(set(products))
    assert len(products) == max(0, min(n, len(eligible) - offset))
