"""The event store: products, users and interactions in SQLite or PostgreSQL.

SQLAlchemy Core over one of two back-ends: an SQLite file (the embedded
default, in WAL mode so readers never wait for the writer) or PostgreSQL when
the URL says ``postgresql+psycopg://``. The schema itself is created and
upgraded by Alembic (``recsys.migrate``); this module only describes it.

Every write is all-or-nothing: a batch is validated as a whole, then written in
one transaction, so a rejected batch leaves no row behind.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from recsys.data import INTERACTION_COLUMNS, MAX_ID, TIMESTAMP_COLUMN, load_interactions
from recsys.errors import DataFileError, RecsysError

# SQLite caps bound parameters per statement; chunks keep IN (...) lists and
# multi-row inserts below that cap on every version.
_CHUNK_ROWS = 900
# Any fixed number: the advisory lock that serialises server start-ups on PostgreSQL.
_STARTUP_LOCK_KEY = 727_401_001
# How long an SQLite writer waits for the lock before giving up, in ms.
SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("category", sa.String(100), nullable=False),
    sa.Column("price", sa.Float, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("city", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

interactions = sa.Table(
    "interactions",
    metadata,
    # BigInteger on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("purchased", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_interactions_user_id", "user_id"),
)

# Records of training jobs, so every server process (and a restarted one) can
# report on a job another process ran.
training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("metrics", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)


class InvalidEventError(RecsysError, ValueError):
    """One event of a batch is malformed (a 400 for the API).

    Args:
        index: 0-based position of the event in its batch.
        reason: What is wrong, naming the field and the accepted values.
    """

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"event {index}: {reason}")


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


@dataclass(frozen=True, slots=True)
class Event:
    """One interaction to record.

    Attributes:
        user_id: Positive integer user id (unknown users are created).
        product_id: Positive integer id of a catalog product.
        purchased: Whether the click ended in a purchase.
        created_at: When it happened, naive UTC; None means "now".
    """

    user_id: int
    product_id: int
    purchased: bool
    created_at: datetime | None = None


@dataclass(frozen=True)
class StoreCounts:
    """How many rows each table holds."""

    products: int
    users: int
    interactions: int


def utc_now() -> datetime:
    """Return the current time as naive UTC (the store's time convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp into naive UTC.

    A value without a UTC offset is taken as UTC.

    Args:
        value: For example ``2026-11-29T10:00:00Z`` or ``2026-11-29 10:00:00+01:00``.

    Raises:
        ValueError: The text is not an ISO-8601 date-time.
    """
    return _naive_utc(datetime.fromisoformat(value))


def _positive_id(value: Any, field: str) -> int:
    # bool is an int subclass; true/false is never an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be a positive integer, got {value!r}")
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{field} must be between 1 and {MAX_ID}, got {value}")
    return value


def _purchased_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise TypeError(f"purchased must be 0, 1, true or false, got {value!r}")


def event_from_mapping(row: Any, index: int) -> Event:
    """Validate one JSON-like event and return it as an ``Event``.

    Args:
        row: A mapping with ``user_id``, ``product_id``, ``purchased`` and an
            optional ISO-8601 ``timestamp``.
        index: The row's position in its batch, for the error.

    Raises:
        InvalidEventError: The row is malformed; the message names the field.
    """
    if not isinstance(row, Mapping):
        raise InvalidEventError(index, f"an event must be a JSON object, got {type(row).__name__}")
    allowed = {"user_id", "product_id", "purchased", "timestamp"}
    extra = sorted(set(row) - allowed)
    if extra:
        raise InvalidEventError(index, f"unexpected field(s) {extra}; accepted: {sorted(allowed)}")
    missing = [f for f in ("user_id", "product_id", "purchased") if f not in row]
    if missing:
        raise InvalidEventError(index, f"missing field(s) {missing}")
    try:
        user_id = _positive_id(row["user_id"], "user_id")
        product_id = _positive_id(row["product_id"], "product_id")
        purchased = _purchased_flag(row["purchased"])
        created_at = None
        stamp = row.get("timestamp")
        if stamp is not None:
            if not isinstance(stamp, str):
                raise TypeError(f"timestamp must be an ISO-8601 string, got {stamp!r}")
            try:
                created_at = parse_timestamp(stamp)
            except ValueError:
                raise ValueError(
                    f"timestamp must be ISO-8601 like 2026-01-31T12:00:00Z, got {stamp!r}"
                ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(index, str(exc)) from None
    return Event(user_id, product_id, purchased, created_at)


def events_from_json(rows: Sequence[Any]) -> list[Event]:
    """Validate a batch of JSON-like events; the first bad one raises.

    Args:
        rows: Mappings as ``event_from_mapping`` accepts.

    Raises:
        InvalidEventError: For the first malformed row.
    """
    return [event_from_mapping(row, i) for i, row in enumerate(rows)]


def _chunks(items: Sequence[Any], size: int = _CHUNK_ROWS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _configure_sqlite(engine: Engine) -> None:
    """Give every SQLite connection WAL, a busy timeout, foreign keys and real BEGINs."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial wiring
        # pysqlite's own transaction handling delays BEGIN until the first
        # write, which breaks isolation; SQLAlchemy's documented fix is to
        # switch it off and emit BEGIN ourselves (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode, much faster
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - trivial wiring
        # Writers take the lock up front: a deferred transaction that reads
        # and then writes fails at once with SQLITE_BUSY under contention
        # instead of waiting for busy_timeout.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_store_engine(url: str) -> Engine:
    """Create an engine for an SQLite or PostgreSQL (psycopg 3) URL.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://...``.

    Raises:
        ValueError: Any other kind of URL.
    """
    parsed = sa.make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql+psycopg":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///FILE or postgresql+psycopg://..."
    )


