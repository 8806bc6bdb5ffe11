"""A user's data in the store: deleted whole with an audit record, exported, pruned by age.

Every test runs on SQLite and PostgreSQL (the ``store`` fixtures).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.data.events import Event
from recsys.data.timestamps import utc_now
from recsys.store.tables import interactions, user_deletions
from tests.builders import SMALL_CATALOG, expose

LONG_AGO = datetime(2020, 1, 1)


def events(user_id: int, count: int, start: datetime | None = None) -> list[Event]:
    """Return ``count`` events of a user on products 1-5, a second apart from ``start``."""
    start = start or utc_now() - timedelta(hours=1)
    return [
        Event(user_id, 1 + i % 5, i % 3 == 0, start + timedelta(seconds=i)) for i in range(count)
    ]


def test_deleting_a_user_removes_every_row_about_them_and_no_one_elses(catalog_store):
    catalog_store.add_interactions(events(7, 12) + events(8, 4))
    expose(catalog_store, 7)
    expose(catalog_store, 8)
    record = catalog_store.delete_user(7, "key-0123")
    assert record is not None
    assert record.rows == {"interactions": 12, "exposure_events": 1, "exposures": 1, "users": 1}
    assert catalog_store.export_user(7) is None
    assert not catalog_store.has_user(7)
    assert catalog_store.user_history(8).events == 4
    assert len(catalog_store.export_user(8)["exposures"]) == 1


def test_the_audit_record_keeps_who_when_and_how_many_rows_never_the_data(catalog_store):
    catalog_store.add_interactions(events(7, 3))
    before = utc_now()
    catalog_store.delete_user(7, "key-0123")
    (record,) = catalog_store.deletions(7)
    assert record.deleted_by == "key-0123"
    assert before <= record.deleted_at <= utc_now()
    assert record.total_rows == 4
    with catalog_store.engine.connect() as conn:
        columns = set(conn.execute(sa.select(user_deletions)).mappings().one())
    assert columns == {"id", "user_id", "deleted_at", "deleted_by", "rows"}


def test_deleting_a_user_the_store_does_not_know_writes_nothing(catalog_store):
    assert catalog_store.delete_user(99, "key-0123") is None
    assert catalog_store.deletions_after(0) == []


def test_a_user_deleted_twice_is_unknown_the_second_time(catalog_store):
    catalog_store.add_interactions(events(7, 2))
    assert catalog_store.delete_user(7, "cli:ops") is not None
    assert catalog_store.delete_user(7, "cli:ops") is None


def test_the_export_holds_the_user_row_every_event_and_every_exposure(catalog_store):
    catalog_store.add_interactions(events(7, 3, start=datetime(2026, 1, 1)))
    expose(catalog_store, 7)
    found = catalog_store.export_user(7)
    assert found["user_id"] == 7 and found["user"]["id"] == 7
    assert [e["created_at"] for e in found["interactions"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:02Z",
    ]
    assert [e["product_id"] for e in found["interactions"]] == [1, 2, 3]
    assert found["exposures"][0]["recommendation_id"] == "r7"
    assert found["exposure_events"][0]["purchased"] is True


def test_an_unknown_user_has_no_export(catalog_store):
    assert catalog_store.export_user(99) is None


def test_no_event_acknowledged_before_a_delete_survives_it_while_the_user_keeps_posting(
    catalog_store,
):
    user, acknowledged, stop = 7, {}, threading.Event()
    start = datetime(2026, 1, 1)

    def post() -> None:
        i = 0
        while not stop.is_set():
            stamp = start + timedelta(microseconds=i)
            catalog_store.add_interactions([Event(user, 1 + i % 5, False, stamp)])
            acknowledged[stamp] = time.monotonic()
            i += 1

    poster = threading.Thread(target=post)
    poster.start()
    try:
        while len(acknowledged) < 50:
            time.sleep(0.01)
        began = time.monotonic()
        record = catalog_store.delete_user(user, "key-0123")
        time.sleep(0.05)  # more events arrive after the deletion
    finally:
        stop.set()
        poster.join()
    assert record is not None and record.rows["interactions"] >= 50
    with catalog_store.engine.connect() as conn:
        left = conn.execute(
            sa.select(interactions.c.created_at).where(interactions.c.user_id == user)
        ).scalars()
        survivors = [acknowledged.get(stamp) for stamp in left]
    assert survivors, "events posted after the deletion are kept"
    assert all(at is None or at > began for at in survivors)


def test_pruning_deletes_only_the_events_older_than_the_moment_in_chunks(catalog_store):
    catalog_store.add_interactions(events(7, 30, start=LONG_AGO) + events(8, 10))
    catalog_store.add_interactions(events(9, 5, start=LONG_AGO))  # old events at high ids
    chunks: list[tuple[int, int]] = []
    deleted = catalog_store.prune_events(
        datetime(2021, 1, 1), chunk_ids=7, on_chunk=lambda ids, n: chunks.append((ids, n))
    )
    assert deleted == 35
    assert len(chunks) == 7 and sum(ids for ids, _ in chunks) == 45
    assert catalog_store.count_events_before(datetime(2021, 1, 1)) == 0
    assert catalog_store.user_history(8).events == 10
    assert catalog_store.has_user(7)  # the user stays; only their old events go


def test_pruning_an_empty_store_deletes_nothing(catalog_store):
    assert catalog_store.prune_events(utc_now()) == 0
    assert catalog_store.prune_exposures(utc_now()) == (0, 0)


def test_pruning_exposures_deletes_the_lists_and_linked_events_from_before_the_moment(
    catalog_store,
):
    for user in range(1, 8):  # seven lists served long ago, clicked then
        expose(catalog_store, user, served_at=LONG_AGO)
    expose(catalog_store, 8, served_at=LONG_AGO, clicked_at=utc_now())  # clicked only now
    expose(catalog_store, 9)  # served and clicked now
    pruned = catalog_store.prune_exposures(datetime(2021, 1, 1), chunk_rows=3)
    assert pruned == (8, 7)
    assert pruned.exposures == 8 and pruned.linked_events == 7
    kept = {user: catalog_store.export_user(user) for user in (1, 8, 9)}
    assert kept[1] is None  # nothing of that user is left
    assert (len(kept[8]["exposures"]), len(kept[8]["exposure_events"])) == (0, 1)
    assert (len(kept[9]["exposures"]), len(kept[9]["exposure_events"])) == (1, 1)
    assert catalog_store.prune_exposures(datetime(2021, 1, 1)) == (0, 0)


def test_many_histories_read_together_equal_each_read_alone(catalog_store):
    catalog_store.add_interactions(events(7, 12) + events(8, 4) + events(9, 1))
    together = catalog_store.user_histories([9, 7, 8, 10])
    assert set(together) == {7, 8, 9}
    for user, history in together.items():
        assert history == catalog_store.user_history(user)


def test_a_product_marked_unavailable_stays_so_until_marked_available_again(catalog_store):
    hidden = SMALL_CATALOG.assign(available=[None, False, None, None, None])
    catalog_store.upsert_products(hidden.astype({"available": object}))
    assert catalog_store.hidden_products() == {2}
    catalog_store.upsert_products(SMALL_CATALOG)  # no availability: unchanged
    assert catalog_store.hidden_products() == {2}
    assert catalog_store.product(2)["available"] is False
    shown = SMALL_CATALOG.iloc[[1]].assign(available=[True]).astype({"available": object})
    catalog_store.upsert_products(shown)
    assert catalog_store.hidden_products() == frozenset()


def test_user_ids_are_read_in_pages_in_order(catalog_store):
    catalog_store.add_interactions([Event(u, 1, False) for u in (5, 3, 9, 1, 7)])
    assert list(catalog_store.user_ids(page=2)) == [[1, 3], [5, 7], [9]]


@pytest.mark.parametrize("days", [1, 400])
def test_training_reads_only_the_events_within_the_retention(catalog_store, days):
    from recsys.store.bulk import read_interactions

    catalog_store.add_interactions(events(7, 6, start=utc_now() - timedelta(days=30)))
    catalog_store.add_interactions(events(8, 4))
    since = utc_now() - timedelta(days=days)
    log = read_interactions(catalog_store.engine, since=since)
    assert sorted(pd.unique(log["user_id"])) == ([8] if days == 1 else [7, 8])
