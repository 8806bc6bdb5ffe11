"""Benchmark: how the cost of each step grows with the log, from 0.1M to 10M events.

For each size (10 events per user, 50,000 products, so /recommend always
ranks a 50,000-product catalog) it runs, each step in a fresh child process
so its peak RSS is its own:

- generate: ``recommendation_system.py generate --events N --out log.parquet``;
- import into SQLite and into PostgreSQL: the streaming import (COPY on
  PostgreSQL) of the Parquet log into a fresh store holding the catalog;
- ALS training: ``train_and_publish`` with ALS on the SQLite store (paged
  read, ratings, holdout metrics on up to 20,000 users, final fit, publish);
  the artifact's size on disk;
- serving: the artifact's load time, then /recommend p50/p99 in-process
  (Flask test client, cache off, random known users); at the sizes listed by
  ``--retrain-sizes``, /recommend p99 again while a ``flask --app app worker``
  process retrains on that store (TRAINING_MODE=worker), and the ratio;
- Spark: at the sizes of ``--spark-sizes``, implicit's ALS fit alone on the
  feedback, and the Spark training path (``train_on_spark`` on the Parquet
  log, ``local[2]``, ``--spark-iterations`` sweeps): time, the Python
  driver's peak RSS, the executors' CPU seconds (bench/scale_spark.py).
  ``--spark-only`` runs only generate and these.

Targets on this 2-core machine: 10M-event ALS training under 10 minutes and
12 GiB peak RSS; PostgreSQL import at least 50,000 events/s; /recommend p99
under 50 ms at 50,000 products; p99 during a retrain at most 1.5x idle p99.
A run without the 10M size judges the 10M targets on a projection: the
straight line through the two largest sizes trained (a fixed cost plus a
cost per event), and says so. PASS or FAIL per target; exits 1 if any fails.

The Spark path's driver must stay under 700 MiB at 10M and grow less than
1.5x from 1M to 10M: it never holds the log.

Usage: python bench/bench_scale.py [--sizes 0.1M,1M,10M] [--spark-sizes 0.1M,1M]
       [--spark-iterations 15] [--spark-only] [--retrain-sizes 1M] [--requests 2000]
       [--no-postgres] [--keep DIR] [--record FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_spark import judge_spark, spark_rows, step_spark_train  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

POSTGRES_URL = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PRODUCTS = 50_000
EVENTS_PER_USER = 10
GIB = 1024**3
TARGETS = {
    "train_seconds_10M": 600.0,
    "train_rss_10M": 12 * GIB,
    "pg_events_per_second": 50_000.0,
    "p99_ms": 50.0,
    "retrain_p99_ratio": 1.5,
}


def parse_size(text: str) -> int:
    """Return the number of events of a size such as 0.1M, 250k or 1000000."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KM" else text
    return round(float(number) * scale)


def label(events: int) -> str:
    return f"{events / 1e6:g}M"


# -- steps, each run in a child process ------------------------------------------


