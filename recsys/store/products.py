"""The catalog in the store: products upserted in one go, read whole, one by one or by page.

``EventStore`` mixes ``ProductCatalog`` in, so its catalog methods are the
store's own.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from recsys.store.engine import retry_conflicts
from recsys.store.tables import products
from recsys.store.transactions import chunks, insert_ignoring_duplicates, write_transaction

_PRODUCT_COLUMNS = (
    products.c.id.label("product_id"),
    products.c.name,
    products.c.category,
    products.c.price,
    products.c.available,
)


class ProductCatalog:
    """Reads and writes the products table of the store at ``engine``."""

    engine: Engine

    def upsert_products(self, catalog: pd.DataFrame) -> int:
        """Add new products and update the name, category and price of known ones, in one go.

        Args:
            catalog: Columns ``product_id, name, category, price``, and
                ``available`` (True, False, or None to keep a known product's
                and make a new one available) when the batch sets it.

        Returns:
            How many products were written.
        """
        rows = _product_rows(catalog)
        availability = _availability(catalog)

        def upsert() -> None:
            with write_transaction(self.engine) as conn:
                for chunk in chunks(rows):
                    insert = (
                        postgresql.insert(products)
                        if conn.dialect.name == "postgresql"
                        else sqlite.insert(products)
                    )
                    conn.execute(
                        insert.on_conflict_do_update(
                            index_elements=[products.c.id],
                            set_={c: insert.excluded[c] for c in ("name", "category", "price")},
                        ),
                        list(chunk),
                    )
                for available in (True, False):
                    ids = [i for i, a in availability if a is available]
                    for chunk in chunks(ids):
                        conn.execute(
                            products.update()
                            .where(products.c.id.in_(chunk))
                            .values(available=available)
                        )

        retry_conflicts(upsert)
        return len(rows)

    def products_frame(self) -> pd.DataFrame:
        """Return the catalog: ``product_id, name, category, price`` by id."""
        query = sa.select(
            products.c.id.label("product_id"),
            products.c.name,
            products.c.category,
            products.c.price,
        ).order_by(products.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["product_id", "name", "category", "price"])
        return frame.astype({"product_id": "int64", "price": "float64"})

    def hidden_products(self) -> frozenset[int]:
        """Return the ids of the products marked unavailable (never recommended)."""
        query = sa.select(products.c.id).where(products.c.available == sa.false())
        with self.engine.connect() as conn:
            return frozenset(int(p) for p in conn.execute(query).scalars())

    def product(self, product_id: int) -> dict[str, Any] | None:
        """Return one product (``product_id, name, category, price, available``), or None."""
        query = sa.select(*_PRODUCT_COLUMNS).where(products.c.id == product_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else dict(row)

    def products_page(
        self, limit: int, after: int = 0, category: str | None = None
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` products by ascending id, after a given id (keyset paging).

        Args:
            limit: How many at most.
            after: Only ids above this one (0: from the start).
            category: Only this category, if given.
        """
        query = sa.select(*_PRODUCT_COLUMNS).where(products.c.id > after)
        if category is not None:
            query = query.where(products.c.category == category)
        query = query.order_by(products.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def insert_products(conn: Connection, catalog: pd.DataFrame) -> int:
    """Insert a catalog's new products inside a write transaction; return how many rows it has."""
    rows = _product_rows(catalog)
    insert_ignoring_duplicates(conn, products, rows)
    return len(rows)


def _product_rows(catalog: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a catalog's rows by ascending id.

    Writers lock the rows they upsert one by one; taking them in one order
    means two batches sharing products wait for each other, never deadlock.
    """
    rows = [
        {
            "id": int(r.product_id),
            "name": _text_or_none(r.name),
            "category": _text_or_none(r.category),
            "price": None if pd.isna(r.price) else float(r.price),
        }
        for r in catalog.itertuples(index=False)
    ]
    return sorted(rows, key=lambda row: row["id"])


def _availability(catalog: pd.DataFrame) -> list[tuple[int, bool]]:
    """Return (product id, available) for the products whose availability the batch sets."""
    if "available" not in catalog.columns:
        return []
    return sorted(
        (int(product_id), bool(available))
        for product_id, available in zip(catalog["product_id"], catalog["available"], strict=True)
        if available is not None and not (isinstance(available, float) and pd.isna(available))
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
