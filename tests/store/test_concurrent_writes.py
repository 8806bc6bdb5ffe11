"""Writers at once on both databases: one running experiment, one name each, no deadlocks.

Each test fires the same kind of write from many threads at the same moment
(a barrier releases them together), through the Flask test client of one
app, and checks every answer and what the store holds afterwards.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from recsys.experiments.records import ExperimentStore
from recsys.store.engine import retry_conflicts
from recsys.store.events import EventStore
from recsys.store.migrate import upgrade_to, upgrade_to_head
from recsys.store.tables import experiments, products
from tests.builders import POPULAR_VS_CHAMPION, SMALL_CATALOG, runtime_of
from tests.locks import writes_held

STARTS_AT_ONCE = 6


def at_once(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(0..count-1)`` in as many threads, released together; results in order."""
    barrier = threading.Barrier(count)

    def released(index: int) -> Any:
        barrier.wait()
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(released, range(count)))


def answered(response) -> tuple[int, str | None]:
    """Return (status, error code) of a test-client response."""
    body = response.get_json()
    code = body["error"]["code"] if isinstance(body, dict) and "error" in body else None
    return response.status_code, code


def experiment_named(name: str) -> dict[str, Any]:
    return {**POPULAR_VS_CHAMPION, "name": name}


def running_names(store: ExperimentStore) -> list[str]:
    return [row["name"] for row in store.list() if row["status"] == "running"]


# -- experiments -------------------------------------------------------------------


def posted_at_once(app, paths: list[str], body: Any = None) -> list[tuple[int, str | None, Any]]:
    """POST to each path at once while the experiments table's writes are held.

    The writes go through once every request waits for them (on SQLite:
    after a moment), so on PostgreSQL each request has read the table
    before any writes it. Returns (status, error code, body) per path.
    """

    def post(path: str) -> tuple[int, str | None, Any]:
        response = app.test_client().post(path, json=body)
        return (*answered(response), response.get_json())

    with ThreadPoolExecutor(len(paths)) as pool:
        with writes_held(runtime_of(app).store.engine, experiments) as wait_for:
            answers = [pool.submit(post, path) for path in paths]
            wait_for(len(paths))
        return [answer.result(timeout=30) for answer in answers]


def test_creating_one_name_at_once_makes_one_experiment_and_409s(any_app_factory):
    app = any_app_factory()

    answers = posted_at_once(app, ["/experiments"] * STARTS_AT_ONCE, experiment_named("twin"))

    codes = sorted((status, code) for status, code, _ in answers)
    assert codes == [(201, None)] + [(409, "experiment_exists")] * (STARTS_AT_ONCE - 1)
    assert [row["name"] for row in runtime_of(app).experiments.store.list()] == ["twin"]


def test_six_experiments_started_at_once_leave_exactly_one_running(any_app_factory):
    app = any_app_factory()
    client = app.test_client()
    names = [f"race-{i}" for i in range(STARTS_AT_ONCE)]
    for name in names:
        assert client.post("/experiments", json=experiment_named(name)).status_code == 201

    answers = posted_at_once(app, [f"/experiments/{name}/start" for name in names])

    (winner,) = running_names(runtime_of(app).experiments.store)
    assert sorted(status for status, _, _ in answers) == [200] + [409] * (STARTS_AT_ONCE - 1)
    for (status, code, body), name in zip(answers, names, strict=True):
        if name == winner:
            assert (status, body["status"]) == (200, "running")
        else:
            assert code == "experiment_state"
            assert f"{winner!r} is running" in body["error"]["message"]
    assert runtime_of(app).experiments.running.experiment.name == winner


def test_one_experiment_started_six_times_at_once_starts_once(any_app_factory):
    app = any_app_factory()
    assert app.test_client().post("/experiments", json=experiment_named("once")).status_code == 201

    answers = posted_at_once(app, ["/experiments/once/start"] * STARTS_AT_ONCE)

    assert sorted(status for status, _, _ in answers) == [200] + [409] * (STARTS_AT_ONCE - 1)
    assert {code for _, code, _ in answers} == {None, "experiment_state"}
    assert running_names(runtime_of(app).experiments.store) == ["once"]


def test_one_experiment_stopped_twice_at_once_stops_once(any_app_factory):
    app = any_app_factory()
    client = app.test_client()
    assert client.post("/experiments", json=experiment_named("twice")).status_code == 201
    assert client.post("/experiments/twice/start").status_code == 200

    answers = posted_at_once(app, ["/experiments/twice/stop"] * 2)

    assert sorted((status, code) for status, code, _ in answers) == [
        (200, None),
        (409, "experiment_state"),
    ]


