"""Benchmark: ingestion throughput on SQLite and PostgreSQL, and artifact load time.

Ingestion goes through the whole HTTP path (Flask test client -> JSON parsing
and validation -> one database transaction per request), single events and
1,000-event batches. Artifact load time is measured for the served model of
the bundled data and for a larger synthetic SVD model.

One target: ingestion with an ``event_id`` per event (what makes a retried
batch store nothing twice) costs at most 1.3x ingestion without, on SQLite and
on PostgreSQL. Batches of 1,000 typed events with and without ids are posted
in alternation (the store grows alike under both) and their median times
compared; a retried batch (every id known) is shown for information. The other
figures are for information.

Usage: python bench/bench_ingestion.py [--single N] [--batches N] [--id-batches N] [--record FILE]
PostgreSQL comes from RECSYS_TEST_POSTGRES_URL (default the local `test`
database), Redis from RECSYS_TEST_REDIS_URL (default the local one: SQLite
with Redis shows what announcing each post's users to the listeners costs);
each is skipped, with a note, when unreachable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from verdicts import Verdicts, add_record_option

from app import create_app
from recsys.models.history import TrainingHistory
from recsys.models.state import ModelState
from recsys.models.svd import SVDRecommender
from recsys.online.invalidation import InvalidationBus
from recsys.store.artifacts import ModelRegistry

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def events(count: int, offset: int) -> list[dict]:
    """Return synthetic events over the bundled catalog (products 1-20)."""
    return [
        {
            "user_id": 100_000 + (offset + i) % 5_000,
            "product_id": 1 + (offset + i) % 20,
            "purchased": (offset + i) % 9 == 0,
        }
        for i in range(count)
    ]


def ingestion_rates(app, single: int, batches: int) -> tuple[float, float]:
    """Return events/s for single-event posts and for 1,000-event batches."""
    client = app.test_client()
    started = time.perf_counter()
    for i, event in enumerate(events(single, 0)):
        response = client.post("/interactions", json=event)
        assert response.status_code == 201, (i, response.get_data(as_text=True))
    single_rate = single / (time.perf_counter() - started)

    bodies = [events(1_000, single + b * 1_000) for b in range(batches)]
    started = time.perf_counter()
    for body in bodies:
        response = client.post("/interactions", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
    batch_rate = batches * 1_000 / (time.perf_counter() - started)
    return single_rate, batch_rate


EVENT_ID_COST_LIMIT = 1.3


def typed_events(count: int, offset: int, with_ids: bool) -> list[dict]:
    """Return synthetic typed events; with ids, each has its own event_id (36 characters)."""
    kinds = ("view", "click", "cart", "purchase")
    batch = []
    for i in range(offset, offset + count):
        event = {"user_id": 200_000 + i % 5_000, "product_id": 1 + i % 20, "type": kinds[i % 4]}
        if with_ids:
            event["event_id"] = str(uuid.UUID(int=i))
        batch.append(event)
    return batch


def event_id_cost(app, batches: int) -> tuple[float, float, float]:
    """Return the median seconds of a 1,000-event batch without ids, with ids, and resent.

    Batches with and without ids alternate, so both meet a store of the same size.
    """
    client = app.test_client()
    times: dict[str, list[float]] = {"without": [], "with": [], "resent": []}
    offset = 10_000_000
    for b in range(batches):
        for kind in ("without", "with"):
            body = typed_events(
                1_000, offset + b * 2_000 + (kind == "with") * 1_000, kind == "with"
            )
            started = time.perf_counter()
            response = client.post("/interactions", json=body)
            times[kind].append(time.perf_counter() - started)
            assert response.status_code == 201, response.get_data(as_text=True)
            if kind == "with":
                started = time.perf_counter()
                again = client.post("/interactions", json=body)
                times["resent"].append(time.perf_counter() - started)
                assert again.get_json()["known"] == 1_000, again.get_data(as_text=True)
    return tuple(statistics.median(times[k]) for k in ("without", "with", "resent"))  # type: ignore[return-value]


def recommend_latency_ms(app, requests: int) -> float:
    """Return the median /recommend time; each request reads purchases from the store."""
    client = app.test_client()
    times = []
    for i in range(requests):
        started = time.perf_counter()
        response = client.get(f"/recommend?user_id={1 + i % 100}")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(times) * 1000


def postgres_schema_url() -> tuple[str, sa.Engine, str] | None:
    """Create a scratch schema; return its URL, an admin engine and its name (or None)."""
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"recsys_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL skipped: {str(exc.orig).strip().splitlines()[0]}")
        return None
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}", admin, schema


def wait_for_listener(runtime, seconds: float = 10) -> None:
    """Wait until the runtime's invalidation listener (with Redis) vouches for cached answers."""
    # Without the cache there is nothing to vouch for, and no listener.
    bus = getattr(runtime.service.cache, "invalidations", None)
    deadline = time.monotonic() + seconds
    while isinstance(bus, InvalidationBus) and bus.history_version(0) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the invalidation listener did not start")
        time.sleep(0.01)