def _insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert rows, skipping those whose primary key exists (a concurrent writer's)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - create_store_engine allows only the two
        raise ValueError(f"unsupported dialect {dialect}")
    for chunk in _chunks(rows):
        conn.execute(stmt, list(chunk))


class EventStore:
    """Reads and writes products, users and interactions.

    Args:
        engine: From ``create_store_engine``; the schema must exist
            (``recsys.migrate.upgrade_to_head``).
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> EventStore:
        """Open the store at a database URL (the schema is not created here)."""
        return cls(create_store_engine(url))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _write(self):
        """Begin a write transaction (eagerly locked on SQLite)."""
        conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return _WriteTransaction(conn)

    # -- catalog ---------------------------------------------------------------

    def add_products(self, catalog: pd.DataFrame) -> int:
        """Insert catalog rows, skipping product ids already present.

        Args:
            catalog: Columns ``product_id, name, category, price``.

        Returns:
            How many rows were offered.
        """
        with self._write() as conn:
            return _insert_products(conn, catalog)

    def products_frame(self) -> pd.DataFrame:
        """Return the catalog: ``product_id, name, category, price`` by id."""
        query = sa.select(
            products.c.id.label("product_id"), products.c.name, products.c.category,
            products.c.price,
        ).order_by(products.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["product_id", "name", "category", "price"])
        return frame.astype({"product_id": "int64", "price": "float64"})

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
        with self._write() as conn:
            return _insert_events(conn, events)

    def purchased_products(self, user_id: int) -> set[int]:
        """Return the ids of the products this user has bought, as recorded now."""
        query = (
            sa.select(interactions.c.product_id)
            .where(interactions.c.user_id == user_id, interactions.c.purchased.is_(True))
            .distinct()
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def has_user_events(self, user_id: int) -> bool:
        """Return whether any interaction of this user is recorded."""
        query = sa.select(interactions.c.id).where(interactions.c.user_id == user_id).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def interactions_frame(self) -> pd.DataFrame:
        """Return every interaction in insertion order, in the log's schema.

        Returns:
            Columns ``user_id, product_clicked, purchased`` (int64; purchased 0/1),
            the shape ``recsys.data.load_interactions`` returns.
        """
        query = sa.select(
            interactions.c.user_id, interactions.c.product_id, interactions.c.purchased
        ).order_by(interactions.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS)).astype("int64")

    # -- training jobs -------------------------------------------------------

    def save_training_job(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one training job record.

        Args:
            record: Values for every column of ``training_jobs``; datetimes
                are stored as naive UTC.
        """
        values = {k: _naive_utc(v) if isinstance(v, datetime) else v for k, v in record.items()}
        with self._write() as conn:
            updated = conn.execute(
                training_jobs.update().where(training_jobs.c.id == values["id"]), values
            )
            if updated.rowcount == 0:
                conn.execute(training_jobs.insert(), values)

    def fail_unfinished_jobs(self, reason: str) -> int:
        """Mark every queued or running job record failed (their process is gone).

        Returns:
            How many records were changed.
        """
        with self._write() as conn:
            result = conn.execute(
                training_jobs.update()
                .where(training_jobs.c.state.in_(["queued", "running"]))
                .values(state="failed", error=reason, finished_at=utc_now())
            )
            return result.rowcount

    def training_job(self, job_id: str) -> dict[str, Any] | None:
        """Return one training job record (datetimes as aware UTC), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(training_jobs).where(training_jobs.c.id == job_id)
            ).mappings().first()
        if row is None:
            return None
        return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v
                for k, v in row.items()}

    def count_interactions(self) -> int:
        """Return how many interactions are recorded."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(interactions)).scalar_one()

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
        self, catalog: pd.DataFrame, profiles: pd.DataFrame, log: pd.DataFrame
    ) -> bool:
        """Fill an empty store with a catalog, user profiles and an interaction log.

        One transaction, under a lock, so servers starting together fill the
        store once; a store that already has data is left alone.

        Args:
            catalog: ``product_id, name, category, price``.
            profiles: ``user_id, name, email, city``.
            log: ``user_id, product_clicked, purchased`` (the interactions.csv schema).

        Returns:
            Whether anything was written.
        """
        events = [
            Event(int(u), int(p), bool(b))
            for u, p, b in log[["user_id", "product_clicked", "purchased"]].itertuples(
                index=False
            )
        ]
        with self._write() as conn:
            lock_for_startup(conn)
            has_rows = conn.execute(sa.select(products.c.id).limit(1)).first() or conn.execute(
                sa.select(interactions.c.id).limit(1)
            ).first()
            if has_rows:
                return False
            _insert_products(conn, catalog)
            _insert_profiles(conn, profiles)
            _insert_events(conn, events)
        return True

    # -- files -------------------------------------------------------------

    def export_interactions(self, path: str | Path, include_timestamps: bool = False) -> int:
        """Write every interaction to a CSV file in the interactions.csv schema.

        Args:
            path: Where to write (overwritten).
            include_timestamps: Add a fourth column ``timestamp`` (ISO-8601 UTC),
                which ``import_interactions`` reads back.

        Returns:
            How many rows were written.
        """
        columns = [interactions.c.user_id, interactions.c.product_id, interactions.c.purchased,
                   interactions.c.created_at]
        header = list(INTERACTION_COLUMNS)
        if include_timestamps:
            header.append(TIMESTAMP_COLUMN)
        written = 0
        with self.engine.connect() as conn, open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            result = conn.execution_options(yield_per=10_000).execute(
                sa.select(*columns).order_by(interactions.c.id)
            )
            for user_id, product_id, purchased, created_at in result:
                row = [user_id, product_id, int(purchased)]
                if include_timestamps:
                    row.append(created_at.isoformat() + "Z")
                writer.writerow(row)
                written += 1
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
                path, f"unknown product_id {exc.product_id}: not in the catalog",
                line=exc.index + 2,
            ) from None


