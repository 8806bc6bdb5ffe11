"""The event store: products, users and interactions.

SQLAlchemy Core over SQLite or PostgreSQL (``recsys.store.engine``). Every
write is all-or-nothing: a batch is validated as a whole, then written in one
transaction, so a rejected batch leaves no row behind.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from recsys.data.events import (
    Event,
    EventIdConflictError,
    events_from_log,
    read_interactions_csv,
    unique_events,
)
from recsys.data.files import whole_file
from recsys.data.interactions import (
    CLICK,
    DISLIKE,
    EVENT_ID_COLUMN,
    EVENT_TYPES,
    INTERACTION_COLUMNS,
    PURCHASE,
    RATING,
    TIMESTAMP_COLUMN,
    TYPE_COLUMN,
    VALUE_COLUMN,
)
from recsys.data.ratings import EventWeights
from recsys.data.timestamps import format_utc, utc_now
from recsys.errors import DataFileError, RecsysError
from recsys.models.profile import Profile
from recsys.store.bulk import (
    TYPE_CODE_SQL,
    claim_file,
    epoch_seconds_sql,
    file_sha256,
    log_frame,
)
from recsys.store.engine import create_store_engine, lock_for_startup, retry_conflicts
from recsys.store.products import ProductCatalog, insert_products
from recsys.store.tables import interactions, products, users
from recsys.store.thread_connections import ThreadConnections
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
    """What serving needs to know of one user: what they did with each product, how often.

    Attributes:
        product_ids: The products the user had an event with, ascending.
        tallies: Per product, how many events of each type (``EVENT_TYPES``
            order) the user had with it.
        stars: Per product, the sum of the stars of the user's ratings of it.
        unavailable: The store could not be read: the history is unknown, not
            empty (serving then ranks a user the model knows from their
            training-time row).
        latest: Per product, when the user last had an event of any type
            with it: whole seconds since the epoch, rounded down, as
            ``recsys.models.profile.epoch_seconds`` makes them from training
            frames (an anonymous session's: the position of the product's
            last click). Empty when unknown.
    """

    product_ids: tuple[int, ...] = ()
    tallies: tuple[tuple[int, ...], ...] = ()
    stars: tuple[int, ...] = ()
    unavailable: bool = False
    latest: tuple[int, ...] = ()

    @classmethod
    def of(cls, counts: Iterable[Sequence[int]]) -> UserHistory:
        """Return the history of (product id, clicks, purchases) rows, in any order.

        The form from before event types: ``clicks`` counts every event of the
        product, ``purchases`` those that were purchases.
        """
        return cls.of_events(
            row
            for p, c, b in counts
            for row in ((p, CLICK, int(c) - int(b), 0), (p, PURCHASE, int(b), 0))
            if row[2]
        )

    @classmethod
    def of_events(cls, rows: Iterable[Sequence[Any]]) -> UserHistory:
        """Return the history of (product id, type, count, stars[, latest]) rows, in any order.

        ``type`` is a name of ``EVENT_TYPES`` or its code; ``stars`` sums the
        values of the rows' ratings (0 for other types); ``latest`` is when
        the row's latest event happened (whole seconds since the epoch). A
        product may come in several rows: its latest is the largest of
        theirs, and when any row lacks one, every product's is unknown.
        """
        # Per product: a count per type, then the stars, then the latest time.
        by_product: dict[int, list[int]] = {}
        timed = True
        for row in rows:
            # The store's rows have the time: trying them first costs nothing
            # (a length test before every row cost a sixth of the loop).
            try:
                product_id, kind, count, stars, seconds = row
            except ValueError:
                product_id, kind, count, stars = row
                seconds = None
            code = kind if isinstance(kind, int) else _TYPE_CODES.get(kind, CLICK)
            tally = by_product.get(product_id)
            if tally is None:
                tally = by_product.setdefault(int(product_id), _NO_TALLY.copy())
            tally[code] += int(count)
            if stars:
                tally[-2] += int(stars)
            if seconds is None:
                timed = False
            elif seconds > tally[-1]:
                tally[-1] = int(seconds)
        if not by_product:
            return cls()
        # One pass over the products makes the fields and what every answer
        # reads of them besides, instead of a pass for each of those.
        product_ids = sorted(by_product)
        tallies = []
        stars = []
        latest = []
        purchased = []
        disliked = []
        events = 0
        for product_id in product_ids:
            tally = by_product[product_id]
            latest.append(tally.pop())
            stars.append(tally.pop())
            events += sum(tally)
            if tally[PURCHASE]:
                purchased.append(product_id)
            if tally[DISLIKE]:
                disliked.append(product_id)
            tallies.append(tuple(tally))
        history = cls(
            tuple(product_ids), tuple(tallies), tuple(stars), latest=tuple(latest) if timed else ()
        )
        # Kept where the cached properties keep them (frozen: beside the fields).
        history.__dict__.update(
            purchased=frozenset(purchased), disliked=frozenset(disliked), events=events
        )
        return history

    @property
    def clicks(self) -> tuple[int, ...]:
        """How many events of any type the user had with each product."""
        return tuple(sum(tally) for tally in self.tallies)

    @property
    def purchases(self) -> tuple[int, ...]:
        """How many times the user bought each product."""
        return tuple(tally[PURCHASE] for tally in self.tallies)

    @property
    def has_events(self) -> bool:
        """Whether any interaction of the user is recorded."""
        return bool(self.product_ids)

    @cached_property
    def events(self) -> int:
        """How many interactions of the user are recorded."""
        return sum(self.clicks)

    @cached_property
    def purchased(self) -> frozenset[int]:
        """The products the user bought."""
        return self._with(PURCHASE)

    @cached_property
    def disliked(self) -> frozenset[int]:
        """The products the user disliked: never in their lists again."""
        return self._with(DISLIKE)

    def _with(self, code: int) -> frozenset[int]:
        return frozenset(
            p for p, tally in zip(self.product_ids, self.tallies, strict=True) if tally[code]
        )

    def counts(self) -> list[list[int]]:
        """Return [product id, clicks, purchases] rows (``of``'s input; JSON-able)."""
        return [
            list(row) for row in zip(self.product_ids, self.clicks, self.purchases, strict=True)
        ]

    def event_rows(self) -> list[list[int]]:
        """Return [product id, type code, count, stars[, latest]] rows (``of_events``'s input).

        JSON-able. Each row of a product carries the product's latest time,
        when it is known.
        """
        # A known time is the rows' fifth element; an unknown one leaves rows of four.
        times: list[tuple[int, ...]] = [(t,) for t in self.latest] or [()] * len(self.product_ids)
        return [
            [p, code, count, stars if code == RATING else 0, *time]
            for p, tally, stars, time in zip(
                self.product_ids, self.tallies, self.stars, times, strict=True
            )
            for code, count in enumerate(tally)
            if count
        ]

    @cached_property
    def product_array(self) -> np.ndarray:
        """The product ids as an int64 array (made once per history)."""
        return np.array(self.product_ids, dtype=np.int64)

    def profile(self, weights: EventWeights) -> Profile:
        """Return the user's products with their engagement, as the models were trained on it.

        ``derive_ratings``'s sum: each event's points, a rating's times its stars.
        """
        points = weights.points()
        # From one flat run of counts: building it from the nested tuples cost twice as much.
        width = len(EVENT_TYPES)
        tallies = np.fromiter(
            chain.from_iterable(self.tallies), np.float64, len(self.tallies) * width
        ).reshape(-1, width)
        stars = np.array(self.stars, dtype=np.float64)
        engagement = tallies @ points + (stars - tallies[:, RATING]) * points[RATING]
        latest = np.array(self.latest, dtype=np.int64) if self.latest else None
        return Profile(self.product_array, engagement, latest)


_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}
# A product's tally before its first row: no event of any type, no stars, no
# time (below every time, so that the first row's is the largest so far).
_NO_TALLY = [0] * (len(EVENT_TYPES) + 1) + [-(2**63)]


