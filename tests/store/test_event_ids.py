"""Idempotent ingestion and typed events in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.data.events import Event, EventIdConflictError
from recsys.data.interactions import load_interactions
from recsys.data.ratings import derive_ratings
from recsys.errors import DataFileError
from recsys.store.bulk import read_interactions
from recsys.store.events import EventStore, Ingested, UnknownProductError, UserHistory
from recsys.store.migrate import upgrade_to, upgrade_to_head
from tests.builders import SMALL_CATALOG
from tests.store.test_store import write_old_interactions

BATCH = [
    Event(7, 1, type="view", event_id="v-1"),
    Event(7, 2, type="rating", value=4, event_id="r-1"),
    Event(8, 3, type="dislike", event_id="d-1"),
    Event(8, 4, True, datetime(2026, 12, 1, 9, 30), event_id="p-1"),
    Event(9, 5),  # no event_id: stored each time it is sent
]


def test_a_retried_batch_stores_nothing_twice(catalog_store):
    assert catalog_store.ingest(BATCH) == Ingested(new=5, known=0, purchases=1)
    assert catalog_store.ingest(BATCH[:4]) == Ingested(new=0, known=4, purchases=0)
    assert catalog_store.counts().interactions == 5


def test_a_batch_mixing_new_and_known_events_stores_only_the_new(catalog_store):
    catalog_store.ingest(BATCH[:2])
    assert catalog_store.ingest(BATCH[:4]) == Ingested(new=2, known=2, purchases=1)
    assert catalog_store.counts().interactions == 4


def test_an_event_id_given_twice_in_one_batch_is_stored_once(catalog_store):
    assert catalog_store.ingest([BATCH[0], BATCH[1], BATCH[0]]) == Ingested(2, 1, 0)
    assert catalog_store.counts().interactions == 2


@pytest.mark.parametrize(
    ("reused", "difference"),
    [
        (Event(7, 1, type="click", event_id="v-1"), "type 'click', where 'view' is recorded"),
        (Event(6, 1, type="view", event_id="v-1"), "user_id 6, where 7 is recorded"),
        (Event(7, 2, type="rating", value=5, event_id="r-1"), "value 5, where 4 is recorded"),
        (
            Event(8, 4, True, datetime(2026, 12, 1, 9, 31), event_id="p-1"),
            "timestamp 2026-12-01T09:31:00, where another is recorded",
        ),
    ],
)
def test_an_event_id_reused_with_other_content_is_refused_and_nothing_is_written(
    catalog_store, reused, difference
):
    catalog_store.ingest(BATCH)
    with pytest.raises(EventIdConflictError) as refused:
        catalog_store.ingest([Event(9, 1, event_id="new-one"), reused])
    assert refused.value.index == 1 and refused.value.event_id == reused.event_id
    assert difference in str(refused.value)
    assert catalog_store.counts().interactions == 5  # not even the new event of that batch


def test_a_retry_without_the_timestamp_the_server_gave_is_the_same_event(catalog_store):
    catalog_store.ingest([Event(7, 1, type="cart", event_id="c")])
    assert catalog_store.ingest([Event(7, 1, type="cart", event_id="c")]) == Ingested(0, 1, 0)


def test_an_unknown_product_still_rejects_the_whole_batch(catalog_store):
    with pytest.raises(UnknownProductError):
        catalog_store.ingest([BATCH[0], Event(7, 99, type="view", event_id="x")])
    assert catalog_store.counts().interactions == 0


def test_a_users_history_holds_each_type_and_the_ratings_stars(catalog_store):
    catalog_store.ingest(BATCH)
    catalog_store.ingest([Event(7, 2, type="rating", value=2), Event(7, 1, type="cart")])
    untimed = dataclasses.replace(catalog_store.user_history(7), latest=())  # times: elsewhere
    assert untimed == UserHistory.of_events(
        [(1, "view", 1, 0), (1, "cart", 1, 0), (2, "rating", 2, 6)]
    )
    assert catalog_store.user_history(8).disliked == frozenset({3})
    assert catalog_store.user_history(8).purchased == frozenset({4})


def test_training_reads_the_types_and_values_back(catalog_store):
    catalog_store.ingest(BATCH)
    log = read_interactions(catalog_store.engine, page_rows=2)
    assert log["type"].tolist() == ["view", "rating", "dislike", "purchase", "click"]
    assert log["value"].tolist() == [0, 4, 0, 0, 0]
    assert log.equals(catalog_store.interactions_frame())
    assert derive_ratings(log)["engagement"].tolist() == [0.5, 4.0, -5.0, 3.0, 1.0]


def test_an_exported_typed_store_imports_into_an_empty_one_as_the_same_events(
    catalog_store, tmp_path
):
    catalog_store.ingest(BATCH)
    path = tmp_path / "export.csv"
    assert catalog_store.export_interactions(path, include_timestamps=True) == 5
    header = path.read_text().splitlines()[0]
    assert header == "user_id,product_clicked,purchased,timestamp,type,value,event_id"
    with catalog_store.engine.begin() as conn:  # the same catalog, no events
        conn.execute(sa.text("DELETE FROM interactions"))
    assert catalog_store.import_interactions(path).new == 5
    log = read_interactions(catalog_store.engine)
    assert log["type"].tolist() == ["view", "rating", "dislike", "purchase", "click"]
    assert log["value"].tolist() == [0, 4, 0, 0, 0]
    # The ids came back too: the same batch sent again is known.
    assert catalog_store.ingest(BATCH[:4]) == Ingested(new=0, known=4, purchases=0)


def test_concurrent_retries_of_one_batch_store_it_once(catalog_store):
    batch = [Event(100 + i, 1 + i % 5, type="view", event_id=f"e-{i}") for i in range(300)]
    results: list[Ingested] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(catalog_store.ingest(batch))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.new for r in results) == [0, 0, 0, 300]
    assert catalog_store.counts().interactions == 300


# -- importing files ---------------------------------------------------------------------


def _log(tmp_path, text: str):
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def test_a_file_with_event_ids_imported_twice_imports_nothing_the_second_time(
    catalog_store, tmp_path
):
    path = _log(
        tmp_path,
        "user_id,product_clicked,purchased,type,value,event_id\n"
        "1,2,,view,,a\n1,3,,rating,5,b\n2,3,1,,,c\n",
    )
    assert catalog_store.import_interactions(path) == Ingested(3, 0, 1)
    assert catalog_store.import_interactions(path) == Ingested(0, 3, 0)
    assert catalog_store.counts().interactions == 3


def test_a_file_without_event_ids_imported_twice_is_refused_unless_appended(
    catalog_store, tmp_path
):
    path = _log(tmp_path, "user_id,product_clicked,purchased\n1,2,0\n1,3,1\n")
    assert catalog_store.import_interactions(path).new == 2
    with pytest.raises(DataFileError) as refused:
        catalog_store.import_interactions(path)
    assert str(refused.value).startswith(f"{path}: this file was imported on ")
    assert "pass --append to import it again" in str(refused.value)
    assert catalog_store.counts().interactions == 2
    assert catalog_store.import_interactions(path, append=True).new == 2
    assert catalog_store.counts().interactions == 4


def test_the_log_that_filled_an_empty_store_is_refused_when_imported_again(store, tmp_path):
    path = _log(tmp_path, "user_id,product_clicked,purchased\n1,2,0\n1,3,1\n")
    assert store.bootstrap(SMALL_CATALOG, load_interactions(path), source=path) is True
    with pytest.raises(DataFileError, match=r"this file was imported on .* \(2 events"):
        store.import_interactions(path)
    assert store.counts().interactions == 2


def test_a_refused_file_is_not_remembered_as_imported(catalog_store, tmp_path):
    path = _log(tmp_path, "user_id,product_clicked,purchased\n1,2,0\n1,99,1\n")
    with pytest.raises(DataFileError, match="line 3: unknown product_id 99"):
        catalog_store.import_interactions(path)
    catalog_store.upsert_products(
        pd.concat([SMALL_CATALOG, pd.DataFrame({"product_id": [99]})], ignore_index=True)
    )
    assert catalog_store.import_interactions(path).new == 2


def test_a_file_reusing_an_event_id_names_both_lines(catalog_store, tmp_path):
    path = _log(tmp_path, "user_id,product_clicked,purchased,event_id\n1,2,0,a\n1,3,0,b\n1,4,0,a\n")
    with pytest.raises(DataFileError) as refused:
        catalog_store.import_interactions(path)
    assert (
        f"{path}, line 4: event_id 'a' already names another event "
        "(product_id 4, where 2 is in line 2)"
    ) in str(refused.value)
    assert catalog_store.counts().interactions == 0


def test_a_file_reusing_a_stored_event_id_for_another_event_is_refused(catalog_store, tmp_path):
    catalog_store.ingest([Event(1, 2, type="view", event_id="a")])
    path = _log(
        tmp_path, "user_id,product_clicked,purchased,type,event_id\n1,3,,cart,z\n1,2,,cart,a\n"
    )
    with pytest.raises(DataFileError, match=r"line 3: event_id 'a' already names another event"):
        catalog_store.import_interactions(path)
    assert catalog_store.counts().interactions == 1


# -- migrating a store from before event types ----------------------------------------


def test_migrating_a_store_with_old_rows_makes_them_clicks_and_purchases(database_url):
    old = EventStore.from_url(database_url)
    upgrade_to(old.engine, "0010")
    old.upsert_products(SMALL_CATALOG)
    rows = [(7, 1, True), (7, 1, False), (7, 2, False), (8, 2, True)]
    write_old_interactions(old.engine, rows)
    with old.engine.connect() as conn:
        query = (
            "SELECT user_id, product_id AS product_clicked, "
            "CAST(purchased AS INTEGER) AS purchased FROM interactions ORDER BY id"
        )
        before = pd.read_sql(sa.text(query), conn)

    upgrade_to_head(old.engine)
    log = old.interactions_frame()
    assert log["type"].tolist() == ["purchase", "click", "click", "purchase"]
    assert log[["user_id", "product_clicked", "purchased"]].equals(before.astype("int64"))
    # Every rating, and every user's history, is what it was before the migration.
    assert derive_ratings(log).equals(derive_ratings(before))
    assert old.user_history(7).counts() == [[1, 2, 1], [2, 1, 0]]
    # The migrated store takes typed events and event ids.
    assert old.ingest([Event(7, 3, type="dislike", event_id="x")]) == Ingested(1, 0, 0)
    assert old.ingest([Event(7, 3, type="dislike", event_id="x")]) == Ingested(0, 1, 0)
    old.dispose()