def test_the_database_itself_refuses_a_second_running_experiment(store):
    experiment_store = ExperimentStore(store.engine)
    for name in ("first", "second"):
        experiment_store.create(_draft_row(name))
    with store.engine.begin() as conn:
        conn.execute(
            experiments.update().where(experiments.c.name == "first").values(status="running")
        )
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            experiments.update().where(experiments.c.name == "second").values(status="running")
        )
    assert running_names(experiment_store) == ["first"]


def test_upgrading_a_store_with_two_running_experiments_keeps_the_newest_running(database_url):
    old = EventStore.from_url(database_url)
    try:
        upgrade_to(old.engine, "0006")
        with old.engine.begin() as conn:
            for name, started in (
                ("older", datetime(2026, 11, 1)),
                ("newer", datetime(2026, 11, 2)),
            ):
                conn.execute(
                    experiments.insert(),
                    {**_draft_row(name), "status": "running", "started_at": started},
                )
            conn.execute(experiments.insert(), {**_draft_row("draft"), "status": "draft"})
        upgrade_to_head(old.engine)
        rows = {row["name"]: row for row in ExperimentStore(old.engine).list()}
    finally:
        old.dispose()
    assert {name: row["status"] for name, row in rows.items()} == {
        "older": "stopped",
        "newer": "running",
        "draft": "draft",
    }
    assert rows["older"]["stopped_at"] is not None
    assert rows["newer"]["stopped_at"] is None


def _draft_row(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "metric": "conversion",
        "baseline_rate": 0.3,
        "mde": 0.1,
        "planned_per_variant": 356,
        "variants": POPULAR_VS_CHAMPION["variants"],
        "created_at": datetime(2026, 10, 1),
    }


# -- the catalog -------------------------------------------------------------------

WRITERS = 8
ROUNDS = 6
PRODUCT_IDS = range(1, 41)


@pytest.mark.slow
def test_product_batches_overlapping_in_different_orders_all_succeed(any_app_factory):
    app = any_app_factory()
    shuffled = random.Random(20)
    # Each writer sends every round a different overlapping half of the ids, shuffled:
    # two writers then touch shared rows in opposite orders, the recipe of a deadlock.
    batches = [
        [shuffled.sample(PRODUCT_IDS, len(PRODUCT_IDS) // 2) for _ in range(ROUNDS)]
        for _ in range(WRITERS)
    ]

    def write(writer: int) -> list[tuple[int, str | None]]:
        client = app.test_client()
        answers = []
        for round_, ids in enumerate(batches[writer]):
            body = [
                {
                    "product_id": product_id,
                    "name": f"writer {writer} round {round_}",
                    "category": "race",
                    "price": 1.0,
                }
                for product_id in ids
            ]
            answers.append(answered(client.put("/products", json=body)))
        return answers

    answers = list(itertools.chain.from_iterable(at_once(WRITERS, write)))
    assert answers == [(200, None)] * (WRITERS * ROUNDS)
    catalog = runtime_of(app).store.products_frame().set_index("product_id")
    written = set(itertools.chain.from_iterable(itertools.chain.from_iterable(batches)))
    assert written <= set(catalog.index)
    assert (catalog.loc[sorted(written), "category"] == "race").all()


@pytest.mark.postgres
def test_a_transaction_ended_by_a_deadlock_runs_again_and_both_writes_land(postgres_url):
    store = EventStore.from_url(postgres_url)
    upgrade_to_head(store.engine)
    store.upsert_products(SMALL_CATALOG)
    runs: list[int] = []
    both_hold_their_first_row = threading.Barrier(2, timeout=10)

    def raise_prices(first: int, second: int) -> None:
        def transaction() -> None:
            runs.append(first)
            with store.engine.begin() as conn:
                for product_id in (first, second):
                    conn.execute(
                        products.update()
                        .where(products.c.id == product_id)
                        .values(price=products.c.price + 1)
                    )
                    if len(runs) <= 2 and product_id == first:
                        both_hold_their_first_row.wait()  # opposite orders: a deadlock

        retry_conflicts(transaction)

    try:
        at_once(2, lambda i: raise_prices(*[(1, 2), (2, 1)][i]))
        prices = store.products_frame().set_index("product_id")["price"]
    finally:
        store.dispose()
    assert len(runs) == 3  # one of the two ran again
    assert (prices[1], prices[2]) == (25.0 + 2, 30.0 + 2)
