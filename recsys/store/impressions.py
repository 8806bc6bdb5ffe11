"""How often each product was shown: counts added in batches by every process, read whole.

Serving processes count the products they show in memory and add their
counts here every few seconds (``recsys.online.impressions``); one upsert adds
to each product's running total, so any number of gunicorn workers and
servers add to the same totals without reading them first.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from recsys.store.engine import retry_conflicts
from recsys.store.tables import product_impressions
from recsys.store.transactions import chunks, write_transaction


class ImpressionCounts:
    """Adds to and reads the products' impression totals in the store at ``engine``.

    Args:
        engine: The event store's engine (the schema must be migrated).
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, counts: Mapping[int, int]) -> None:
        """Add impressions to each product's total, in one transaction.

        Args:
            counts: Product id -> impressions shown since the last call (> 0).
        """
        # Ascending ids: two processes adding to the same products lock their
        # rows in one order, so they wait for each other and never deadlock.
        rows = [{"product_id": int(p), "impressions": int(n)} for p, n in sorted(counts.items())]
        if not rows:
            return

        def upsert() -> None:
            with write_transaction(self.engine) as conn:
                insert = (
                    postgresql.insert(product_impressions)
                    if conn.dialect.name == "postgresql"
                    else sqlite.insert(product_impressions)
                )
                statement = insert.on_conflict_do_update(
                    index_elements=[product_impressions.c.product_id],
                    set_={
                        "impressions": product_impressions.c.impressions
                        + insert.excluded.impressions
                    },
                )
                for chunk in chunks(rows):
                    conn.execute(statement, list(chunk))

        retry_conflicts(upsert)

    def totals(self) -> dict[int, int]:
        """Return every product's impressions so far (products never shown are absent)."""
        query = sa.select(product_impressions.c.product_id, product_impressions.c.impressions)
        with self.engine.connect() as conn:
            return {int(p): int(n) for p, n in conn.execute(query)}
