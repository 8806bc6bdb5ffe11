"""Bulk paths of the event store: streaming import and chunked reads of the whole log.

``EventStore.import_interactions`` validates a whole file in memory and
inserts it through SQLAlchemy: right for thousands of rows, hours for ten
million. Here a log (Parquet or CSV) is read one chunk at a time
(``recsys.data.log_files.iter_log``), so memory stays bounded by the chunk,
and written in one transaction by each database's fastest door:

- PostgreSQL: ``COPY ... FROM STDIN`` through psycopg 3 (users first go
  through a temporary table and ``INSERT ... ON CONFLICT DO NOTHING``);
- SQLite: ``executemany`` of plain tuples on the driver's cursor, in one
  large transaction (no per-row objects, no per-statement commit).

The file is still all or nothing: a bad line or an unknown product rolls the
transaction back, and the error names the line (CSV) or row (Parquet).

``read_interactions`` reads the log back for training in pages of a million
rows by primary key (keyset paging: each page is an index range scan) into
int64 arrays, instead of one Python object per row.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.data.interactions import (
    CLICK,
    EVENT_TYPES,
    INTERACTION_COLUMNS,
    TIMESTAMP_COLUMN,
    TYPE_COLUMN,
    VALUE_COLUMN,
)
from recsys.data.log_files import DEFAULT_CHUNK_ROWS, count_rows, is_parquet, iter_log
from recsys.data.timestamps import format_utc, utc_now
from recsys.errors import DataFileError
from recsys.store.engine import is_unusable_store
from recsys.store.tables import imported_files, products

READ_PAGE_ROWS = 1_000_000
# SQLite's DateTime storage format, as SQLAlchemy writes and reads it.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def import_log(
    engine: Engine,
    path: str | Path,
    progress: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chunk: Callable[[int], object] | None = None,
    append: bool = False,
) -> int:
    """Stream a Parquet or CSV interaction log into the store, in one transaction.

    Args:
        engine: The store's engine (schema migrated).
        path: The log: ``user_id, product_clicked, purchased[, timestamp]``.
        progress: Show a tqdm progress bar (rows) on stderr.
        chunk_rows: Rows read, checked and written at a time (bounds memory).
        on_chunk: Called with the row count after each written chunk.
        append: Import the file even if the same bytes were imported before
            (recognised by their SHA-256, ``claim_file``).

    Returns:
        How many interactions were written.

    Raises:
        DataFileError: The file is unreadable, breaks the schema, names a
            product the catalog lacks, or was imported before (without
            ``append``); nothing is written.
    """
    from tqdm import tqdm  # only the import command shows progress

    path = Path(path)
    now = utc_now()
    written = 0
    digest = file_sha256(path) if path.is_file() else None
    with engine.connect() as conn, _driver_errors_wrapped(engine):
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            claimed = digest is not None and claim_file(conn, path, digest, 0, append)
            known = np.sort(
                np.fromiter(conn.execute(sa.select(products.c.id)).scalars(), dtype=np.int64)
            )
            writer = _PostgresWriter(conn) if conn.dialect.name == "postgresql" else None
            with tqdm(
                total=count_rows(path), unit="rows", desc="importing", disable=not progress
            ) as bar:
                for chunk in iter_log(path, chunk_rows):
                    frame = chunk.frame
                    _check_products(path, frame, chunk.first_row, known)
                    created = _created_at(frame, now)
                    if writer is not None:
                        writer.write(frame, created, now)
                    else:
                        _write_sqlite(conn, frame, created, now)
                    written += len(frame)
                    bar.update(len(frame))
                    if on_chunk is not None:
                        on_chunk(len(frame))
            if claimed:
                conn.execute(
                    imported_files.update()
                    .where(imported_files.c.sha256 == digest)
                    .values(events=written)
                )
    return written


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes (read in blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim_file(conn: Connection, path: Path, digest: str, events: int, append: bool) -> bool:
    """Record a log's import by its SHA-256, inside the import's transaction.

    Returns:
        Whether the file was new to the store (False: imported before, and
        ``append`` asks for it again).

    Raises:
        DataFileError: The same bytes were imported before and ``append`` is off.
    """
    found = conn.execute(
        sa.select(imported_files.c.imported_at, imported_files.c.events).where(
            imported_files.c.sha256 == digest
        )
    ).first()
    if found is not None:
        if not append:
            raise DataFileError(
                path,
                f"this file was imported on {format_utc(found.imported_at.replace(microsecond=0))} "
                f"({found.events} "
                "events; recognised by its SHA-256); pass --append to import it again",
            )
        return False
    conn.execute(
        imported_files.insert(),
        {"sha256": digest, "name": path.name[:500], "events": events, "imported_at": utc_now()},
    )
    return True


def _check_products(path: Path, frame: pd.DataFrame, first_row: int, known: np.ndarray) -> None:
    product_ids = frame["product_clicked"].to_numpy()
    unknown = ~np.isin(product_ids, known)
    if not unknown.any():
        return
    row = int(np.flatnonzero(unknown)[0])
    problem = f"unknown product_id {int(product_ids[row])}: not in the catalog"
    if is_parquet(path):
        raise DataFileError(path, f"row {first_row + row + 1}: {problem}")
    raise DataFileError(path, problem, line=first_row + row + 2)


def _created_at(frame: pd.DataFrame, now) -> pd.Series | None:
    """Return each row's time when the file has some (missing ones are now), else None."""
    if TIMESTAMP_COLUMN not in frame.columns:
        return None
    return frame[TIMESTAMP_COLUMN].fillna(pd.Timestamp(now))


