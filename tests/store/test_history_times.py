"""A user's history knows when they last had an event with each product, as training does."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from recsys.data.events import Event
from recsys.data.ratings import EventWeights
from recsys.models.profile import epoch_seconds
from recsys.store.bulk import read_interactions
from recsys.store.events import EventStore, UserHistory
from recsys.store.migrate import upgrade_to_head
from recsys.training.train import TrainingSettings, reads_times
from tests.builders import SMALL_CATALOG

# Several types per product, fractions of a second, one a microsecond before
# the next second (SQLite's strftime alone would round it up).
EVENTS = [
    Event(7, 1, False, datetime(2026, 3, 1, 8, 0, 0, 250000), "view"),
    Event(7, 1, False, datetime(2026, 3, 1, 9, 15, 42, 999999), "click"),
    Event(7, 1, True, datetime(2026, 3, 1, 9, 0, 0), "purchase"),
    Event(7, 2, False, datetime(2026, 3, 2, 23, 59, 59, 999999), "rating", 4),
    Event(7, 2, False, datetime(2026, 3, 2, 10, 0, 0, 500000), "view"),
    Event(7, 3, False, datetime(1969, 12, 31, 23, 59, 59, 500000), "view"),
    Event(8, 1, False, datetime(2026, 4, 1, 0, 0, 0, 1), "click"),
]


def latest_by_training(user_id: int) -> list[int]:
    """Return what a training frame makes of the user's latest event of each product."""
    frame = pd.DataFrame(
        [(e.product_id, e.created_at) for e in EVENTS if e.user_id == user_id],
        columns=["product_id", "timestamp"],
    )
    return epoch_seconds(frame.groupby("product_id", sort=True)["timestamp"].max()).tolist()


def test_the_history_gives_each_products_latest_event_in_whole_seconds(catalog_store):
    catalog_store.ingest(EVENTS)
    history = catalog_store.user_history(7)
    assert history.product_ids == (1, 2, 3)
    assert list(history.latest) == latest_by_training(7)
    assert history.latest == (1772356542, 1772495999, -1)


def test_many_users_histories_give_the_same_latest_times(catalog_store):
    catalog_store.ingest(EVENTS)
    histories = catalog_store.user_histories([7, 8])
    assert histories[7] == catalog_store.user_history(7)
    assert list(histories[8].latest) == latest_by_training(8)


def test_an_in_memory_sqlite_store_reads_the_times_through_the_driver_too():
    store = EventStore.from_url("sqlite://")
    upgrade_to_head(store.engine)
    store.upsert_products(SMALL_CATALOG)
    store.ingest(EVENTS)
    assert list(store.user_history(7).latest) == latest_by_training(7)
    store.dispose()


def test_a_products_latest_is_the_largest_of_its_rows():
    history = UserHistory.of_events(
        [(4, "view", 1, 0, 30), (4, "click", 2, 0, 50), (2, 0, 1, 0, 40)]
    )
    assert history.product_ids == (2, 4) and history.latest == (40, 50)


def test_event_rows_round_trip_with_the_latest_times():
    history = UserHistory.of_events(
        [(1, "view", 1, None, 10), (1, "rating", 2, 9, 30), (5, "dislike", 1, 0, 20)]
    )
    assert all(len(row) == 5 for row in history.event_rows())
    assert UserHistory.of_events(history.event_rows()) == history


@pytest.mark.parametrize(
    "rows",
    [
        [(1, "view", 1, 0, 10), (2, "click", 1, 0)],
        [(1, "view", 1, 0), (1, "click", 1, 0, 10)],
        [(1, "view", 1, 0, None)],
    ],
)
def test_a_row_without_a_time_makes_every_time_unknown(rows):
    history = UserHistory.of_events(rows)
    assert history.has_events and history.latest == ()
    assert all(len(row) == 4 for row in history.event_rows())


def test_the_profile_carries_the_latest_times_as_int64():
    profile = UserHistory.of_events([(3, "click", 1, 0, 200), (1, "view", 1, 0, 100)]).profile(
        EventWeights()
    )
    assert profile.latest is not None and profile.latest.dtype == np.int64
    assert profile.latest.tolist() == [100, 200]


def test_the_profile_of_a_history_without_times_has_none():
    assert UserHistory.of([(1, 2, 0)]).profile(EventWeights()).latest is None


def test_training_reads_each_events_time_in_the_same_seconds_when_asked(catalog_store):
    catalog_store.ingest(EVENTS)
    timed = read_interactions(catalog_store.engine, times=True)
    expected = epoch_seconds(pd.Series([e.created_at for e in EVENTS])).tolist()
    assert timed["timestamp"].tolist() == expected
    assert "timestamp" not in read_interactions(catalog_store.engine).columns


def test_only_settings_that_fit_a_model_weighing_recency_read_the_times():
    assert not reads_times(TrainingSettings(model="ease"))
    assert reads_times(TrainingSettings(model="ease", model_params={"recency": 5.0}))
    assert reads_times(
        TrainingSettings(
            model="auto", model_params={"ease": {"recency": 5.0}}, candidates=("ease",)
        )
    )
    assert not reads_times(
        TrainingSettings(model="auto", model_params={"ease": {"recency": 5.0}}, candidates=("svd",))
    )
