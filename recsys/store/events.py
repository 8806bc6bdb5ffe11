"""The event store: products, users and interactions.

SQLAlchemy Core over SQLite or PostgreSQL (``recsys.store.engine``). Every
write is all-or-nothing: a batch is validated as a whole, then written in one
transaction, so a rejected batch leaves no row behind.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.data.events import Event, events_from_log, read_interactions_csv
from recsys.data.interactions import INTERACTION_COLUMNS, TIMESTAMP_COLUMN
from recsys.data.ratings import RatingWeights
from recsys.data.timestamps import format_utc, utc_now
from recsys.errors import DataFileError, RecsysError
from recsys.models.profile import Profile
from recsys.store.engine import create_store_engine, lock_for_startup, retry_conflicts
from recsys.store.products import ProductCatalog, insert_products
from recsys.store.tables import interactions, products, users
from recsys.store.transactions import (
    WriteTransaction,
    chunks,
    insert_ignoring_duplicates,
    write_transaction,
)
from recsys.store.user_data import UserData


class UnknownProductError(RecsysError, LookupError):
    """An event names a product the catalog does not have (a 422 for the API).

    Args:
        index: 0-based position of the first such event in its batch.
        product_id: The unknown product id.
    """

    def __init__(self, index: int, product_id: int):
        self.index = index
        self.product_id = product_id
        super().__init__(f"event {index}: unknown product_id {product_id}")


@dataclass(frozen=True)
class UserHistory:
    """What serving needs to know of one user: how often they clicked and bought each product.

    Attributes:
        product_ids: The products the user clicked, ascending.
        clicks: How many times they clicked each (at least 1).
        purchases: How many of those clicks ended in a purchase.
        unavailable: The store could not be read: the history is unknown, not
            empty (serving then ranks a user the model knows from their
            training-time row).
    """

    product_ids: tuple[int, ...] = ()
    clicks: tuple[int, ...] = ()
    purchases: tuple[int, ...] = ()
    unavailable: bool = False

    @classmethod
    def of(cls, counts: Iterable[Sequence[int]]) -> UserHistory:
        """Return the history of (product id, clicks, purchases) rows, in any order."""
        rows = sorted((int(p), int(c), int(b)) for p, c, b in counts)
        if not rows:
            return cls()
        product_ids, clicks, purchases = zip(*rows, strict=True)
        return cls(product_ids, clicks, purchases)

    @property
    def has_events(self) -> bool:
        """Whether any interaction of the user is recorded."""
        return bool(self.product_ids)

    @property
    def events(self) -> int:
        """How many interactions of the user are recorded."""
        return sum(self.clicks)

    @cached_property
    def purchased(self) -> frozenset[int]:
        """The products the user bought."""
        return frozenset(p for p, b in zip(self.product_ids, self.purchases, strict=True) if b)

    def counts(self) -> list[list[int]]:
        """Return [product id, clicks, purchases] rows (``of``'s input; JSON-able)."""
        return [
            list(row) for row in zip(self.product_ids, self.clicks, self.purchases, strict=True)
        ]

    @cached_property
    def product_array(self) -> np.ndarray:
        """The product ids as an int64 array (made once per history)."""
        return np.array(self.product_ids, dtype=np.int64)

    def profile(self, weights: RatingWeights) -> Profile:
        """Return the user's products with their engagement, as the models were trained on it."""
        return Profile(
            self.product_array,
            weights.click_weight * np.array(self.clicks, dtype=np.float64)
            + weights.purchase_weight * np.array(self.purchases, dtype=np.float64),
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One interaction of a user's history.

    Attributes:
        id: The interaction's row id (with ``created_at``, the paging key).
        product_id: The product clicked.
        purchased: Whether the click ended in a purchase.
        created_at: When it happened, naive UTC.
    """

    id: int
    product_id: int
    purchased: bool
    created_at: datetime


@dataclass(frozen=True)
class StoreCounts:
    """How many rows each table holds."""

    products: int
    users: int
    interactions: int


# Built once: the serving path runs it on every uncached answer, and building
# and keying a statement costs about a fifth of running it.
_USER_HISTORY = (
    sa.select(
        interactions.c.product_id,
        sa.func.count(),
        sa.func.sum(sa.cast(interactions.c.purchased, sa.Integer)),
    )
    .where(interactions.c.user_id == sa.bindparam("user_id"))
    .group_by(interactions.c.product_id)
)


# Many users' histories at once (batch recommendations): the same counts, by user.
_USERS_HISTORIES = (
    sa.select(
        interactions.c.user_id,
        interactions.c.product_id,
        sa.func.count(),
        sa.func.sum(sa.cast(interactions.c.purchased, sa.Integer)),
    )
    .where(interactions.c.user_id.in_(sa.bindparam("user_ids", expanding=True)))
    .group_by(interactions.c.user_id, interactions.c.product_id)
)


class EventStore(ProductCatalog, UserData):
    """Reads and writes products, users and interactions.

    The catalog's reads and writes come from ``ProductCatalog``
    (``recsys.store.products``); deleting, exporting and pruning users' data
    from ``UserData`` (``recsys.store.user_data``).

    Args:
        engine: From ``create_store_engine``; the schema must exist
            (``recsys.store.migrate.upgrade_to_head``).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        # One statement, autocommitted (no BEGIN): a consistent read on its own.
        self._history_sql = (
            str(_USER_HISTORY.compile(engine)) if engine.dialect.name == "sqlite" else None
        )

    @classmethod
    def from_url(cls, url: str, timeout_seconds: float = 5.0) -> EventStore:
        """Open the store at a database URL (nothing connects yet; no schema is created).

        Args:
            url: ``sqlite:///FILE`` or ``postgresql+psycopg://...``.
            timeout_seconds: The longest wait for the database (see ``create_store_engine``).
        """
        return cls(create_store_engine(url, timeout_seconds))

    def ping(self) -> None:
        """Run a trivial query; raise one of ``STORE_OUTAGES`` if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _write(self) -> WriteTransaction:
        """Begin a write transaction (eagerly locked on SQLite)."""
        return write_transaction(self.engine)

    # -- interactions ----------------------------------------------------------

    def add_interactions(self, events: Sequence[Event]) -> int:
        """Record a batch of events in one transaction, or none of them.

        Unknown users are created on the fly; an unknown product rejects the
        whole batch.

        Args:
            events: Validated events (``events_from_json`` makes them from JSON).

        Returns:
            How many events were written.

        Raises:
            UnknownProductError: An event names a product not in the catalog;
                nothing is written.
        """
        if not events:
            return 0

        def insert() -> int:
            with self._write() as conn:
                return _insert_events(conn, events)

        return retry_conflicts(insert)

    def user_history(self, user_id: int) -> UserHistory:
        """Return, in one query, how often the user clicked and bought each product.

        Every uncached answer makes this read. On SQLite it goes through the
        pooled driver connection itself: SQLAlchemy's per-statement work (the
        BEGIN it emits, events, result objects) cost three times the query.
        PostgreSQL keeps the full path, where the statement deadline watches it.
        """
        rows: Sequence[Sequence[Any]]
        if self._history_sql is not None:
            rows = self._read_driver(self._history_sql, (user_id,))
        else:
            with self.engine.connect() as conn:
                rows = conn.execute(_USER_HISTORY, {"user_id": user_id}).all()
        return UserHistory.of(rows)

    def user_histories(self, user_ids: Sequence[int]) -> dict[int, UserHistory]:
        """Return many users' histories, as ``user_history`` makes each, in few queries.

        Users without events are left out of the answer.
        """
        counts: dict[int, list[tuple[int, int, int]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(user_ids))):
                for user, product, clicks, bought in conn.execute(
                    _USERS_HISTORIES, {"user_ids": list(chunk)}
                ):
                    counts.setdefault(int(user), []).append((product, clicks, bought))
        return {user: UserHistory.of(rows) for user, rows in counts.items()}

    def _read_driver(self, sql: str, params: tuple) -> Sequence[Sequence[Any]]:
        """Run one read on a pooled driver connection; errors become SQLAlchemy's own."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchall()
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                sql, params, exc, self.engine.dialect.loaded_dbapi.Error
            ) from exc
        finally:
            connection.close()

    def has_user(self, user_id: int) -> bool:
        """Return whether the user exists (has been seen in an event)."""
        query = sa.select(users.c.id).where(users.c.id == user_id)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def user_interactions(
        self, user_id: int, limit: int, before: tuple[datetime, int] | None = None
    ) -> list[HistoryEntry]:
        """Return up to ``limit`` of a user's interactions, newest first.

        Ordered by time, then row id, both descending; the index on
        ``(user_id, created_at, id)`` serves both the filter and the order.

        Args:
            user_id: The user.
            limit: How many at most.
            before: ``(created_at, id)`` of the last entry of the previous
                page: only older entries follow (keyset paging).
        """
        query = sa.select(
            interactions.c.id,
            interactions.c.product_id,
            interactions.c.purchased,
            interactions.c.created_at,
        ).where(interactions.c.user_id == user_id)
        if before is not None:
            query = query.where(
                sa.tuple_(interactions.c.created_at, interactions.c.id) < sa.tuple_(*before)
            )
        query = query.order_by(interactions.c.created_at.desc(), interactions.c.id.desc()).limit(
            limit
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            HistoryEntry(int(r.id), int(r.product_id), bool(r.purchased), r.created_at)
            for r in rows
        ]

    def interactions_frame(self) -> pd.DataFrame:
        """Return every interaction in insertion order, in the log's schema.

        Returns:
            Columns ``user_id, product_clicked, purchased`` (int64; purchased 0/1),
            the shape ``recsys.data.interactions.load_interactions`` returns.
        """
        query = sa.select(
            interactions.c.user_id, interactions.c.product_id, interactions.c.purchased
        ).order_by(interactions.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS)).astype("int64")

    def counts(self) -> StoreCounts:
        """Return the row count of every table."""
        with self.engine.connect() as conn:

            def count(table: sa.Table) -> int:
                return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

            return StoreCounts(count(products), count(users), count(interactions))

    # -- bootstrap ---------------------------------------------------------

    def is_empty(self) -> bool:
        """Return whether the store holds no product and no interaction."""
        c = self.counts()
        return c.products == 0 and c.interactions == 0

    def bootstrap(self, catalog: pd.DataFrame, log: pd.DataFrame) -> bool:
        """Fill an empty store with a catalog and an interaction log.

        One transaction, under a lock, so servers starting together fill the
        store once; a store that already has data is left alone.

        Args:
            catalog: ``product_id, name, category, price`` (name, category and
                price may be missing).
            log: ``user_id, product_clicked, purchased[, timestamp]`` (the
                interactions.csv schema); users are created from it.

        Returns:
            Whether anything was written.
        """
        events = events_from_log(log)
        with self._write() as conn:
            lock_for_startup(conn)
            has_rows = (
                conn.execute(sa.select(products.c.id).limit(1)).first()
                or conn.execute(sa.select(interactions.c.id).limit(1)).first()
            )
            if has_rows:
                return False
            insert_products(conn, catalog)
            _insert_events(conn, events)
        return True

    # -- files -------------------------------------------------------------

    def export_interactions(self, path: str | Path, include_timestamps: bool = False) -> int:
        """Write every interaction to a CSV file in the interactions.csv schema.

        Args:
            path: Where to write. It is replaced only once every row is
                written: a read that fails part-way leaves it as it was.
            include_timestamps: Add a fourth column ``timestamp`` (ISO-8601 UTC),
                which ``import_interactions`` reads back.

        Returns:
            How many rows were written.
        """
        columns = [
            interactions.c.user_id,
            interactions.c.product_id,
            interactions.c.purchased,
            interactions.c.created_at,
        ]
        header = list(INTERACTION_COLUMNS)
        if include_timestamps:
            header.append(TIMESTAMP_COLUMN)
        written = 0
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with (
                self.engine.connect() as conn,
                open(partial, "w", newline="", encoding="utf-8") as out,
            ):
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(header)
                result = conn.execution_options(yield_per=10_000).execute(
                    sa.select(*columns).order_by(interactions.c.id)
                )
                for user_id, product_id, purchased, created_at in result:
                    row = [user_id, product_id, int(purchased)]
                    if include_timestamps:
                        row.append(format_utc(created_at))
                    writer.writerow(row)
                    written += 1
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return written

    def import_interactions(self, path: str | Path, progress: bool = False) -> int:
        """Load an interactions CSV into the store in one transaction.

        The file must have the header ``user_id,product_clicked,purchased``,
        optionally followed by ``timestamp``. Every line is checked before
        anything is written.

        Args:
            path: The CSV file.
            progress: Show a tqdm progress bar on stderr.

        Returns:
            How many interactions were written.

        Raises:
            DataFileError: The file is unreadable or a line is bad (named by
                its 1-based line number, header = line 1); nothing is written.
        """
        events = read_interactions_csv(path)
        try:
            with self._write() as conn, _progress_bar(progress, len(events), "writing") as bar:
                return _insert_events(conn, events, on_chunk=bar.update)
        except UnknownProductError as exc:
            # Data lines start at line 2 (line 1 is the header).
            raise DataFileError(
                path,
                f"unknown product_id {exc.product_id}: not in the catalog",
                line=exc.index + 2,
            ) from None


