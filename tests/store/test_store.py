"""The event store behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.data.events import Event
from recsys.errors import DataFileError
from recsys.store.events import _USER_HISTORY, EventStore, UnknownProductError, UserHistory
from recsys.store.job_queue import JobQueue, JobState, TrainingJob
from recsys.store.migrate import alembic_config, upgrade_to, upgrade_to_head
from recsys.store.tables import training_jobs
from tests.builders import SMALL_CATALOG


def test_events_are_recorded_and_unknown_users_created(catalog_store):
    written = catalog_store.add_interactions(
        [Event(7, 1, False), Event(7, 2, True), Event(8, 2, False)]
    )
    assert written == 3
    counts = catalog_store.counts()
    assert (counts.products, counts.users, counts.interactions) == (5, 2, 3)


def test_interactions_frame_has_the_log_schema_in_insertion_order(catalog_store):
    catalog_store.add_interactions([Event(9, 3, True), Event(7, 1, False)])
    catalog_store.add_interactions([Event(7, 2, type="rating", value=4)])
    frame = catalog_store.interactions_frame()
    assert list(frame.columns) == ["user_id", "product_clicked", "purchased", "type", "value"]
    assert frame[["user_id", "product_clicked", "purchased", "value"]].values.tolist() == [
        [9, 3, 1, 0],
        [7, 1, 0, 0],
        [7, 2, 0, 4],
    ]
    assert frame["type"].tolist() == ["purchase", "click", "rating"]
    assert all(frame[c].dtype == "int64" for c in ("user_id", "product_clicked", "purchased"))


def test_a_purchase_is_visible_in_the_users_history_at_once(catalog_store):
    catalog_store.add_interactions([Event(7, 1, False)])
    assert catalog_store.user_history(7).counts() == [[1, 1, 0]]
    catalog_store.add_interactions([Event(7, 4, True), Event(7, 4, True), Event(7, 1, False)])
    history = catalog_store.user_history(7)
    assert history.purchased == {4}
    assert history.counts() == [[1, 2, 0], [4, 2, 2]] and history.events == 4


def test_a_user_without_events_has_an_empty_history(catalog_store):
    catalog_store.add_interactions([Event(7, 1, False)])
    assert catalog_store.user_history(8) == UserHistory()
    assert not UserHistory().has_events


def test_a_failed_history_read_on_sqlite_is_an_outage_sqlalchemy_names(sqlite_url):
    # The history read takes the driver's own path on SQLite (only there); its
    # errors must still be the ones the service answers 503 for.
    store = EventStore.from_url(sqlite_url)
    upgrade_to_head(store.engine)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE interactions RENAME TO interactions_gone")
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        store.user_history(1)
    store.dispose()


def test_the_history_read_is_answered_from_an_index_alone(catalog_store):
    # Every uncached answer makes this read: it must never visit the table.
    catalog_store.add_interactions([Event(7, 1, False), Event(7, 4, True), Event(8, 1, True)])
    query = _USER_HISTORY.params(user_id=7)
    sql = str(query.compile(catalog_store.engine, compile_kwargs={"literal_binds": True}))
    with catalog_store.engine.begin() as conn:
        if catalog_store.engine.dialect.name == "sqlite":
            plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "COVERING INDEX ix_interactions_user_product_history" in plan
        else:
            # The planner prefers a table scan on a tiny table; without it, the index alone.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            plan = " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Index Only Scan using ix_interactions_user_product_history" in plan


def test_history_reads_return_their_connections_to_the_pool(catalog_store):
    pool = catalog_store.engine.pool
    for user in range(1, 200):
        catalog_store.user_history(user)
    assert pool.checkedout() == 0


def test_an_unknown_product_rejects_the_whole_batch(catalog_store):
    catalog_store.add_interactions([Event(7, 1, False)])
    batch = [Event(7, 2, True), Event(50, 3, False), Event(51, 99, True), Event(52, 98, True)]
    with pytest.raises(UnknownProductError) as caught:
        catalog_store.add_interactions(batch)
    assert (caught.value.index, caught.value.product_id) == (2, 99)
    counts = catalog_store.counts()
    assert (counts.users, counts.interactions) == (1, 1), "nothing of the batch may be written"


def test_a_users_interactions_are_paged_newest_first_by_time_then_row(catalog_store):
    at = [datetime(2026, 1, day, 12) for day in (2, 3, 2, 1)]
    catalog_store.add_interactions(
        [Event(7, p, p == 2, t) for p, t in zip((1, 2, 3, 4), at, strict=True)]
    )
    catalog_store.add_interactions([Event(8, 5, False, at[0])])
    first = catalog_store.user_interactions(7, 2)
    assert [(e.product_id, e.purchased, e.created_at) for e in first] == [
        (2, True, at[1]),
        (3, False, at[2]),  # same time as product 1, a later row
    ]
    rest = catalog_store.user_interactions(7, 10, before=(first[-1].created_at, first[-1].id))
    assert [e.product_id for e in rest] == [1, 4]
    assert catalog_store.user_interactions(9, 10) == []
    assert catalog_store.has_user(8) and not catalog_store.has_user(9)


def test_products_are_paged_by_id_within_a_category(catalog_store):
    assert [p["product_id"] for p in catalog_store.products_page(2)] == [1, 2]
    assert [p["product_id"] for p in catalog_store.products_page(2, after=2)] == [3, 4]
    kitchen = catalog_store.products_page(10, category="kitchen")
    assert [p["product_id"] for p in kitchen] == [2, 3]
    assert catalog_store.product(3) == {
        "product_id": 3,
        "name": "Mug",
        "category": "kitchen",
        "price": 8.5,
        "available": True,
    }
    assert catalog_store.product(99) is None


def test_timestamps_are_stored_as_given_in_utc(catalog_store):
    stamp = datetime(2026, 1, 31, 12, 30, 5)
    catalog_store.add_interactions([Event(7, 1, False, stamp)])
    with catalog_store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT created_at FROM interactions").scalar_one()
    if isinstance(stored, str):  # SQLite hands back text on a raw query
        stored = datetime.fromisoformat(stored)
    assert stored == stamp


@pytest.mark.slow
def test_eight_threads_posting_500_events_each_store_exactly_4000(catalog_store):
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def post_events(thread: int) -> None:
        try:
            start.wait()
            for i in range(500):
                # Every thread touches new and shared users, so user creation races too.
                catalog_store.add_interactions([Event(1000 + i % 50, 1 + i % 5, i % 7 == 0)])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=post_events, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = catalog_store.counts()
    assert counts.interactions == 4000
    assert counts.users == 50


def test_bootstrap_fills_an_empty_store_once(store):
    log = pd.DataFrame({"user_id": [1, 2, 2], "product_clicked": [1, 1, 3], "purchased": [0, 1, 0]})
    assert store.bootstrap(SMALL_CATALOG, log) is True
    assert store.bootstrap(SMALL_CATALOG, log) is False
    counts = store.counts()
    assert (counts.products, counts.users, counts.interactions) == (5, 2, 3)
    assert store.products_frame().equals(SMALL_CATALOG)


@pytest.mark.parametrize("with_timestamps", [False, True])
def test_export_then_import_round_trips(catalog_store, tmp_path, with_timestamps):
    events = [
        Event(7, 1, False, datetime(2026, 3, 1, 8, 0)),
        Event(8, 5, True, datetime(2026, 3, 2, 9, 0)),
    ]
    catalog_store.add_interactions(events)
    path = tmp_path / "export.csv"
    assert catalog_store.export_interactions(path, include_timestamps=with_timestamps) == 2
    header = path.read_text().splitlines()[0]
    expected_header = "user_id,product_clicked,purchased" + (
        ",timestamp" if with_timestamps else ""
    )
    assert header == expected_header
    assert catalog_store.import_interactions(path).new == 2
    frame = catalog_store.interactions_frame()
    assert frame.values[:, :3].tolist() == [[7, 1, 0], [8, 5, 1], [7, 1, 0], [8, 5, 1]]
    if with_timestamps:
        with catalog_store.engine.connect() as conn:
            stamps = conn.execute(sa.text("SELECT created_at FROM interactions ORDER BY id"))
            values = [
                v if isinstance(v, datetime) else datetime.fromisoformat(v)
                for v in stamps.scalars()
            ]
        assert values[2:] == values[:2]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("", 1, "empty"),
        ("user,product,purchased\n1,1,0\n", 1, "header"),
        ("user_id,product_clicked,purchased\n", 2, "no interactions"),
        ("user_id,product_clicked,purchased\n1,1,0\n1,x,0\n", 3, "product_clicked must be"),
        ("user_id,product_clicked,purchased\n1,1,0\n0,1,0\n", 3, "user_id must be an integer"),
        ("user_id,product_clicked,purchased\n1,1,2\n", 2, "purchased must be 0 or 1"),
        ("user_id,product_clicked,purchased\n1,1,0\n1,1\n", 3, "purchased is missing"),
        ("user_id,product_clicked,purchased\n1,1,0\n1,1,0,9\n", 3, "expected 3 fields, found 4"),
        ("user_id,product_clicked,purchased\n1,1,0\n2,42,1\n", 3, "unknown product_id 42"),
        ('user_id,product_clicked,purchased\n1,1,0\n"1,1,0\n1,1,0\n', 3, "never closed"),
        (
            # A quoted field may hold a line break: the unclosed quote is on line 5, record 3.
            'user_id,product_clicked,purchased,event_id\n1,1,0,"a\nb"\n1,1,0,c\n"1,1,0,d\n',
            5,
            "a quoted field starts on this line and is never closed",
        ),
        ("user_id,product_clicked,purchased,timestamp\n1,1,0,yesterday\n", 2, "ISO-8601"),
    ],
)
def test_a_bad_import_file_names_the_line_and_writes_nothing(
    catalog_store, tmp_path, content, line, message
):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as caught:
        catalog_store.import_interactions(path)
    assert caught.value.line == line
    assert caught.value.path == str(path)
    assert catalog_store.counts().interactions == 0


def test_importing_a_missing_file_is_a_data_file_error(catalog_store, tmp_path):
    with pytest.raises(DataFileError, match="file not found"):
        catalog_store.import_interactions(tmp_path / "absent.csv")


def test_import_with_a_progress_bar_reports_on_stderr(catalog_store, tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("user_id,product_clicked,purchased\n" + "3,2,1\n" * 200)
    assert catalog_store.import_interactions(path, progress=True).new == 200
    assert "200/200" in capsys.readouterr().err


def test_upgrading_from_the_first_revision_keeps_every_event(database_url):
    old = EventStore.from_url(database_url)
    upgrade_to(old.engine, "0001")
    assert current_revision(old.engine) == "0001"
    old.upsert_products(SMALL_CATALOG)
    write_old_interactions(old.engine, [(7, 1, True), (8, 2, False)])
    before = (old.counts(), _old_rows(old.engine))

    upgrade_to_head(old.engine)
    assert current_revision(old.engine) == head_revision() != "0001"
    assert old.counts() == before[0]
    assert _old_rows(old.engine) == before[1]
    upgrade_to_head(old.engine)  # a second start changes nothing
    assert old.counts() == before[0]
    old.dispose()


def write_old_interactions(engine: sa.Engine, rows: list[tuple[int, int, bool]]) -> None:
    """Write (user, product, purchased) rows as a store from before event types held them."""
    now = datetime(2026, 11, 1, 12, 0)
    with engine.begin() as conn:
        for user in sorted({user for user, _, _ in rows}):
            conn.execute(
                sa.text("INSERT INTO users (id, created_at) VALUES (:id, :at)"),
                {"id": user, "at": now},
            )
        conn.execute(
            sa.text(
                "INSERT INTO interactions (user_id, product_id, purchased, created_at) "
                "VALUES (:user, :product, :purchased, :at)"
            ),
            [{"user": u, "product": p, "purchased": b, "at": now} for u, p, b in rows],
        )


def _old_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        query = (
            "SELECT id, user_id, product_id, purchased, created_at FROM interactions ORDER BY id"
        )
        return [tuple(row) for row in conn.execute(sa.text(query))]


def test_upgrading_to_job_leases_keeps_every_job_record_and_expires_none(database_url):
    old = EventStore.from_url(database_url)
    upgrade_to(old.engine, "0006")
    requested = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    records = [
        TrainingJob(
            "done",
            JobState.SUCCEEDED,
            "api",
            requested,
            started_at=requested,
            finished_at=requested,
            version="v00002-x",
            metrics={"rmse": 0.9},
        ),
        TrainingJob("held", JobState.RUNNING, "auto", requested, started_at=requested),
    ]
    jobs = JobQueue(old.engine, lease_seconds=0.001)
    for record in records:
        jobs.save(record)

    upgrade_to_head(old.engine)
    assert [jobs.get(record.id) for record in records] == records
    with old.engine.connect() as conn:
        assert conn.execute(sa.select(training_jobs.c.heartbeat_at)).scalars().all() == [None] * 2
    # A job claimed before leases has no beat to lapse: the start-up close covers it.
    assert jobs.fail_expired() == 0
    assert jobs.get("held").state is JobState.RUNNING
    old.dispose()


def test_training_job_records_round_trip(store):
    requested = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    running = TrainingJob("abc", JobState.RUNNING, "api", requested, started_at=requested)
    jobs = JobQueue(store.engine)
    jobs.save(running)
    succeeded = dataclasses.replace(
        running, state=JobState.SUCCEEDED, version="v00002-x", metrics={"rmse": 0.9}
    )
    jobs.save(succeeded)
    assert jobs.get("abc") == succeeded
    assert jobs.get("abc").requested_at == requested
    assert jobs.get("missing") is None


@pytest.mark.parametrize(
    ("keep_queued", "closed", "states"),
    [
        (False, 2, ["failed", "failed", "succeeded"]),
        (True, 1, ["queued", "failed", "succeeded"]),
    ],
)
def test_unfinished_job_records_can_be_closed(store, keep_queued, closed, states):
    jobs = JobQueue(store.engine)
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    for job_id, state in [("a", "queued"), ("b", "running"), ("c", "succeeded")]:
        jobs.save(TrainingJob(job_id, JobState(state), "api", now))
    assert jobs.fail_unfinished("interrupted", keep_queued=keep_queued) == closed
    assert [jobs.get(j).state for j in "abc"] == states
    assert jobs.get("b").error == "interrupted"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url):
    sqlite_store = EventStore.from_url(sqlite_url)
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    sqlite_store.dispose()


def test_unsupported_database_url_is_refused():
    with pytest.raises(ValueError, match="unsupported database URL"):
        EventStore.from_url("mysql://localhost/shop")


def test_the_migrations_create_exactly_the_schema_the_store_describes(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from recsys.store.tables import metadata

    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def current_revision(engine) -> str | None:
    """Return the revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """Return the newest revision in the migrations folder."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