def step_generate(args: dict) -> dict:
    out = Path(args["dir"]) / "log.parquet"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "recommendation_system.py"),
            "generate",
            "--users",
            str(max(1, args["events"] // EVENTS_PER_USER)),
            "--products",
            str(PRODUCTS),
            "--events",
            str(args["events"]),
            "--out",
            str(out),
            "--catalog",
            str(Path(args["dir"]) / "log.products.csv"),
            "--force",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {"seconds": time.perf_counter() - started, "bytes": out.stat().st_size}


def step_import(args: dict) -> dict:
    from recsys.data.catalog import load_catalog
    from recsys.store.bulk import import_log
    from recsys.store.events import EventStore
    from recsys.store.migrate import upgrade_to_head

    store = EventStore.from_url(args["url"])
    upgrade_to_head(store.engine)
    store.upsert_products(load_catalog(Path(args["dir"]) / "log.products.csv"))
    started = time.perf_counter()
    rows = import_log(store.engine, Path(args["dir"]) / "log.parquet")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "events_per_second": rows / seconds}


def step_train(args: dict) -> dict:
    from recsys.store.artifacts import ModelRegistry
    from recsys.store.events import EventStore
    from recsys.training.train import TrainingSettings, train_and_publish

    store = EventStore.from_url(args["url"])
    registry = ModelRegistry(Path(args["dir"]) / "models")
    started = time.perf_counter()
    meta = train_and_publish(store, registry, TrainingSettings(model="als"))
    seconds = time.perf_counter() - started
    version_dir = registry.root / meta.version
    size = sum(f.stat().st_size for f in version_dir.iterdir())
    return {
        "seconds": seconds,
        "artifact_bytes": size,
        "ndcg": meta.metrics.get("ndcg@10"),
        "users": meta.training["users"],
    }


def step_serve(args: dict) -> dict:
    import numpy as np

    from app import create_app
    from recsys.store.artifacts import ModelRegistry

    registry = ModelRegistry(Path(args["dir"]) / "models")
    started = time.perf_counter()
    artifact = registry.load_latest(model_type="als")
    load_seconds = time.perf_counter() - started
    assert artifact is not None
    del artifact
    config = {
        "DATABASE_URL": args["url"],
        "MODEL_DIR": str(registry.root),
        "MODEL": "als",
        "CACHE": False,
        "RATE_LIMIT": "",
        "RATE_LIMIT_INGEST": "",
        "RATE_LIMIT_ADDRESS": "",
        "TRAINING_MODE": "worker",
        "DATA_PATH": "",
        "MODEL_REFRESH_SECONDS": 0,
        # An automatic retrain would take the CPU mid-measurement.
        "AUTO_RETRAIN": "0",
    }
    app = create_app(config)
    runtime = app.extensions["recsys.runtime"]
    runtime.init()
    client = app.test_client()
    users = np.random.default_rng(0).integers(1, args["users"] + 1, size=args["requests"])

    def latencies(stop=None) -> list[float]:
        measured = []
        for user in users:
            if stop is not None and stop():
                break
            began = time.perf_counter()
            response = client.get(f"/recommend?user_id={user}")
            measured.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.get_data(as_text=True)
        return measured

    latencies()  # warm up
    idle = latencies()
    result = {"load_seconds": load_seconds, "idle": percentiles(idle)}
    if args["retrain"]:
        response = client.post("/admin/retrain")
        assert response.status_code == 202, response.get_data(as_text=True)
        env = {
            **os.environ,
            "RECSYS_DATABASE_URL": args["url"],
            "RECSYS_MODEL_DIR": str(registry.root),
            "RECSYS_MODEL": "als",
            "RECSYS_TRAINING_MODE": "worker",
            "RECSYS_DATA_PATH": "",
            "RECSYS_AUTO_RETRAIN": "0",
        }
        began = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker", "--once"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        during: list[float] = []
        while worker.poll() is None:
            during.extend(latencies(stop=lambda: worker.poll() is not None))
        result["retrain_seconds"] = time.perf_counter() - began
        result["during"] = percentiles(during)
        result["during_requests"] = len(during)
    return result


def step_fit(args: dict) -> dict:
    from recsys.data.ratings import derive_ratings
    from recsys.store.bulk import read_interactions
    from recsys.store.events import EventStore
    from recsys.training.train import fit_locally

    feedback = derive_ratings(read_interactions(EventStore.from_url(args["url"]).engine))
    started = time.perf_counter()
    fit_locally("als", {}, feedback)
    return {"seconds": time.perf_counter() - started}


STEPS = {
    "generate": step_generate,
    "import": step_import,
    "train": step_train,
    "serve": step_serve,
    "fit": step_fit,
    "spark_train": step_spark_train,
}


def percentiles(values: list[float]) -> dict:
    import numpy as np

    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
    }


