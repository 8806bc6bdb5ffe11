"""One SQLite driver connection per thread, kept for the read every answer makes.

Every answer reads its user's history rows (without Redis, a cached answer
too). Checking a connection out of SQLAlchemy's pool and back in for that
read cost about half as much as the query itself; a thread keeps its own
connection instead. The engine opens it, so its connect events have set WAL,
the busy timeout and autocommit as on every pooled connection, and it is
then detached from the pool: it holds none of the pool's slots.

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
        """Run one read on this thread's connection and return its rows.

        Raises:
            sqlalchemy.exc.DBAPIError: The driver's error as SQLAlchemy names
                it (a locked or missing database: ``OperationalError``, one of
                ``STORE_OUTAGES``); the thread opens a new connection next time.
        """
        try:
            connection = self._local.connection
        except AttributeError:
            connection = self._open()
        try:
            return connection.execute(sql, params).fetchall()
        except self._error as exc:
            del self._local.connection
            connection.close()
            raise sa.exc.DBAPIError.instance(sql, params, exc, self._error) from exc

    def forget(self) -> None:
        """Make every thread open a new connection (the engine was disposed)."""
        self._local = threading.local()

    def _open(self) -> Any:
        pooled = self.engine.raw_connection()
        pooled.detach()
        connection = self._local.connection = pooled.dbapi_connection
        return connection

    def _leave_inherited(self) -> None:
        # Kept referenced for good: dropped, they would be closed in the child.
        _INHERITED.append(self._local)
        self._local = threading.local()


_EVERY: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_INHERITED: list[threading.local] = []


def _leave_parent_connections() -> None:
    for connections in list(_EVERY):
        connections._leave_inherited()


os.register_at_fork(after_in_child=_leave_parent_connections)