class Ingested(NamedTuple):
    """What a batch of events did to the store.

    Attributes:
        new: Events stored by this batch.
        known: Events whose event_id the store (or the batch) already held:
            stored before, not again.
        purchases: How many of the new events are purchases.
    """

    new: int
    known: int
    purchases: int = 0


@dataclass(frozen=True)
class HistoryEntry:
    """One interaction of a user's history.

    Attributes:
        id: The interaction's row id (with ``created_at``, the paging key).
        product_id: The product clicked.
        purchased: Whether it is a purchase.
        created_at: When it happened, naive UTC.
        type: One of ``EVENT_TYPES``.
        value: A rating's stars; None for every other type.
    """

    id: int
    product_id: int
    purchased: bool
    created_at: datetime
    type: str = "click"
    value: int | None = None


@dataclass(frozen=True)
class StoreCounts:
    """How many rows each table holds."""

    products: int
    users: int
    interactions: int


class _EpochSeconds(FunctionElement[int]):
    """SQL: a naive UTC timestamp as whole seconds since the epoch (``epoch_seconds_sql``)."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(_EpochSeconds)
def _compile_epoch_seconds(element: _EpochSeconds, compiler: Any, **kw: Any) -> str:
    return epoch_seconds_sql(compiler.dialect.name, compiler.process(element.clauses, **kw))


# Built once: the serving path runs it on every uncached answer, and building
# and keying a statement costs about a fifth of running it.
_USER_HISTORY = (
    sa.select(
        interactions.c.product_id,
        interactions.c.type,
        sa.func.count(),
        sa.func.sum(interactions.c.value),
        _EpochSeconds(sa.func.max(interactions.c.created_at)),
    )
    .where(interactions.c.user_id == sa.bindparam("user_id"))
    .group_by(interactions.c.product_id, interactions.c.type)
)


# Many users' histories at once (batch recommendations): the same rows, by user.
_USERS_HISTORIES = (
    sa.select(
        interactions.c.user_id,
        interactions.c.product_id,
        interactions.c.type,
        sa.func.count(),
        sa.func.sum(interactions.c.value),
        _EpochSeconds(sa.func.max(interactions.c.created_at)),
    )
    .where(interactions.c.user_id.in_(sa.bindparam("user_ids", expanding=True)))
    .group_by(interactions.c.user_id, interactions.c.product_id, interactions.c.type)
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
        # An SQLite file's history reads each go through their thread's own
        # connection (an in-memory database's pool already keeps one per thread).
        self._history_reads = (
            ThreadConnections(engine)
            if self._history_sql is not None and isinstance(engine.pool, sa.pool.QueuePool)
            else None
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
        """Read no row of the events table; raise one of ``STORE_OUTAGES`` if that fails.

        Naming the table and its columns, not ``SELECT 1``: a database that
        answers but lacks the service's tables (nobody ran ``init``), or holds
        them as an older schema had them, cannot serve either.
        """
        with self.engine.connect() as conn:
            conn.execute(sa.select(interactions).limit(0))

    def dispose(self) -> None:
        """Close every pooled connection (and the threads' own, once they are done with them)."""
        self.engine.dispose()
        if self._history_reads is not None:
            self._history_reads.forget()

    def _write(self) -> WriteTransaction:
        """Begin a write transaction (eagerly locked on SQLite)."""
        return write_transaction(self.engine)

    # -- interactions ----------------------------------------------------------

    def add_interactions(self, events: Sequence[Event]) -> int:
        """Record a batch of events (``ingest``) and return how many were new."""
        return self.ingest(events).new

    def ingest(self, events: Sequence[Event]) -> Ingested:
        """Record a batch of events in one transaction, or none of them.

        Unknown users are created on the fly; an unknown product rejects the
        whole batch. An event whose event_id the store already holds, with the
        same content, is not stored again (a retried batch stores nothing
        twice); with other content it rejects the batch.

        Args:
            events: Validated events (``events_from_json`` makes them from JSON).

        Returns:
            How many events were stored, and how many were already known.

        Raises:
            UnknownProductError: An event names a product not in the catalog;
                nothing is written.
            EventIdConflictError: An event_id names another event (in the
                store or earlier in the batch); nothing is written.
        """
        if not events:
            return Ingested(0, 0)

        def insert() -> Ingested:
            with self._write() as conn:
                return _insert_events(conn, events)

        return _retry_event_id_races(lambda: retry_conflicts(insert))

    def user_history(self, user_id: int) -> UserHistory:
        """Return, in one query, how many events of each type the user had with each product."""
        return UserHistory.of_events(self.user_history_rows(user_id))

    def user_history_rows(self, user_id: int) -> Sequence[Sequence[Any]]:
        """Return the rows ``user_history`` counts: (product id, type, count, stars, latest).

        ``latest``: the time of the latest event of the row, in whole seconds
        since the epoch, rounded down (``recsys.models.profile.epoch_seconds``).

        Every uncached answer makes this read, and without Redis so does every
        cached one: rows equal to those an answer was made from are the same
        history, with no need to count them again. On SQLite it goes through
        a driver connection itself: SQLAlchemy's per-statement work (the
        BEGIN it emits, events, result objects) cost three times the query,
        and on a file each thread keeps its own connection
        (``ThreadConnections``), which spares the pool's checkout and checkin
        too, and returns the rows it read before while nothing was committed
        to the database since. PostgreSQL keeps the full path, where the
        statement deadline watches it. Callers must not change the rows.
        """
        sql = self._history_sql
        if sql is not None:
            if self._history_reads is not None:
                return self._history_reads.read(sql, (user_id,))
            return self._read_driver(sql, (user_id,))
        with self.engine.connect() as conn:
            return conn.execute(_USER_HISTORY, {"user_id": user_id}).all()

    def user_histories(self, user_ids: Sequence[int]) -> dict[int, UserHistory]:
        """Return many users' histories, as ``user_history`` makes each, in few queries.

        Users without events are left out of the answer.
        """
        rows: dict[int, list[tuple[int, str, int, int | None, int]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(user_ids))):
                for user, product, kind, count, stars, latest in conn.execute(
                    _USERS_HISTORIES, {"user_ids": list(chunk)}
                ):
                    rows.setdefault(int(user), []).append((product, kind, count, stars, latest))
        return {user: UserHistory.of_events(events) for user, events in rows.items()}

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
            interactions.c.type,
            interactions.c.value,
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
            HistoryEntry(
                int(r.id), int(r.product_id), bool(r.purchased), r.created_at, r.type, r.value
            )
            for r in rows
        ]

    def interactions_frame(self) -> pd.DataFrame:
        """Return every interaction in insertion order, in the log's schema.

        Returns:
            Columns ``user_id, product_clicked, purchased`` (int64; purchased
            0/1), ``type`` (categorical over ``EVENT_TYPES``) and ``value``
            (int64, 0 where none): ``read_interactions``'s frame.
        """
        c = interactions.c
        query = sa.select(
            c.user_id,
            c.product_id,
            sa.cast(c.purchased, sa.Integer),
            sa.literal_column(TYPE_CODE_SQL),
            sa.func.coalesce(c.value, 0),
        ).order_by(c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return log_frame(np.array(rows, dtype=np.int64).reshape(-1, 5))

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

    def bootstrap(
        self, catalog: pd.DataFrame, log: pd.DataFrame, source: Path | None = None
    ) -> bool:
        """Fill an empty store with a catalog and an interaction log.

        One transaction, under a lock, so servers starting together fill the
        store once; a store that already has data is left alone.

        Args:
            catalog: ``product_id, name, category, price`` (name, category and
                price may be missing).
            log: ``user_id, product_clicked, purchased[, timestamp]`` (the
                interactions.csv schema); users are created from it.
            source: The log's file: recorded by its SHA-256 as
                ``import_interactions`` records a file, so that importing it
                later is refused unless meant (``--append``).

        Returns:
            Whether anything was written.
        """
        events = events_from_log(log)
        digest = file_sha256(source) if source is not None else None
        with self._write() as conn:
            lock_for_startup(conn)
            has_rows = (
                conn.execute(sa.select(products.c.id).limit(1)).first()
                or conn.execute(sa.select(interactions.c.id).limit(1)).first()
            )
            if has_rows:
                return False
            insert_products(conn, catalog)
            if source is not None and digest is not None:
                claim_file(conn, source, digest, len(events), append=True)
            _insert_events(conn, events)
        return True

    # -- files -------------------------------------------------------------

    def export_interactions(self, path: str | Path, include_timestamps: bool = False) -> int:
        """Write every interaction to a CSV file in the interactions.csv schema.

        A store of clicks and purchases alone is written in the bundled log's
        three columns. Whatever else the store holds comes in the optional
        columns ``import_interactions`` reads back, so an export imports into
        an empty store as the same events: ``type`` when any event is not a
        click or a purchase, ``value`` when any is a rating, ``event_id``
        when any has one.

        Args:
            path: Where to write. It is replaced only once every row is
                written: a read that fails part-way leaves it as it was.
            include_timestamps: Add a column ``timestamp`` (ISO-8601 UTC),
                which ``import_interactions`` reads back.

        Returns:
            How many rows were written.
        """
        typed, rated, identified = self._optional_export_columns()
        columns = [
            interactions.c.user_id,
            interactions.c.product_id,
            interactions.c.purchased,
            interactions.c.created_at,
            interactions.c.type,
            interactions.c.value,
            interactions.c.event_id,
        ]
        optional = [
            (include_timestamps, TIMESTAMP_COLUMN),
            (typed, TYPE_COLUMN),
            (rated, VALUE_COLUMN),
            (identified, EVENT_ID_COLUMN),
        ]
        header = list(INTERACTION_COLUMNS) + [name for wanted, name in optional if wanted]
        written = 0
        with (
            whole_file(Path(path)) as partial,
            self.engine.connect() as conn,
            open(partial, "w", newline="", encoding="utf-8") as out,
        ):
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            result = conn.execution_options(yield_per=10_000).execute(
                sa.select(*columns).order_by(interactions.c.id)
            )
            for user_id, product_id, purchased, created_at, kind, value, event_id in result:
                row = [user_id, product_id, int(purchased)]
                if include_timestamps:
                    row.append(format_utc(created_at))
                if typed:
                    row.append(kind)
                if rated:
                    row.append("" if value is None else value)
                if identified:
                    row.append("" if event_id is None else event_id)
                writer.writerow(row)
                written += 1
        return written

    def _optional_export_columns(self) -> tuple[bool, bool, bool]:
        """Return whether the store holds events of other types, ratings, event ids."""
        plain = interactions.c.type.in_([EVENT_TYPES[CLICK], EVENT_TYPES[PURCHASE]])

        def any_row(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
            return sa.exists(sa.select(interactions.c.id).where(condition))

        query = sa.select(
            any_row(~plain),
            any_row(interactions.c.type == EVENT_TYPES[RATING]),
            any_row(interactions.c.event_id.is_not(None)),
        )
        with self.engine.connect() as conn:
            typed, rated, identified = conn.execute(query).one()
        return bool(typed), bool(rated), bool(identified)

    def import_interactions(
        self, path: str | Path, progress: bool = False, append: bool = False
    ) -> Ingested:
        """Load an interactions CSV into the store in one transaction.

        The file must have the header ``user_id,product_clicked,purchased``,
        optionally followed by ``timestamp``, ``type``, ``value`` and
        ``event_id`` (``recsys.data.interactions.load_interactions``). Every
        line is checked before anything is written. A file with event ids
        stores only the events the store does not hold yet; a file without
        them is recognised by its SHA-256 and refused a second time unless
        ``append``.

        Args:
            path: The CSV file.
            progress: Show a tqdm progress bar on stderr.
            append: Import a file without event ids even if it was imported before.

        Returns:
            How many interactions were written, and how many were already known.

        Raises:
            DataFileError: The file is unreadable, a line is bad (named by
                its 1-based line number, header = line 1), an event_id names
                another event, or the file was imported before; nothing is written.
        """
        path = Path(path)
        events = read_interactions_csv(path)
        by_ids = all(e.event_id is not None for e in events)
        digest = None if by_ids else file_sha256(path)

        def insert() -> Ingested:
            with self._write() as conn:
                # Before the bar: a refused file shows nothing but its error.
                if digest is not None:
                    claim_file(conn, path, digest, len(events), append)
                with _progress_bar(progress, len(events), "writing") as bar:
                    return _insert_events(conn, events, on_chunk=bar.update)

        try:
            return _retry_event_id_races(lambda: retry_conflicts(insert))
        except UnknownProductError as exc:
            # Data lines start at line 2 (line 1 is the header).
            raise DataFileError(
                path,
                f"unknown product_id {exc.product_id}: not in the catalog",
                line=exc.index + 2,
            ) from None
        except EventIdConflictError as exc:
            earlier = f"line {exc.earlier + 2}" if exc.earlier is not None else ""
            raise DataFileError(path, exc.problem(earlier), line=exc.index + 2) from None


def _retry_event_id_races(transaction: Callable[[], Ingested]) -> Ingested:
    """Run an ingest again when a concurrent batch stored one of its event_ids first.

    On PostgreSQL two transactions may both find an event_id new; the unique
    index makes the second wait for the first and then fail. Run again, it
    finds the id stored and compares the contents like any retry.
    """
    for attempt in range(3):
        try:
            return transaction()
        except sa.exc.IntegrityError as exc:
            if attempt == 2 or "uq_interactions_event_id" not in str(exc.orig):
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _insert_events(
    conn: Connection, events: Sequence[Event], on_chunk: Callable[[int], object] | None = None
) -> Ingested:
    """Check every product exists, skip the events already stored, create users, insert.

    Args:
        conn: A connection inside a write transaction.
        events: The events.
        on_chunk: Called with the number of rows after each inserted chunk.

    Raises:
        UnknownProductError: For the first event naming a product not in the catalog.
        EventIdConflictError: For the first event whose event_id names another event.
    """
    now = utc_now()
    catalog_ids: set[int] = set()
    for chunk in chunks(sorted({e.product_id for e in events})):
        found = conn.execute(sa.select(products.c.id).where(products.c.id.in_(chunk)))
        catalog_ids.update(found.scalars())
    for index, e in enumerate(events):
        if e.product_id not in catalog_ids:
            raise UnknownProductError(index, e.product_id)
    fresh, repeated = unique_events(events)
    stored = _stored_events(conn, [events[i].event_id for i in fresh])
    if stored:
        kept = []
        for index in fresh:
            event = events[index]
            previous = stored.get(event.event_id) if event.event_id is not None else None
            if previous is None:
                kept.append(index)
                continue
            difference = event.differs_from(previous)
            if difference is not None:
                raise EventIdConflictError(index, event.event_id or "", difference)
        repeated += len(fresh) - len(kept)
        fresh = kept
    batch = [events[i] for i in fresh]
    new_users = [{"id": u, "created_at": now} for u in sorted({e.user_id for e in batch})]
    insert_ignoring_duplicates(conn, users, new_users)
    rows = [
        {
            "user_id": e.user_id,
            "product_id": e.product_id,
            "purchased": e.purchased,
            "created_at": e.created_at or now,
            "type": e.type,
            "value": e.value,
            "event_id": e.event_id,
        }
        for e in batch
    ]
    for chunk in chunks(rows):
        conn.execute(interactions.insert(), list(chunk))
        if on_chunk is not None:
            on_chunk(len(chunk))
    if on_chunk is not None and repeated:
        on_chunk(repeated)
    return Ingested(len(rows), repeated, sum(1 for e in batch if e.purchased))


_STORED_COLUMNS = (
    interactions.c.event_id,
    interactions.c.user_id,
    interactions.c.product_id,
    interactions.c.type,
    interactions.c.value,
    interactions.c.created_at,
)
# PostgreSQL takes the whole batch's ids as one array parameter: an IN list
# of a thousand parameters cost more to build and plan than the insert itself.
_STORED_BY_ARRAY = sa.select(*_STORED_COLUMNS).where(
    interactions.c.event_id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
)


def _stored_events(conn: Connection, event_ids: list[str | None]) -> dict[str, Event]:
    """Return the stored events of these event_ids (those the store holds), in one read."""
    wanted = sorted({i for i in event_ids if i is not None})
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        results = [conn.execute(_STORED_BY_ARRAY, {"ids": wanted})]
    else:
        results = [
            conn.execute(sa.select(*_STORED_COLUMNS).where(interactions.c.event_id.in_(chunk)))
            for chunk in chunks(wanted)
        ]
    return {
        event_id: Event(int(user_id), int(product_id), False, created_at, kind, value, event_id)
        for result in results
        for event_id, user_id, product_id, kind, value, created_at in result
    }


def _progress_bar(enabled: bool, total: int, description: str):
    """Return a tqdm bar on stderr, or a silent one when disabled."""
    from tqdm import tqdm  # only the import command shows progress

    return tqdm(total=total, unit="rows", desc=description, disable=not enabled)
