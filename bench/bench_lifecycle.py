"""Benchmark: the data's lifecycle at shop scale: every user's list exported, a user deleted.

A simulated shop (``simulate_large``: 5,000 products, 10,000 users, 200,000
clicks) is stored in SQLite, and EASE and ALS are each fitted on it and
published. Then:

1. ``flask --app app export-recommendations --n 20`` runs in a child process
   per model, as an operator runs it; the command reports its users a minute
   (the export itself, after the model is loaded; and a minute of its CPU
   time, which a machine busy with other work does not shrink), and the child's peak RSS
   is read from ``wait4``. A seeded sample of users' rows is compared with
   the answers the service gives ``GET /recommend`` for them.
2. ``DELETE /users/<id>`` for users with 10,000 events each, through the
   app, while another thread posts batches of 100 events to
   ``POST /interactions`` without pause; the longest batch wait during the
   deletions is reported too. Then ``prune-events``' work (the store's
   ``prune_events``) deletes a quarter of the log while ingestion runs, and
   the longest batch wait during it is reported. On SQLite (the shop's
   store), then on PostgreSQL when ``--postgres`` answers.

Targets: at least 100,000 users a minute with EASE and with ALS, peak RSS
under 2 GiB, the sampled lists equal; each deletion under 1 s. Exits 1 if a
target fails.

Usage: python bench/bench_lifecycle.py [--users 10000] [--products 5000] [--events 200000]
       [--models ease,als] [--sample 200] [--deletions 3] [--record FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.events import Event  # noqa: E402
from recsys.data.interactions import write_interactions  # noqa: E402
from recsys.data.ratings import derive_ratings  # noqa: E402
from recsys.data.simulate import SimulationConfig  # noqa: E402
from recsys.data.simulate_large import simulate_large  # noqa: E402
from recsys.data.timestamps import utc_now  # noqa: E402
from recsys.models import MODELS  # noqa: E402
from recsys.models.popularity import PopularityRecommender  # noqa: E402
from recsys.online import RecommendationService, RecommendRequest  # noqa: E402
from recsys.store.artifacts import ModelRegistry  # noqa: E402
from recsys.store.events import EventStore  # noqa: E402
from recsys.store.migrate import upgrade_to_head  # noqa: E402
from recsys.store.tables import interactions  # noqa: E402

MIN_USERS_A_MINUTE = 100_000
MAX_RSS_BYTES = 2 * 1024**3
MAX_DELETE_SECONDS = 1.0
HEAVY_USER_EVENTS = 10_000
INGEST_BATCH = 100


def build_store(directory: Path, users: int, products: int, events: int):
    """Return a SQLite store holding the simulated shop, its catalog and feedback."""
    shop = simulate_large(SimulationConfig(users=users, products=products, seed=7), events)
    store = EventStore.from_url(f"sqlite:///{directory / 'events.db'}")
    upgrade_to_head(store.engine)
    store.upsert_products(shop.catalog)
    log = directory / "interactions.csv"
    write_interactions(shop.interactions, log)
    store.import_interactions(log)
    return store, shop.catalog, derive_ratings(shop.interactions)


def publish(directory: Path, name: str, feedback: pd.DataFrame, catalog: pd.DataFrame) -> Path:
    """Fit a model and its popularity fallback and publish them in a registry of their own."""
    model_dir = directory / f"models-{name}"
    started = time.perf_counter()
    model = MODELS[name]().fit(feedback)
    fallback = PopularityRecommender().fit(feedback)
    ModelRegistry(model_dir).publish(
        model.get_state(),
        data_fingerprint="bench",
        training={"seconds": round(time.perf_counter() - started, 3)},
        fallback=fallback.get_state(),
        catalog=catalog,
    )
    return model_dir


def app_environment(directory: Path, model_dir: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{directory / 'events.db'}",
        "RECSYS_MODEL_DIR": str(model_dir),
        "RECSYS_MODEL": name,
        "RECSYS_EXPLORATION": "0",
        "RECSYS_LOG_LEVEL": "WARNING",
    }


def run_export(directory: Path, model_dir: Path, name: str, out: Path) -> tuple[float, float, int]:
    """Run the export command in a child; return its users a minute (wall, CPU) and peak RSS."""
    command = [
        sys.executable, "-m", "flask", "--app", "app", "export-recommendations",
        "--out", str(out), "--n", "20", "--force",
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env=app_environment(directory, model_dir, name),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"export-recommendations failed: {output}")
    rates = re.search(r"\(([\d,]+) users a minute, ([\d,]+) a CPU minute\)", output)
    assert rates is not None, output
    wall, cpu = (float(rates.group(i).replace(",", "")) for i in (1, 2))
    # ru_maxrss is in KiB on Linux.
    return wall, cpu, usage.ru_maxrss * 1024


def equal_sample(store, model_dir: Path, out: Path, users: list[int]) -> int:
    """Return how many sampled users' exported rows equal the service's /recommend answer."""
    service = RecommendationService(store)
    artifact = ModelRegistry(model_dir).load_latest()
    assert artifact is not None
    service.serve(artifact)
    frame = pd.read_parquet(out)
    by_user = {user: rows for user, rows in frame.groupby("user_id")}
    equal = 0
    for user in users:
        answer = service.recommend(RecommendRequest(user, 20))
        rows = by_user[user].sort_values("rank")
        expected = [(p.product_id, p.score) for p in answer.recommendations]
        equal += list(zip(rows["product_id"], rows["score"], strict=True)) == expected
    return equal


class Ingestion:
    """Posts batches of events to the app without pause, recording each batch's wait."""

    def __init__(self, app, products: int):
        self.client = app.test_client()
        self.products = products
        self.waits: list[tuple[float, float]] = []  # (began at, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        rng = np.random.default_rng(3)
        while not self._stop.is_set():
            users = rng.integers(1, 10_000, INGEST_BATCH).tolist()
            products = rng.integers(1, self.products + 1, INGEST_BATCH).tolist()
            body = [
                {"user_id": u, "product_id": p, "purchased": 0}
                for u, p in zip(users, products, strict=True)
            ]
            started = time.perf_counter()
            response = self.client.post("/interactions", json=body)
            ended = time.perf_counter()
            assert response.status_code == 201, response.get_data(as_text=True)
            self.waits.append((started, ended - started))

    def longest_between(self, start: float, end: float) -> float:
        """Return the longest wait of the batches that began in a window."""
        return max((w for at, w in self.waits if start <= at <= end), default=0.0)


