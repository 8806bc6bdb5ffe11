"""Make a race certain: hold a table's writes until concurrent writers queue behind them.

Writers released "at once" rarely overlap by more than a few milliseconds;
a check-then-write race shows only sometimes. Holding every write to the
table (PostgreSQL: a lock that lets reads through; SQLite: the write lock)
until each writer waits lines them all up at the same step: on PostgreSQL
every one of them has read the table before any writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

# SQLite cannot tell who waits for its lock: its writers get this long to arrive.
SQLITE_QUEUE_SECONDS = 1.0


@contextmanager
def writes_held(engine: sa.Engine, table: sa.Table) -> Iterator[Callable[[int], None]]:
    """Hold every insert, update and delete of a table until the block ends.

    Yields:
        ``wait_for(count)``: returns once ``count`` sessions wait for the
        lock (PostgreSQL; directly or behind another waiter), or after
        ``SQLITE_QUEUE_SECONDS`` on SQLite.
    """
    with engine.connect() as blocker:
        if engine.dialect.name == "sqlite":
            blocker.execution_options(sqlite_begin="IMMEDIATE")
        with blocker.begin():
            if engine.dialect.name == "postgresql":
                # SHARE ROW EXCLUSIVE: plain reads pass, every write waits.
                blocker.execute(sa.text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))
                pid = blocker.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                yield lambda count: _wait_for_waiters(engine, pid, count)
            else:
                yield lambda _count: time.sleep(SQLITE_QUEUE_SECONDS)


def _wait_for_waiters(engine: sa.Engine, pid: int, count: int, within: float = 20) -> None:
    waiting = sa.text(
        "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + within
    with engine.connect() as watcher:
        while True:
            blocked_by = dict(watcher.execute(waiting).all())
            watcher.rollback()  # a new snapshot of pg_stat_activity each time
            # Writers of one row queue behind its first waiter, not the holder itself.
            queued = {pid}
            while grown := {p for p, by in blocked_by.items() if set(by) & queued} - queued:
                queued |= grown
            if len(queued) - 1 >= count:
                return
            assert time.monotonic() < deadline, f"{count} writers never queued behind the lock"
            time.sleep(0.02)
