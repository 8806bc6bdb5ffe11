"""History reads on an SQLite file: each thread's own connection, read again after any commit."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from recsys.data.events import Event
from recsys.store.events import EventStore, UserHistory
from recsys.store.migrate import upgrade_to_head
from tests.builders import SMALL_CATALOG


@pytest.fixture
def file_store(sqlite_url):
    """Yield a migrated SQLite store whose catalog holds products 1-5."""
    store = EventStore.from_url(sqlite_url)
    upgrade_to_head(store.engine)
    store.upsert_products(SMALL_CATALOG)
    yield store
    store.dispose()


@pytest.fixture
def connections_taken(file_store):
    """Return a list that grows by one each time a thread takes a connection from the pool."""
    taken = []
    sa.event.listen(file_store.engine, "detach", lambda *_: taken.append(1))
    return taken


def test_a_thread_reads_every_history_on_one_connection_that_holds_no_pool_slot(
    file_store, connections_taken
):
    for user in range(1, 50):
        file_store.user_history(user)
    assert len(connections_taken) == 1
    assert file_store.engine.pool.checkedout() == 0


def test_each_thread_takes_its_own_connection(file_store, connections_taken):
    file_store.user_history(1)
    reader = threading.Thread(target=lambda: [file_store.user_history(u) for u in (1, 2)])
    reader.start()
    reader.join()
    file_store.user_history(2)
    assert len(connections_taken) == 2


def test_a_thread_sees_events_committed_after_its_first_read(file_store):
    assert file_store.user_history(7) == UserHistory()
    file_store.add_interactions([Event(7, 4, True)])
    assert file_store.user_history(7).purchased == {4}


def test_after_dispose_a_thread_takes_a_new_connection(file_store, connections_taken):
    file_store.user_history(1)
    file_store.dispose()
    file_store.user_history(1)
    assert len(connections_taken) == 2


def test_after_a_failed_read_the_thread_takes_a_new_connection(file_store, connections_taken):
    file_store.user_history(1)
    with file_store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE interactions RENAME TO interactions_gone")
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        file_store.user_history(1)
    with file_store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE interactions_gone RENAME TO interactions")
    taken = len(connections_taken)
    assert file_store.user_history(1) == UserHistory()
    assert len(connections_taken) == taken + 1


def test_a_forked_child_takes_its_own_connection_and_the_parent_keeps_reading(
    file_store, connections_taken
):
    file_store.add_interactions([Event(7, 4, True)])
    file_store.user_history(7)
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            taken = len(connections_taken)
            purchased = file_store.user_history(7).purchased
            answer = f"{len(connections_taken) - taken} {sorted(purchased)}"
        except BaseException as exc:
            answer = repr(exc)
        os.write(writable, answer.encode())
        os._exit(0)
    os.close(writable)
    _, status = os.waitpid(child, 0)
    with os.fdopen(readable) as pipe:
        assert pipe.read() == "1 [4]", "the child took one connection of its own"
    assert status == 0
    file_store.add_interactions([Event(7, 5, True)])
    assert file_store.user_history(7).purchased == {4, 5}
    assert len(connections_taken) == 1, "the parent kept reading on its own connection"


def test_a_read_repeated_while_nothing_was_committed_returns_the_rows_it_read(file_store):
    file_store.add_interactions([Event(7, 4, True)])
    first = file_store.user_history_rows(7)
    assert file_store.user_history_rows(7) is first


def test_a_commit_through_another_store_makes_the_next_read_run_again(file_store, sqlite_url):
    other = EventStore.from_url(sqlite_url)  # another server: nothing tells this one
    file_store.add_interactions([Event(7, 4, True)])
    first = file_store.user_history_rows(7)
    other.add_interactions([Event(7, 5, True)])
    assert file_store.user_history(7).purchased == {4, 5}
    other.add_interactions([Event(8, 1, False)])  # another user's event
    again = file_store.user_history_rows(7)
    assert again == file_store.user_history_rows(7) and again is not first
    other.dispose()


def _statements_on_thread_connection(file_store) -> list[str]:
    """Return a list that grows by each statement this thread's history connection runs."""
    file_store.user_history(1)  # the thread's connection exists from here on
    run: list[str] = []
    file_store._history_reads._local.reader.connection.set_trace_callback(run.append)
    return run


def test_a_repeated_read_while_nothing_was_committed_runs_only_the_version_check(file_store):
    file_store.add_interactions([Event(7, 4, True)])
    file_store.user_history_rows(7)
    run = _statements_on_thread_connection(file_store)
    file_store.user_history_rows(7)
    file_store.user_history_rows(1)
    assert run == ["PRAGMA data_version", "PRAGMA data_version"]


def test_a_commit_of_another_process_makes_the_next_read_run_again(file_store, sqlite_url):
    file_store.add_interactions([Event(7, 4, True)])
    first = file_store.user_history_rows(7)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only writes
        try:
            other = EventStore.from_url(sqlite_url)
            other.add_interactions([Event(7, 5, True)])
            other.dispose()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert file_store.user_history(7).purchased == {4, 5}
    assert file_store.user_history_rows(7) is not first


# A second process that tries to begin writing, without waiting: it reports
# whether the file's write lock was free.
_TRY_TO_WRITE = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
try:
    connection.execute("BEGIN IMMEDIATE")
    print("free")
except sqlite3.OperationalError as exc:
    print(exc)
"""


def another_process_can_write(path) -> str:
    return subprocess.run(
        [sys.executable, "-c", _TRY_TO_WRITE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def test_history_reads_never_release_a_write_lock_another_connection_of_the_process_holds(
    file_store, tmp_path
):
    # SQLite's WAL locks are POSIX locks, which a process drops whole when it
    # closes any descriptor of the locked file: a history read that opened and
    # closed the -shm file let a second process write beside this one.
    path = tmp_path / "events.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    assert another_process_can_write(path) == "database is locked"

    def read_on_a_new_thread() -> None:
        file_store.user_history(7)

    for _ in range(3):  # each thread takes, then leaves, a connection of its own
        reader = threading.Thread(target=read_on_a_new_thread)
        reader.start()
        reader.join()
    gc.collect()
    file_store.dispose()
    assert another_process_can_write(path) == "database is locked"
    writer.execute("COMMIT")
    writer.close()
    assert another_process_can_write(path) == "free"