def lock_for_startup(conn: Connection) -> None:
    """Serialise start-up work (migrations, bootstrap) across server processes.

    On PostgreSQL this takes a transaction-scoped advisory lock; SQLite write
    transactions already begin IMMEDIATE, which locks the whole file.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STARTUP_LOCK_KEY})


def _insert_products(conn: Connection, catalog: pd.DataFrame) -> int:
    rows = [
        {"id": int(r.product_id), "name": str(r.name), "category": str(r.category),
         "price": float(r.price)}
        for r in catalog.itertuples(index=False)
    ]
    _insert_ignoring_duplicates(conn, products, rows)
    return len(rows)


def _insert_profiles(conn: Connection, profiles: pd.DataFrame) -> int:
    now = utc_now()
    rows = [
        {"id": int(r["user_id"]), "name": r.get("name"), "email": r.get("email"),
         "city": r.get("city"), "created_at": now}
        for r in profiles.to_dict("records")
    ]
    _insert_ignoring_duplicates(conn, users, rows)
    return len(rows)


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
    for chunk in _chunks(sorted({e.product_id for e in events})):
        found = conn.execute(sa.select(products.c.id).where(products.c.id.in_(chunk)))
        known.update(found.scalars())
    for index, e in enumerate(events):
        if e.product_id not in known:
            raise UnknownProductError(index, e.product_id)
    new_users = [{"id": u, "created_at": now} for u in sorted({e.user_id for e in events})]
    _insert_ignoring_duplicates(conn, users, new_users)
    rows = [
        {"user_id": e.user_id, "product_id": e.product_id, "purchased": e.purchased,
         "created_at": e.created_at or now}
        for e in events
    ]
    for chunk in _chunks(rows):
        conn.execute(interactions.insert(), list(chunk))
        if on_chunk is not None:
            on_chunk(len(chunk))
    return len(events)


class _WriteTransaction:
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


def _progress_bar(enabled: bool, total: int, description: str):
    """Return a tqdm bar on stderr, or a silent one when disabled."""
    from tqdm import tqdm  # only the import command shows progress

    return tqdm(total=total, unit="rows", desc=description, disable=not enabled)


def read_interactions_csv(path: str | Path) -> list[Event]:
    """Read and validate an interactions CSV into events.

    Args:
        path: A file with header ``user_id,product_clicked,purchased[,timestamp]``.

    Raises:
        DataFileError: The file is missing, empty, or has a bad header or line.
    """
    frame = load_interactions(path)
    if TIMESTAMP_COLUMN in frame:
        stamps = [None if pd.isna(t) else t.to_pydatetime() for t in frame[TIMESTAMP_COLUMN]]
    else:
        stamps = [None] * len(frame)
    return [
        Event(user_id, product_id, bool(purchased), created_at)
        for user_id, product_id, purchased, created_at in zip(
            frame["user_id"].tolist(),
            frame["product_clicked"].tolist(),
            frame["purchased"].tolist(),
            stamps,
            strict=True,
        )
    ]

