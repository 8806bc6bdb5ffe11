"""Database engines for the event store: SQLite (the default) or PostgreSQL.

SQLite runs in WAL mode so readers never wait for the writer, with a busy
timeout, foreign keys on and eager write locks; PostgreSQL through psycopg 3
with a bounded pool. Both get connect and statement timeouts, so a database
that is down or never answers is an error within seconds, not a hung worker.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a database that is down, unreachable, locked or too slow raises: the
# service answers these with a 503 (retry shortly), never a 500.
STORE_OUTAGES: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)


# SQLSTATEs of a transaction PostgreSQL ended to settle a conflict with
# another (deadlock_detected, serialization_failure): nothing of it was
# written, and running it again succeeds. Also foreign_key_violation: a batch
# whose user row was there when it began, and deleted (DELETE /users/<id>)
# before its events were checked against it; run again, it creates the user anew.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001", "23503"})
CONFLICT_ATTEMPTS = 4


def is_transaction_conflict(exc: BaseException) -> bool:
    """Return whether the database rolled the transaction back for a conflict with another."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _CONFLICT_SQLSTATES


def retry_conflicts(transaction: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run a whole transaction, again when the database ended it for a deadlock or conflict.

    Args:
        transaction: Opens, writes and commits one transaction; safe to run
            again because a rolled-back attempt wrote nothing.
        attempts: How many runs at most; the last conflict is raised (an
            ``OperationalError``, which callers answer as an outage).
    """
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except sa.exc.DBAPIError as exc:
            if attempt == attempts or not is_transaction_conflict(exc):
                raise
            logger.info("a transaction met a concurrent one (%s): running it again", exc.orig)
            # A random pause, so the two that met do not meet again in step.
            time.sleep(random.uniform(0, 0.02 * attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


# SQLSTATEs of a statement naming a table or column the database lacks
# (undefined_table, undefined_column): a store nobody initialised, or one
# older than the code. SQLite says "no such table" or "no such column".
_MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})


# What an operator does about a store that lacks the service's tables.
INIT_REMEDY = "run `.venv/bin/flask --app app init` to create or migrate them"


def is_missing_schema(exc: BaseException) -> bool:
    """Return whether the database lacks a table or column the service uses."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _MISSING_SCHEMA_SQLSTATES:
        return True
    return str(orig).startswith(("no such table", "no such column"))


def describe_outage(exc: Exception) -> str:
    """Return one line saying why the database could not be used (no SQL, no password)."""
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if is_missing_schema(exc):
        return (
            f"the event store lacks the service's tables ({first_line}): {INIT_REMEDY} "
            "(or check RECSYS_DATABASE_URL)"
        )
    return f"the event store is unavailable: {first_line} (check RECSYS_DATABASE_URL)"


def is_damaged_sqlite_file(exc: BaseException) -> bool:
    """Return whether SQLite found its file is no database, or a damaged one."""
    orig = getattr(exc, "orig", None) or exc
    return str(getattr(orig, "sqlite_errorname", "")).startswith(_DAMAGED_SQLITE_ERRORS)


# SQLite's codes for a file that is not a database (a log named by mistake) or a damaged one.
_DAMAGED_SQLITE_ERRORS = ("SQLITE_NOTADB", "SQLITE_CORRUPT")

# SQLSTATEs of statements PostgreSQL refuses for the role or the server, not
# for the statement: read_only_sql_transaction (a standby, or a server made
# read-only) and insufficient_privilege (a role that may not write the tables).
_REFUSED_SQLSTATES = frozenset({"25006", "42501"})


def is_refused_by_the_server(exc: BaseException) -> bool:
    """Return whether PostgreSQL refused a statement for the role or the server it reached."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) in _REFUSED_SQLSTATES


def is_unusable_store(exc: BaseException) -> bool:
    """Return whether a store error is the store's state, not the statement's: an outage.

    Tables missing, an SQLite file that is no database or is damaged, or a
    PostgreSQL server that refuses the role's writes.
    """
    return is_missing_schema(exc) or is_damaged_sqlite_file(exc) or is_refused_by_the_server(exc)


def _unusable_store_is_an_outage(engine: Engine) -> None:
    """Raise a store the service cannot use as an ``OperationalError``, as a database down is.

    A missing table or column: psycopg raises it as a programming error
    (SQLite as an operational one); a store that is not initialised (or not
    migrated) is unavailable until ``init`` runs. An SQLite file that is no
    database, or is damaged: sqlite3 raises a plain ``DatabaseError``. A
    standby, or a role without the privileges: psycopg raises internal or
    programming errors. Else the service would answer 500 and the commands
    print tracebacks.
    """

    @event.listens_for(engine, "handle_error")
    def _on_error(context):  # pragma: no cover - trivial wiring
        unusable = is_unusable_store(context.original_exception)
        if unusable and not isinstance(context.sqlalchemy_exception, sa.exc.OperationalError):
            return sa.exc.OperationalError(
                context.statement, context.parameters, context.original_exception
            )
        return None


# Any fixed number: the advisory lock that serialises server start-ups on PostgreSQL.
_STARTUP_LOCK_KEY = 727_401_001


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Give every SQLite connection WAL, a busy timeout, foreign keys and real BEGINs."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial wiring
        # pysqlite's own transaction handling delays BEGIN until the first
        # write, which breaks isolation; SQLAlchemy's documented fix is to
        # switch it off and emit BEGIN ourselves (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
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


# SQLite connections kept open per process (a file handle and a small page cache each).
SQLITE_POOL_SIZE = 16


def create_store_engine(url: str, timeout_seconds: float = 5.0) -> Engine:
    """Create an engine for an SQLite or PostgreSQL (psycopg 3) URL, with timeouts.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://...``.
        timeout_seconds: The longest wait for the database: connecting, one
            statement (PostgreSQL's ``statement_timeout`` and a client-side
            deadline for a server that never answers), a pooled connection,
            and SQLite's write lock.

    Raises:
        ValueError: Any other kind of URL.
    """
    parsed = sa.make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        # A file's pool has room for every thread of a worker at once (THREADS,
        # 8 by default, and the background jobs'): with SQLAlchemy's default
        # of 5, each read past the fifth opened a connection and closed it
        # again, PRAGMAs and all (measured: 2% of a busy server's time). An
        # in-memory database keeps SQLAlchemy's one connection per thread.
        in_file = parsed.database not in (None, "", ":memory:")
        pool = (
            {
                "pool_size": SQLITE_POOL_SIZE,
                "max_overflow": SQLITE_POOL_SIZE,
                "pool_timeout": timeout_seconds,
            }
            if in_file
            else {}
        )
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": timeout_seconds}, **pool
        )
        _configure_sqlite(engine, busy_timeout_ms=round(timeout_seconds * 1000))
        _unusable_store_is_an_outage(engine)
        return engine
    if parsed.drivername == "postgresql+psycopg":
        millis = round(timeout_seconds * 1000)
        # Server side: a statement that runs too long is cancelled. Options
        # the URL already carries (a search_path, say) are kept.
        options = f"-c statement_timeout={millis} -c lock_timeout={millis}"
        if "options" in parsed.query:
            options = f"{parsed.query['options']} {options}"
            parsed = parsed.difference_update_query(["options"])
        engine = sa.create_engine(
            parsed,
            connect_args={
                "connect_timeout": max(1, math.ceil(timeout_seconds)),
                "options": options,
                # Kernel side: data the server never acknowledges ends the connection.
                "tcp_user_timeout": millis,
                "keepalives": 1,
                "keepalives_idle": max(1, math.ceil(timeout_seconds)),
                "keepalives_interval": 1,
                "keepalives_count": 3,
            },
            # No ping on checkout: a ping to a server that never answers would
            # hang outside any deadline; a dead connection fails its statement
            # instead, and SQLAlchemy then discards the whole pool.
            pool_pre_ping=False,
            pool_size=10,
            max_overflow=10,
            pool_timeout=timeout_seconds,
        )
        StatementDeadline(timeout_seconds).attach(engine)
        _unusable_store_is_an_outage(engine)
        return engine
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///FILE or postgresql+psycopg://..."
    )


class StatementDeadline:
    """Ends a PostgreSQL connection whose statement has waited too long for an answer.

    ``statement_timeout`` needs a server that answers; a network partition or
    a proxy that accepts and never forwards leaves the client waiting forever.
    This watchdog notes when each statement, commit or rollback starts and,
    past the deadline, shuts the connection's socket down: psycopg then
    raises ``OperationalError`` in the waiting thread, SQLAlchemy discards the
    connection, and the caller answers 503 like for any outage. Only waiting
    counts: a statement that has returned is disarmed, so a connection idle
    between statements (a streamed export writing its file, say) is spared.

    Args:
        seconds: How long a statement (or a commit or rollback) may wait.
    """

    def __init__(self, seconds: float):
        # A little after the server's own statement_timeout, which answers more politely.
        self.seconds = seconds + 0.5
        self._forget_parent()
        _DEADLINES.add(self)

    def _forget_parent(self) -> None:
        """Start empty: no deadlines, a free lock, no watcher thread (yet)."""
        self._deadlines: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def attach(self, engine: Engine) -> None:
        """Watch every statement, commit and rollback on the engine's connections."""
        event.listen(engine, "before_cursor_execute", self._arm_statement)
        event.listen(engine, "after_cursor_execute", self._disarm_statement)
        event.listen(engine, "handle_error", self._disarm_failed)
        # No event follows a commit or rollback; the checkin after it disarms.
        event.listen(engine, "commit", self._arm_connection)
        event.listen(engine, "rollback", self._arm_connection)
        event.listen(engine.pool, "checkin", self._disarm)
        event.listen(engine.pool, "close", self._disarm)

    def _arm_statement(self, conn, _cursor, _statement, _params, _context, _many) -> None:
        self._arm_connection(conn)

    def _disarm_statement(self, conn, _cursor, _statement, _params, _context, _many) -> None:
        self._disarm(conn.connection.dbapi_connection, None)

    def _disarm_failed(self, context) -> None:
        conn = context.connection
        if conn is not None and not (conn.closed or conn.invalidated):
            self._disarm(conn.connection.dbapi_connection, None)

    def _arm_connection(self, conn) -> None:
        if conn.closed or conn.invalidated:
            return  # a rollback of a discarded connection waits for nothing
        dbapi = conn.connection.dbapi_connection
        with self._lock:
            self._deadlines[id(dbapi)] = (time.monotonic() + self.seconds, dbapi)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._watch, daemon=True, name="db-statement-deadline"
                )
                self._thread.start()

    def _disarm(self, dbapi, _record) -> None:
        with self._lock:
            self._deadlines.pop(id(dbapi), None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                expired = [d for deadline, d in self._deadlines.values() if deadline < now]
                for dbapi in expired:
                    self._deadlines.pop(id(dbapi), None)
            for dbapi in expired:
                _shut_down_socket(dbapi)


# A process forked from one that ran statements (a gunicorn worker of a master
# that preloaded the app) inherits each watchdog but not its thread, and the
# fork may have caught that thread holding the lock: the child starts afresh.
_DEADLINES: weakref.WeakSet[StatementDeadline] = weakref.WeakSet()


def _forget_parent_deadlines() -> None:
    for deadline in list(_DEADLINES):
        deadline._forget_parent()


os.register_at_fork(after_in_child=_forget_parent_deadlines)


def _shut_down_socket(dbapi_connection: Any) -> None:
    try:
        fd = dbapi_connection.pgconn.socket
        # shutdown() acts on the socket itself, so a duplicate descriptor
        # reaches the one psycopg waits on without racing its close().
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        logger.warning("a database statement waited too long: connection closed")
    except Exception:  # the connection may have finished or closed meanwhile
        logger.debug("could not shut down a late connection", exc_info=True)


def lock_for_startup(conn: Connection) -> None:
    """Serialise start-up work (migrations, bootstrap) across server processes.

    On PostgreSQL this takes a transaction-scoped advisory lock; SQLite write
    transactions already begin IMMEDIATE, which locks the whole file.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STARTUP_LOCK_KEY})
