"""The catalog: list products a page at a time, show one, add or update a batch."""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd
from flask import Blueprint, jsonify
from pydantic import ValidationError

from recsys.data.catalog import CATALOG_COLUMNS
from recsys.data.interactions import MAX_ID
from recsys.errors import quote
from recsys.store.engine import STORE_OUTAGES
from recsys.web.auth import requires
from recsys.web.bodies import json_body
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import accepted, operation
from recsys.web.schemas import (
    MAX_PRODUCTS_PER_PUT,
    Accepted,
    Product,
    ProductBatch,
    ProductIn,
    ProductPage,
    ProductPageQuery,
)

bp = Blueprint("catalog", __name__)

# Ids outside 1..2^63-1 match no route: 404, like an unknown product.
PRODUCT_ID = f"<int(min=1, max={MAX_ID}):product_id>"


@bp.get("/products")
@operation(
    "The catalog, a page at a time",
    (200, ProductPage),
    query=ProductPageQuery,
    validate=True,
    tags=["catalog"],
)
@requires("read")
def list_products(query: ProductPageQuery):
    after = cursor_id(query.cursor) if query.cursor else 0
    rows = runtime().store.products_page(query.limit + 1, after, query.category)
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return jsonify({"products": page, "next": str(page[-1]["product_id"]) if more else None})


@bp.get(f"/products/{PRODUCT_ID}")
@operation("One product", (200, Product), errors=[404], tags=["catalog"])
@requires("read")
def show_product(product_id: int):
    product = runtime().store.product(product_id)
    if product is None:
        raise ApiError(404, "unknown_product", f"product_id {product_id} is not in the catalog")
    return jsonify(product)


@bp.put("/products")
@operation(
    "Add or update products, all or nothing; hide them (available: false) or show them again",
    (200, Accepted),
    body=ProductBatch,
    errors=[413, 415],
    tags=["catalog"],
)
@requires("ingest")
def put_products():
    body = json_body("the products")
    if not isinstance(body, list):
        raise ApiError(400, "invalid_body", "send an array of product objects")
    if not body:
        raise ApiError(
            400, "empty_batch", f"the array holds no products; send 1 to {MAX_PRODUCTS_PER_PUT}"
        )
    if len(body) > MAX_PRODUCTS_PER_PUT:
        # 400 like any other bound of the body's schema (maxItems); 413 is for bytes.
        raise ApiError(
            400,
            "batch_too_large",
            f"a batch holds at most {MAX_PRODUCTS_PER_PUT} products, got {len(body)}",
        )
    products = validated_products(body)
    serving = runtime()
    written = serving.store.upsert_products(
        pd.DataFrame(
            [p.model_dump() for p in products], columns=[*CATALOG_COLUMNS, "available"]
        ).astype({"available": object})
    )
    # The live version shows the new names now, other processes within a refresh
    # period; a product hidden or shown again, every process before this answers.
    # The write is done: if the store fails just now, that period catches up.
    with contextlib.suppress(*STORE_OUTAGES):
        serving.service.products_changed(any(p.available is not None for p in products))
    return jsonify({"accepted": written})


def validated_products(rows: list[Any]) -> list[ProductIn]:
    """Validate every product of a batch by the ``ProductIn`` schema; the first bad one raises.

    Raises:
        ApiError: 400 ``invalid_product`` naming the product's index and the field.
    """
    products: list[ProductIn] = []
    first_index: dict[int, int] = {}
    for index, row in enumerate(rows):
        product = _validated_product(index, row)
        if product.product_id in first_index:
            raise ApiError(
                400,
                "invalid_product",
                f"product {index}: product_id {product.product_id} repeats product "
                f"{first_index[product.product_id]}",
            )
        first_index[product.product_id] = index
        products.append(product)
    return products


# Fields a product may leave out (an absent availability is left as it is).
_OPTIONAL = frozenset({"available"})


def _validated_product(index: int, row: Any) -> ProductIn:
    def refuse(reason: str) -> ApiError:
        return ApiError(400, "invalid_product", f"product {index}: {reason}")

    if not isinstance(row, dict):
        raise refuse(f"a product must be a JSON object, got {type(row).__name__}")
    fields = list(ProductIn.model_fields)
    extra = sorted(set(row) - set(fields))
    if extra:
        raise refuse(f"unexpected field(s) {quote(extra)}; accepted: {fields}")
    missing = [name for name in fields if name not in row and name not in _OPTIONAL]
    if missing:
        raise refuse(f"missing field(s) {missing}")
    try:
        return ProductIn.model_validate(row)
    except ValidationError as exc:
        name = str(exc.errors()[0]["loc"][0])
        raise refuse(f"{accepted(ProductIn, name)}, got {quote(row[name])}") from None


def cursor_id(cursor: str) -> int:
    """Return the product id a ``cursor`` names (its digits already checked by the schema).

    An id past 2^63-1 (the document allows 19 digits) is after every product:
    the page is empty.
    """
    return min(int(cursor), MAX_ID)