def _write_sqlite(conn: Connection, frame: pd.DataFrame, created: pd.Series | None, now) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    users = np.unique(frame["user_id"].to_numpy())
    stamp = now.strftime(_SQLITE_DATETIME)
    cursor.executemany(
        "INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        ((int(u), stamp) for u in users),
    )
    times = (
        [stamp] * len(frame) if created is None else created.dt.strftime(_SQLITE_DATETIME).tolist()
    )
    rows = zip(
        frame["user_id"].tolist(),
        frame["product_clicked"].tolist(),
        frame["purchased"].tolist(),
        times,
        strict=True,
    )
    # Streamed logs hold clicks and purchases (``iter_log``).
    cursor.executemany(
        "INSERT INTO interactions (user_id, product_id, purchased, created_at, type) "
        "VALUES (?, ?, ?, ?, CASE WHEN ? THEN 'purchase' ELSE 'click' END)",
        ((*row, row[2]) for row in rows),
    )


class _PostgresWriter:
    """COPY chunks into PostgreSQL inside the caller's transaction."""

    def __init__(self, conn: Connection):
        self._raw = conn.connection.driver_connection  # a psycopg.Connection
        with self._raw.cursor() as cursor:  # type: ignore[union-attr]
            _lift_statement_timeout(cursor)
            cursor.execute("CREATE TEMPORARY TABLE recsys_import_users (id bigint) ON COMMIT DROP")

    def write(self, frame: pd.DataFrame, created: pd.Series | None, now) -> None:
        users = np.unique(frame["user_id"].to_numpy())
        with self._raw.cursor() as cursor:  # type: ignore[union-attr]
            with cursor.copy("COPY recsys_import_users (id) FROM STDIN") as copy:
                copy.write("\n".join(map(str, users.tolist())) + "\n")
            cursor.execute(
                "INSERT INTO users (id, created_at) SELECT id, %s FROM recsys_import_users "
                "ON CONFLICT DO NOTHING",
                (now,),
            )
            cursor.execute("TRUNCATE recsys_import_users")
            out = frame.loc[:, list(INTERACTION_COLUMNS)].copy()
            out["created_at"] = (
                now.isoformat(sep=" ") if created is None else created.dt.strftime(_SQLITE_DATETIME)
            )
            # Streamed logs hold clicks and purchases (``iter_log``).
            out["type"] = np.where(out["purchased"].to_numpy() != 0, "purchase", "click")
            buffer = io.StringIO()
            out.to_csv(buffer, header=False, index=False)
            with cursor.copy(
                "COPY interactions (user_id, product_id, purchased, created_at, type) "
                "FROM STDIN (FORMAT csv)"
            ) as copy:
                copy.write(buffer.getvalue())


TYPE_CODE_SQL = (
    "CASE type "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(EVENT_TYPES))
    + f" ELSE {CLICK} END"
)
"""SQL for an interaction's type as its code (its index in ``EVENT_TYPES``)."""


def epoch_seconds_sql(dialect: str, timestamp: str) -> str:
    """Return SQL for a naive UTC timestamp as whole seconds since the epoch, rounded down.

    The number ``recsys.models.profile.epoch_seconds`` makes of the same
    timestamp in a training frame, computed by the database.

    Args:
        dialect: "sqlite" or "postgresql".
        timestamp: The SQL of the timestamp (a column, an aggregate of one).
    """
    if dialect == "sqlite":
        # SQLite keeps the text "YYYY-MM-DD HH:MM:SS.ffffff". Its first 19
        # characters, the whole seconds: strftime reads a time to the
        # millisecond, rounded, so that .9996 s would count as the next second.
        return f"CAST(strftime('%s', substr({timestamp}, 1, 19)) AS INTEGER)"
    # A timestamp without time zone counts from 1970-01-01 00:00 as if in UTC.
    return f"CAST(floor(extract(epoch FROM {timestamp})) AS BIGINT)"