def load_times(registry: ModelRegistry, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert registry.load_latest() is not None
        times.append(time.perf_counter() - started)
    return times


def synthetic_svd_state(users: int, items: int, factors: int) -> ModelState:
    rng = np.random.default_rng(0)
    arrays = {
        "user_ids": np.arange(1, users + 1, dtype=np.int64),
        "product_ids": np.arange(1, items + 1, dtype=np.int64),
        "global_mean": np.array([3.0]),
        "user_bias": rng.normal(size=users),
        "item_bias": rng.normal(size=items),
        "user_factors": rng.normal(size=(users, factors)),
        "item_factors": rng.normal(size=(items, factors)),
        "item_counts": rng.integers(1, 100, size=items).astype(np.float64),
    }
    # Five training products per user, as the SVD artifact records for explanations.
    per_user = 5
    users_of_rows = np.repeat(np.arange(users), per_user)
    items_of_rows = (users_of_rows * 7 + np.tile(np.arange(per_user), users)) % items
    history = TrainingHistory.from_rows(
        users_of_rows, items_of_rows, np.ones(len(users_of_rows)), users
    )
    arrays.update(history.arrays())
    params = {"model": "svd", **SVDRecommender(n_factors=factors, rating_scale=(1, 5)).params()}
    return ModelState(arrays=arrays, params=params)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2_000, help="single-event posts")
    parser.add_argument("--batches", type=int, default=20, help="1,000-event batch posts")
    parser.add_argument(
        "--id-batches",
        type=int,
        default=30,
        help="1,000-event batches with event ids (and as many without) for the cost of ids",
    )
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_ingestion.py", record=args.record)

    print(
        f"Ingestion through the Flask test client: {args.single} single-event posts, "
        f"{args.batches} posts of 1,000 events (one transaction per post)"
    )
    print(
        f"  {'backend':<12}{'single (events/s)':>20}{'batch of 1,000 (events/s)':>28}"
        f"{'/recommend median (ms)':>25}"
    )
    # bench_serving imports this module: imported here, not at the top.
    from bench_serving import delete_redis_keys, redis_answers

    id_costs: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str, tuple | None, dict]] = [
            ("SQLite", f"sqlite:///{tmp}/bench.db", None, {})
        ]
        if redis_answers(REDIS_URL):
            # Each post also announces its users and waits for the listener's
            # confirmation (one process here; under gunicorn, one per worker).
            prefix = f"bench-{uuid.uuid4().hex[:12]}:"
            redis_settings = {"REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": prefix}
            backends.append(
                ("SQLite+Redis", f"sqlite:///{tmp}/bench-redis.db", None, redis_settings)
            )
        else:
            print(f"SQLite+Redis skipped: no Redis answers at {REDIS_URL}")
        pg = postgres_schema_url()
        if pg:
            backends.append(("PostgreSQL", pg[0], pg, {}))
        for name, url, cleanup, extra in backends:
            # Rate limits off: this measures the service, not the limiter.
            app = create_app(
                {
                    "DATABASE_URL": url,
                    "MODEL_DIR": f"{tmp}/models-{name}",
                    "RATE_LIMIT": "",
                    "RATE_LIMIT_INGEST": "",
                    # An automatic retrain would take the CPU mid-measurement.
                    "AUTO_RETRAIN": "0",
                    "RATE_LIMIT_ADDRESS": "",
                    **extra,
                }
            )
            try:
                runtime = app.extensions["recsys.runtime"]
                runtime.init()
                runtime.start()
                wait_for_listener(runtime)
                single_rate, batch_rate = ingestion_rates(app, args.single, args.batches)
                latency = recommend_latency_ms(app, 500)
                if not extra:
                    id_costs[name] = event_id_cost(app, args.id_batches)
            finally:
                app.extensions["recsys.runtime"].close()
                if extra:
                    delete_redis_keys(REDIS_URL, extra["CACHE_KEY_PREFIX"])
                if cleanup:
                    with cleanup[1].begin() as conn:
                        conn.exec_driver_sql(f'DROP SCHEMA "{cleanup[2]}" CASCADE')
                    cleanup[1].dispose()
            print(f"  {name:<12}{single_rate:>20,.0f}{batch_rate:>28,.0f}{latency:>25.2f}")
            verdicts.inform(f"{name}: batch of 1,000, events/s", f"{batch_rate:,.0f}")

        print(
            f"\nThe cost of event ids: {args.id_batches} batches of 1,000 typed events with an "
            "event_id each, as many without, alternating (median ms per batch)"
        )
        print(f"  {'backend':<12}{'without':>10}{'with':>10}{'ratio':>8}{'resent (all known)':>21}")
        for name, (without, with_ids, resent) in id_costs.items():
            ratio = with_ids / without
            print(
                f"  {name:<12}{without * 1000:>10.1f}{with_ids * 1000:>10.1f}{ratio:>7.2f}x"
                f"{resent * 1000:>21.1f}"
            )
            verdicts.check(
                f"{name}: ingestion with event_id at most {EVENT_ID_COST_LIMIT}x without",
                f"{ratio:.2f}x ({with_ids * 1000:.1f} vs {without * 1000:.1f} ms per 1,000)",
                ratio <= EVENT_ID_COST_LIMIT,
            )
        for name in ("SQLite", "PostgreSQL"):
            if name not in id_costs:
                verdicts.not_run(
                    f"{name}: ingestion with event_id at most {EVENT_ID_COST_LIMIT}x without",
                    f"{name} was not reachable",
                )

        print("\nArtifact load time (registry.load_latest: read, checksum, np.load, rebuild)")
        served = ModelRegistry(f"{tmp}/models-SQLite")
        small = load_times(served, 50)
        meta = served.load_latest().metadata
        size = sum(p.stat().st_size for p in (served.root / meta.version).iterdir())
        print(
            f"  bundled data's SVD + fallback ({size / 1024:,.0f} KiB): "
            f"median {statistics.median(small) * 1000:.2f} ms over {len(small)} loads"
        )
        large = ModelRegistry(f"{tmp}/large")
        large.publish(synthetic_svd_state(50_000, 5_000, 32), data_fingerprint="synthetic")
        big = load_times(large, 5)
        meta = large.load_latest().metadata
        size = sum(p.stat().st_size for p in (large.root / meta.version).iterdir())
        print(
            f"  synthetic SVD, 50,000 users x 5,000 items x 32 factors "
            f"({size / 2**20:,.1f} MiB): median {statistics.median(big) * 1000:.1f} ms "
            f"over {len(big)} loads"
        )
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