def deletions_under_ingestion(
    label: str, database_url: str, model_dir: Path, store, products: int, count: int, verdicts
) -> None:
    """Time DELETE /users/<id> of heavy users while ingestion runs; then a prune."""
    from app import create_app

    app = create_app(
        {
            "DATABASE_URL": database_url,
            "MODEL_DIR": str(model_dir),
            "MODEL": "ease",
            "EXPLORATION": "0",
            "RATE_LIMIT": "",
            "RATE_LIMIT_INGEST": "",
            "RATE_LIMIT_ADDRESS": "",
            "AUTO_RETRAIN": "0",
        }
    )
    heavy = [900_000 + i for i in range(count)]
    rng = np.random.default_rng(11)
    for user in heavy:
        store.add_interactions(
            [Event(user, int(p), False) for p in rng.integers(1, products + 1, HEAVY_USER_EVENTS)]
        )
    client = app.test_client()
    client.get("/recommend?user_id=1")  # the model loaded before the clock starts
    seconds: list[float] = []
    with Ingestion(app, products) as ingestion:
        time.sleep(0.5)
        began = time.perf_counter()
        for user in heavy:
            started = time.perf_counter()
            response = client.delete(f"/users/{user}")
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_json()
            assert response.get_json()["rows"]["interactions"] == HEAVY_USER_EVENTS
            time.sleep(0.2)
        ended = time.perf_counter()
        batches = len(ingestion.waits)
        # A quarter of the log made old, then pruned while ingestion goes on.
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(interactions)
                .where(interactions.c.id % 4 == 0)
                .values(created_at=datetime(2020, 1, 1))
            )
        time.sleep(0.5)  # batches that waited for that update are over
        prune_began = time.perf_counter()
        pruned = store.prune_events(utc_now() - timedelta(days=365))
        prune_ended = time.perf_counter()
        time.sleep(0.5)  # the batch running at the end finishes
    longest_wait = ingestion.longest_between(began, ended)
    prune_wait = ingestion.longest_between(prune_began, prune_ended)
    print(
        f"{label}: DELETE /users/<id> of {count} users with {HEAVY_USER_EVENTS:,} events each, "
        f"while {batches} batches of {INGEST_BATCH} events were posted:"
    )
    print("  seconds per deletion: " + ", ".join(f"{s:.3f}" for s in seconds))
    print(f"  longest ingestion batch during the deletions: {longest_wait * 1e3:.0f} ms")
    print(
        f"  prune: {pruned:,} events deleted in {prune_ended - prune_began:.1f} s; longest "
        f"ingestion batch meanwhile: {prune_wait * 1e3:.0f} ms"
    )
    verdicts.check(
        f"{label}: DELETE /users/<id> ({HEAVY_USER_EVENTS:,} events) under "
        f"{MAX_DELETE_SECONDS:.0f} s while ingestion runs (slowest)",
        f"{max(seconds):.3f} s",
        max(seconds) < MAX_DELETE_SECONDS,
    )
    verdicts.inform(
        f"{label}: longest ingestion batch during the deletions", f"{longest_wait * 1e3:.0f} ms"
    )
    verdicts.inform(
        f"{label}: longest ingestion batch during a prune", f"{prune_wait * 1e3:.0f} ms"
    )
    runtime = app.extensions["recsys.runtime"]
    runtime.close()


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str | None]:
    """Yield a URL to a fresh schema of the database at ``url`` (None if unreachable)."""
    admin = sa.create_engine(url, connect_args={"connect_timeout": 3})
    schema = f"bench_lifecycle_{uuid.uuid4().hex[:8]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError:
        admin.dispose()
        yield None
        return
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--models", default="ease,als")
    parser.add_argument("--sample", type=int, default=200, help="users whose lists are compared")
    parser.add_argument("--deletions", type=int, default=3, help="heavy users deleted")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database for the deletions (a schema of its own, dropped after)",
    )
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_lifecycle.py", record=args.record)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        directory = Path(tmp)
        store, catalog, feedback = build_store(directory, args.users, args.products, args.events)
        users = store.counts().users
        print(
            f"{args.products:,} products, {users:,} users, {args.events:,} clicks (SQLite); "
            "export-recommendations --n 20 in a child process per model"
        )
        sample = (
            np.random.default_rng(0)
            .choice(feedback["user_id"].unique(), size=min(args.sample, users), replace=False)
            .tolist()
        )
        print(
            f"  {'model':<8}{'users a minute':>16}{'a CPU minute':>14}{'peak RSS':>12}"
            f"{'sample equal':>15}"
        )
        for name in args.models.split(","):
            model_dir = publish(directory, name, feedback, catalog)
            out = directory / f"lists-{name}.parquet"
            rate, cpu_rate, rss = run_export(directory, model_dir, name, out)
            equal = equal_sample(store, model_dir, out, sample)
            print(
                f"  {name:<8}{rate:>16,.0f}{cpu_rate:>14,.0f}{rss / 1024**2:>9,.0f} MiB"
                f"{f'{equal}/{len(sample)}':>15}"
            )
            verdicts.check(
                f"{name}: export at least {MIN_USERS_A_MINUTE:,} users a minute",
                f"{rate:,.0f}",
                rate >= MIN_USERS_A_MINUTE,
            )
            verdicts.inform(f"{name}: users a minute of CPU time", f"{cpu_rate:,.0f}")
            verdicts.check(
                f"{name}: the export's peak RSS under 2 GiB",
                f"{rss / 1024**2:,.0f} MiB",
                rss < MAX_RSS_BYTES,
            )
            verdicts.check(
                f"{name}: sampled users' exported lists equal their /recommend answers",
                f"{equal}/{len(sample)}",
                equal == len(sample),
            )
        model_dir = directory / f"models-{args.models.split(',')[0]}"
        deletions_under_ingestion(
            "SQLite",
            f"sqlite:///{directory / 'events.db'}",
            model_dir,
            store,
            args.products,
            args.deletions,
            verdicts,
        )
        store.dispose()
        with postgres_schema(args.postgres) as url:
            if url is None:
                verdicts.not_run("PostgreSQL: DELETE /users/<id> under 1 s", "unreachable")
            else:
                pg_store = EventStore.from_url(url)
                upgrade_to_head(pg_store.engine)
                pg_store.upsert_products(catalog)
                deletions_under_ingestion(
                    "PostgreSQL", url, model_dir, pg_store, args.products, args.deletions, verdicts
                )
                pg_store.dispose()
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