def log_frame(rows: np.ndarray) -> pd.DataFrame:
    """Return the log frame of ``user_id, product_id, purchased, type code, value[, time]`` rows.

    A sixth column, when there is one, is each event's time in whole seconds
    since the epoch: the frame's ``timestamp``.
    """
    frame = pd.DataFrame(
        {
            "user_id": rows[:, 0],
            "product_clicked": rows[:, 1],
            "purchased": rows[:, 2],
            TYPE_COLUMN: pd.Categorical.from_codes(rows[:, 3].astype(np.int8), EVENT_TYPES),
            VALUE_COLUMN: rows[:, 4],
        }
    )
    if rows.shape[1] > 5:
        frame[TIMESTAMP_COLUMN] = rows[:, 5]
    return frame


def read_interactions(
    engine: Engine,
    page_rows: int = READ_PAGE_ROWS,
    since: datetime | None = None,
    times: bool = False,
) -> pd.DataFrame:
    """Return every interaction in insertion order, read in pages by primary key.

    Args:
        engine: The store's engine.
        page_rows: Rows per page.
        since: Only the interactions recorded at or after this moment (naive
            UTC; the retention window); None: all of them.
        times: Read each event's time too (for a model that weights recent
            products: eight bytes more a row, so only then).

    Returns:
        Columns ``user_id, product_clicked, purchased`` (int64), ``type``
        (categorical over ``EVENT_TYPES``) and ``value`` (int64, 0 where
        none), the shape of ``EventStore.interactions_frame``, built without
        a Python object per row; with ``times``, ``timestamp`` besides, in
        whole seconds since the epoch (int64).
    """
    pages: list[np.ndarray] = []
    last_id = 0
    # The driver's cursor and plain tuples: SQLAlchemy's Row objects cost
    # about ten times more per row, and a page is a million rows.
    marker = "%s" if engine.dialect.name == "postgresql" else "?"
    window = "" if since is None else f" AND created_at >= {marker}"
    time = f", {epoch_seconds_sql(engine.dialect.name, 'created_at')}" if times else ""
    query = (
        "SELECT id, user_id, product_id, CAST(purchased AS INTEGER), "
        f"{TYPE_CODE_SQL}, COALESCE(value, 0){time} FROM interactions "
        f"WHERE id > {marker}{window} ORDER BY id LIMIT {int(page_rows)}"
    )
    bound: tuple = ()
    if since is not None:
        # SQLite keeps times as text in SQLAlchemy's format, which compares as time does.
        bound = (
            since if engine.dialect.name == "postgresql" else since.strftime(_SQLITE_DATETIME),
        )
    with engine.connect() as conn, _driver_errors_wrapped(engine):
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if engine.dialect.name == "postgresql":
                _lift_statement_timeout(cursor)
            while True:
                cursor.execute(query, (last_id, *bound))
                rows = cursor.fetchall()
                if not rows:
                    break
                page = np.array(rows, dtype=np.int64)
                pages.append(page[:, 1:])
                last_id = int(page[-1, 0])
                if len(rows) < page_rows:
                    break
        finally:
            cursor.close()
    data = np.concatenate(pages) if pages else np.empty((0, 6 if times else 5), dtype=np.int64)
    return log_frame(data)


def _lift_statement_timeout(cursor) -> None:
    # The store's statement timeout (a few seconds) is meant for requests; a
    # COPY of millions of rows or a page of a million rows takes longer.
    # LOCAL: it ends with this transaction, before the connection is reused.
    cursor.execute("SET LOCAL statement_timeout = 0")


@contextmanager
def _driver_errors_wrapped(engine: Engine) -> Iterator[None]:
    """Raise the driver's own errors (from its raw cursor) as SQLAlchemy's, as elsewhere.

    The service tells an outage by SQLAlchemy's exception classes
    (``STORE_OUTAGES``); the bulk paths use the driver's cursor directly.
    """
    dbapi = engine.dialect.dbapi
    try:
        yield
    except (dbapi.OperationalError, dbapi.InterfaceError) as exc:  # type: ignore[union-attr]
        wrapper = (
            sa.exc.OperationalError
            if isinstance(exc, dbapi.OperationalError)  # type: ignore[union-attr]
            else sa.exc.InterfaceError
        )
        raise wrapper(None, None, exc) from exc
    except dbapi.DatabaseError as exc:  # type: ignore[union-attr]
        # A store the service cannot use (``is_unusable_store``) is an
        # outage, as the engine raises it.
        if not is_unusable_store(exc):
            raise
        raise sa.exc.OperationalError(None, None, exc) from exc