def _insert_events(
    conn: Connection, events: Sequence[Event], on_chunk: Callable[[int], object] | None = None
) -> int:
    """Check every product exists, create missing users, insert the events.

    Args:
        conn: A connection inside a write transaction.
        events: The events.
        on_chunk: Called with the number of rows after each inserted chunk.
    """
    now = utc_now()
    known: set[int] = set()
    for chunk in chunks(sorted({e.product_id for e in events})):
        found = conn.execute(sa.select(products.c.id).where(products.c.id.in_(chunk)))
        known.update(found.scalars())
    for index, e in enumerate(events):
        if e.product_id not in known:
            raise UnknownProductError(index, e.product_id)
    new_users = [{"id": u, "created_at": now} for u in sorted({e.user_id for e in events})]
    insert_ignoring_duplicates(conn, users, new_users)
    rows = [
        {
            "user_id": e.user_id,
            "product_id": e.product_id,
            "purchased": e.purchased,
            "created_at": e.created_at or now,
        }
        for e in events
    ]
    for chunk in chunks(rows):
        conn.execute(interactions.insert(), list(chunk))
        if on_chunk is not None:
            on_chunk(len(chunk))
    return len(events)


def _progress_bar(enabled: bool, total: int, description: str):
    """Return a tqdm bar on stderr, or a silent one when disabled."""
    from tqdm import tqdm  # only the import command shows progress

    return tqdm(total=total, unit="rows", desc=description, disable=not enabled)
