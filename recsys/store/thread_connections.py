"""One SQLite driver connection per thread, kept for the read every answer makes.

Every answer reads its user's history rows (without Redis, a cached answer
too, to know no event came since). Checking a connection out of
SQLAlchemy's pool and back in for that read cost about half as much as the
query itself; a thread keeps its own connection instead. The engine opens
it, so its connect events have set WAL, the busy timeout and autocommit as
on every pooled connection, and it is then detached from the pool: it
holds none of the pool's slots.

A read repeated while nothing was committed to the database returns the
rows it returned before, without running again. SQLite's ``PRAGMA
data_version`` tells: it changes whenever another connection, of any
process, committed a change, and the thread's connection writes nothing.
Any commit (an event, a prune, an import, a periodic impressions sync)
makes every read run again; a read-mostly spell spares the query.

A connection never crosses a fork: a forked child opens its own and leaves
the ones it inherited alone, unclosed (closing them there could disturb the
parent's locks). ``forget`` (when the engine is disposed) makes every thread
open a new one; the old ones close once no thread uses them.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class ThreadConnections:
    """Each thread's own driver connection to an SQLite file, for single autocommitted reads.

    Args:
        engine: An SQLite engine (``create_store_engine``) whose connect
            events switch pysqlite's transaction handling off: each read is
            then a consistent snapshot that ends with it, as on the pool.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._error = engine.dialect.loaded_dbapi.Error
        self._local = threading.local()
        _EVERY.add(self)

    def read(self, sql: str, params: tuple) -> list[tuple]:
        """Return the rows of one read on this thread's connection (callers must not change them).

        The same read on the same thread returns the same rows without
        running again while nothing was committed to the database since.

        Raises:
            sqlalchemy.exc.DBAPIError: The driver's error as SQLAlchemy names
                it (a locked or missing database: ``OperationalError``, one of
                ``STORE_OUTAGES``); the thread opens a new connection next time.
        """
        try:
            reader = self._local.reader
        except AttributeError:
            reader = self._open()
        try:
            return reader.read(sql, params)
        except self._error as exc:
            del self._local.reader
            reader.connection.close()
            raise sa.exc.DBAPIError.instance(sql, params, exc, self._error) from exc

    def forget(self) -> None:
        """Make every thread open a new connection (the engine was disposed)."""
        self._local = threading.local()

    def _open(self) -> _ThreadReader:
        pooled = self.engine.raw_connection()
        pooled.detach()
        reader = self._local.reader = _ThreadReader(pooled.dbapi_connection)
        return reader

    def _leave_inherited(self) -> None:
        # Kept referenced for good: dropped, they would be closed in the child.
        _INHERITED.append(self._local)
        self._local = threading.local()


# Reads a thread remembers at most while the database is unchanged (their
# rows are mostly the very lists the cached answers hold).
REMEMBERED_READS = 1024


class _ThreadReader:
    """One thread's connection, and the reads it ran since the database last changed."""

    def __init__(self, connection: Any):
        self.connection = connection
        self._data_version: int | None = None
        self._rows: dict[tuple[str, tuple], list[tuple]] = {}

    def read(self, sql: str, params: tuple) -> list[tuple]:
        connection = self.connection
        # Asked before the read: a commit between the two runs it again next time.
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._rows.clear()
            self._data_version = version
        key = (sql, params)
        rows = self._rows.get(key)
        if rows is None:
            rows = connection.execute(sql, params).fetchall()
            if len(self._rows) >= REMEMBERED_READS:
                self._rows.clear()
            self._rows[key] = rows
        return rows


_EVERY: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[threading.local] = []


def _leave_parent_connections() -> None:
    for connections in list(_EVERY):
        connections._leave_inherited()


os.register_at_fork(after_in_child=_leave_parent_connections)
