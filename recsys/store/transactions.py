"""Write transactions and chunked inserts shared by the store's writers.

Every write is all-or-nothing: one transaction, committed on success and
rolled back on any error, eagerly locked on SQLite so two writers queue
instead of failing at their first write.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

# SQLite caps bound parameters per statement; chunks keep IN (...) lists and
# multi-row inserts below that cap on every version.
CHUNK_ROWS = 900


def chunks(items: Sequence[Any], size: int = CHUNK_ROWS) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert rows, skipping those whose primary key exists (a concurrent writer's)."""
    if not rows:
        return
    dialect = conn.dialect.name
    stmt: sa.Executable
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - create_store_engine allows only the two
        raise ValueError(f"unsupported dialect {dialect}")
    for chunk in chunks(rows):
        conn.execute(stmt, list(chunk))


def write_transaction(engine: Engine) -> WriteTransaction:
    """Begin a write transaction (eagerly locked on SQLite)."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
    return WriteTransaction(conn)


class WriteTransaction:
    """Context manager: a connection in one transaction, committed on success."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def __enter__(self) -> Connection:
        self._tx = self._conn.begin()
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()