def run_step(name: str, **args) -> dict:
    """Run a step in a child process; return its result and the child's peak RSS."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--step", name, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"step {name} failed ({child.returncode}): {output[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    result["rss"] = usage.ru_maxrss * 1024  # Linux reports KiB
    return result


# -- the table ------------------------------------------------------------------


def seconds_rss(step: dict | None) -> str:
    if step is None:
        return "-"
    rss = step["rss"] + step.get("jvm_rss", 0)
    return f"{step['seconds']:.1f} s / {rss / GIB:.2f} GiB"


def print_table(results: dict[int, dict]) -> None:
    sizes = sorted(results)
    rows = [
        ("generate (time / peak RSS)", lambda r: seconds_rss(r.get("generate"))),
        ("import SQLite", lambda r: seconds_rss(r.get("sqlite"))),
        (
            "  events/s",
            lambda r: f"{r['sqlite']['events_per_second']:,.0f}" if "sqlite" in r else "-",
        ),
        ("import PostgreSQL (COPY)", lambda r: seconds_rss(r.get("postgres"))),
        (
            "  events/s",
            lambda r: f"{r['postgres']['events_per_second']:,.0f}" if "postgres" in r else "-",
        ),
        ("ALS train + publish", lambda r: seconds_rss(r.get("train"))),
        ("  holdout NDCG@10", lambda r: f"{r['train']['ndcg']:.4f}" if "train" in r else "-"),
        (
            "artifact size",
            lambda r: f"{r['train']['artifact_bytes'] / 2**20:.0f} MiB" if "train" in r else "-",
        ),
        (
            "artifact load",
            lambda r: f"{r['serve']['load_seconds']:.2f} s" if "serve" in r else "-",
        ),
        (
            "/recommend p50 / p99",
            lambda r: (
                f"{r['serve']['idle']['p50_ms']:.1f} / {r['serve']['idle']['p99_ms']:.1f} ms"
                if "serve" in r
                else "-"
            ),
        ),
        (
            "  server peak RSS",
            lambda r: f"{r['serve']['rss'] / GIB:.2f} GiB" if "serve" in r else "-",
        ),
        (
            "  p99 during a retrain",
            lambda r: (
                f"{r['serve']['during']['p99_ms']:.1f} ms "
                f"({r['serve']['during']['p99_ms'] / r['serve']['idle']['p99_ms']:.2f}x idle)"
                if "serve" in r and "during" in r["serve"]
                else "-"
            ),
        ),
        (
            "  retrain in the worker",
            lambda r: (
                f"{r['serve']['retrain_seconds']:.1f} s"
                if "serve" in r and "retrain_seconds" in r["serve"]
                else "-"
            ),
        ),
        ("ALS fit only: implicit", lambda r: seconds_rss(r.get("fit_implicit"))),
        *spark_rows(),
    ]
    width = 30
    print()
    print(f"{'events':<{width}}" + "".join(f"{label(s):>26}" for s in sizes))
    for name, cell in rows:
        print(f"{name:<{width}}" + "".join(f"{cell(results[s]):>26}" for s in sizes))


def projected(results: dict[int, dict], key: str, events: int) -> tuple[float, str] | None:
    """Return training's ``key`` at ``events`` extrapolated from the two largest sizes run.

    A straight line through the two (fixed cost plus a cost per event), with
    the sizes it came from; None with fewer than two sizes trained.
    """
    trained = sorted(size for size, r in results.items() if "train" in r)
    if len(trained) < 2:
        return None
    small, large = trained[-2:]
    y0, y1 = results[small]["train"][key], results[large]["train"][key]
    slope = (y1 - y0) / (large - small)
    return y0 + slope * (events - small), f"projected from {label(small)} and {label(large)}"


def judge(results: dict[int, dict], verdicts: Verdicts) -> None:
    """Judge every target this run measured; the 10M ones by projection when 10M was not run."""
    ten_million = 10_000_000
    seconds_target = f"10M ALS training < {TARGETS['train_seconds_10M']:.0f} s"
    rss_target = f"10M ALS training peak RSS < {TARGETS['train_rss_10M'] / GIB:.0f} GiB"
    if "train" in results.get(ten_million, {}):
        train = results[ten_million]["train"]
        verdicts.check(
            seconds_target,
            f"{train['seconds']:.0f} s",
            train["seconds"] < TARGETS["train_seconds_10M"],
        )
        verdicts.check(
            rss_target, f"{train['rss'] / GIB:.2f} GiB", train["rss"] < TARGETS["train_rss_10M"]
        )
    else:
        seconds = projected(results, "seconds", ten_million)
        rss = projected(results, "rss", ten_million)
        if seconds is None or rss is None:
            why = "needs 10M or two smaller sizes (--sizes)"
            verdicts.not_run(seconds_target, why)
            verdicts.not_run(rss_target, why)
        else:
            verdicts.check(
                f"{seconds_target} ({seconds[1]})",
                f"{seconds[0]:.0f} s",
                seconds[0] < TARGETS["train_seconds_10M"],
            )
            verdicts.check(
                f"{rss_target} ({rss[1]})",
                f"{rss[0] / GIB:.2f} GiB",
                rss[0] < TARGETS["train_rss_10M"],
            )
    for size, r in sorted(results.items()):
        if "postgres" in r:
            rate = r["postgres"]["events_per_second"]
            verdicts.check(
                f"{label(size)} PostgreSQL import >= 50,000 events/s",
                f"{rate:,.0f}",
                rate >= TARGETS["pg_events_per_second"],
            )
        if "serve" in r:
            p99 = r["serve"]["idle"]["p99_ms"]
            verdicts.check(
                f"{label(size)} /recommend p99 < 50 ms (50,000 products)",
                f"{p99:.1f} ms",
                p99 < TARGETS["p99_ms"],
            )
            if "during" in r["serve"]:
                ratio = r["serve"]["during"]["p99_ms"] / p99
                verdicts.check(
                    f"{label(size)} p99 during a retrain <= 1.5x idle",
                    f"{ratio:.2f}x",
                    ratio <= TARGETS["retrain_p99_ratio"],
                )
    if not any("postgres" in r for r in results.values()):
        verdicts.not_run("PostgreSQL import >= 50,000 events/s", "--no-postgres")
    judge_spark(results, verdicts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.1M,1M,10M", help="events per run, comma-separated")
    parser.add_argument("--spark-sizes", default="0.1M,1M", help="sizes with Spark ('' none)")
    parser.add_argument("--spark-iterations", type=int, default=15, help="Spark's ALS sweeps")
    parser.add_argument("--spark-only", action="store_true", help="only generate and Spark")
    parser.add_argument("--retrain-sizes", default="1M", help="sizes with p99 during a retrain")
    parser.add_argument("--requests", type=int, default=2000, help="/recommend calls per measure")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL import")
    parser.add_argument("--keep", type=Path, default=None, help="keep the files in this folder")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_scale.py", record=args.record)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    spark_sizes = {parse_size(s) for s in args.spark_sizes.split(",") if s.strip()}
    retrain_sizes = {parse_size(s) for s in args.retrain_sizes.split(",") if s.strip()}

    results: dict[int, dict] = {}
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for events in sizes:
            work = base / label(events)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            r: dict = results.setdefault(events, {})
            print(f"{label(events)} events: generating", flush=True)
            r["generate"] = run_step("generate", dir=str(work), events=events)
            sqlite_url = f"sqlite:///{work / 'store.db'}"
            if not args.spark_only:
                run_single_machine(r, work, events, args, retrain_sizes)
            if events in spark_sizes:
                if not args.spark_only:
                    print(f"{label(events)}: ALS fit only, implicit", flush=True)
                    r["fit_implicit"] = run_step("fit", url=sqlite_url, engine="implicit")
                if importlib.util.find_spec("pyspark") is None:
                    print("  no Spark run: pip install -r requirements-spark.txt", flush=True)
                else:
                    print(f"{label(events)}: the Spark training path", flush=True)
                    r["spark_train"] = run_step(
                        "spark_train",
                        dir=str(work),
                        iterations=args.spark_iterations,
                        jvm_memory="8g",
                    )
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print_table(results)
    judge(results, verdicts)
    return verdicts.finish()


def run_single_machine(r: dict, work: Path, events: int, args, retrain_sizes: set) -> None:
    """Run the single-machine steps of one size: imports, ALS training, serving."""
    sqlite_url = f"sqlite:///{work / 'store.db'}"
    print(f"{label(events)}: importing into SQLite", flush=True)
    r["sqlite"] = run_step("import", dir=str(work), url=sqlite_url)
    if not args.no_postgres:
        print(f"{label(events)}: importing into PostgreSQL", flush=True)
        r["postgres"] = postgres_import(work)
    print(f"{label(events)}: training ALS", flush=True)
    r["train"] = run_step("train", dir=str(work), url=sqlite_url)
    print(f"{label(events)}: serving", flush=True)
    r["serve"] = run_step(
        "serve",
        dir=str(work),
        url=sqlite_url,
        users=r["train"]["users"],
        requests=args.requests,
        retrain=events in retrain_sizes,
    )


def postgres_import(work: Path) -> dict:
    """Import into a fresh schema of the test database; drop it afterwards."""
    import sqlalchemy as sa

    schema = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        separator = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        return run_step("import", dir=str(work), url=url)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--step":
        print(json.dumps(STEPS[sys.argv[2]](json.loads(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
