"""One SQLite driver connection per thread, kept for the read every answer makes.

Every answer reads its user's history rows (without Redis, a cached answer
too, to know no event came since). Checking a connection out of
SQLAlchemy's pool and back in for that read cost about half as much as the
query itself; a thread keeps its own connection instead. The engine opens
it, so its connect events have set WAL, the busy timeout and autocommit as
on every pooled connection, and it is then detached from the pool: it
holds none of the pool's slots.

A read repeated while nothing was committed to the database returns the
rows it returned before, without running again. Any commit (an event, a
prune, an import, a periodic impressions sync) makes every read run again;
a read-mostly spell spares the query. What tells is ``PRAGMA data_version``
(a few microseconds), which changes on a connection whenever another
connection, of any process, committed.

The WAL index header in the ``-shm`` file would tell the same from shared
memory, but mapping it means opening that file, and SQLite's WAL locks are
POSIX record locks on it: closing any descriptor of the file (a mapping's
too) drops every lock the process holds on it, a writer's mid-transaction
among them, so another process could write the WAL beside it and commits
were lost.

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

from recsys.store.engine import is_unusable_store


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
        reader = getattr(self._local, "reader", None)
        try:
            if reader is None:
                # Opening fails as reading does (a file gone or damaged since
                # the pool last connected): the engine's error handling is not
                # on this path, so the same conversion below applies to both.
                reader = self._open()
            return reader.read(sql, params)
        except self._error as exc:
            if reader is not None:
                del self._local.reader
                reader.connection.close()
            error = sa.exc.DBAPIError.instance(sql, params, exc, self._error)
            if is_unusable_store(exc) and not isinstance(error, sa.exc.OperationalError):
                error = sa.exc.OperationalError(sql, params, exc)  # an outage, as elsewhere
            raise error from exc

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
        self._seen: int | None = None
        self._rows: dict[tuple[str, tuple], list[tuple]] = {}

    def read(self, sql: str, params: tuple) -> list[tuple]:
        # Asked before the read: a commit between the two runs it again next time.
        seen = self._data_version()
        if seen != self._seen:
            self._rows.clear()
            self._seen = seen
        key = (sql, params)
        rows = self._rows.get(key)
        if rows is None:
            rows = self.connection.execute(sql, params).fetchall()
            if len(self._rows) >= REMEMBERED_READS:
                self._rows.clear()
            self._rows[key] = rows
        return rows

    def _data_version(self) -> int:
        return self.connection.execute("PRAGMA data_version").fetchone()[0]


_EVERY: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[threading.local] = []


def _leave_parent_connections() -> None:
    for connections in list(_EVERY):
        connections._leave_inherited()


os.register_at_fork(after_in_child=_leave_parent_connections)
