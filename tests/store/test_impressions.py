"""Impression counts in the store: every process adds its counts, everyone reads the totals."""

from __future__ import annotations

import threading

import pytest

from recsys.online import ImpressionCounter
from recsys.store.engine import STORE_OUTAGES
from recsys.store.events import EventStore
from recsys.store.impressions import ImpressionCounts
from recsys.store.migrate import upgrade_to_head


@pytest.fixture
def counts(store):
    return ImpressionCounts(store.engine)


def test_a_store_without_impressions_has_no_totals(counts):
    assert counts.totals() == {}


def test_counts_added_in_batches_sum_per_product(counts):
    counts.add({1: 3, 2: 1})
    counts.add({2: 4, 7: 1})
    counts.add({})
    assert counts.totals() == {1: 3, 2: 5, 7: 1}


def test_processes_adding_at_the_same_time_lose_no_count(counts):
    # Each thread stands for a gunicorn worker or another server adding its batch.
    def add_batches():
        for _ in range(10):
            counts.add({product: 1 for product in range(1, 51)})

    threads = [threading.Thread(target=add_batches) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts.totals() == {product: 40 for product in range(1, 51)}


def test_each_process_sees_what_every_process_showed_after_a_sync(counts):
    first, second = ImpressionCounter(counts), ImpressionCounter(counts)
    first.count([1, 2, 3])
    second.count([3, 4])
    first.count([3])
    assert first.sync() == {1: 1, 2: 1, 3: 2}
    assert second.sync() == {1: 1, 2: 1, 3: 3, 4: 1}
    assert first.sync() == second.sync() == {1: 1, 2: 1, 3: 3, 4: 1}


def test_counts_wait_in_the_process_until_the_store_takes_them(sqlite_url):
    store = EventStore.from_url(sqlite_url)
    counter = ImpressionCounter(ImpressionCounts(store.engine))
    counter.count([5, 5, 6])
    with pytest.raises(STORE_OUTAGES):  # no table yet: the store cannot take them
        counter.sync()
    upgrade_to_head(store.engine)
    assert counter.sync() == {5: 2, 6: 1}
    store.dispose()
