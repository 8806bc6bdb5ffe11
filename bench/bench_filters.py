"""Benchmark: what /recommend's category filter and a 100-product exclusion list cost.

Builds a synthetic SVD of 10,000 users x 5,000 products x 32 factors in 10
categories (the same one bench_serving.py serves), with each user's events in
a SQLite store, and calls the Flask app in-process (WSGI, no HTTP server) for
random known users, two ways in alternating rounds:

- plain:    /recommend?user_id=U
- filtered: /recommend?user_id=U&category=Category 3&exclude=<100 product ids>

Three cases:

- cache off: the model ranks every answer, filters applied as masks before
  the top-n cut: the filtering's own cost;
- cache on, each user's own exclusion list (a shop leaving out the same
  products for a user on every call): after a warm-up pass, both kinds are
  answered from the cached answers;
- cache on, a new exclusion list every request: no request repeats an earlier
  one, so only the ranked candidates help the filtered requests, while the
  plain ones are cached answers (shown for information; a worst case).

With the cache on, the app uses the local Redis (RECSYS_TEST_REDIS_URL) as
in production, when it answers: cached answers are then trusted without a
history read, and a repeated query string without parsing; without Redis
each request reads the user's history from SQLite.

Reports CPU and wall time per request and the filtered/plain ratio; the
target is at most 1.10 (10% more) at 5,000 products in the first two cases.

Prints PASS or FAIL per judged case; exits 1 if any fails.

Usage: python bench/bench_filters.py [--users 2000] [--rounds 5] [--record FILE]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingestion import REDIS_URL, wait_for_listener  # noqa: E402
from serving_kit import (  # noqa: E402
    delete_redis_keys,
    prepare_synthetic,
    redis_answers,
    wsgi_environ,
)
from verdicts import Verdicts, add_record_option  # noqa: E402

from app import create_app  # noqa: E402

USERS, PRODUCTS, FACTORS = 10_000, 5_000, 32
TARGET = 1.10


def call(app, query: str) -> None:
    environ = wsgi_environ("/recommend", query)
    statuses = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(body)
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"{query} answered {statuses[0]}")


def timed(app, queries: list[str]) -> tuple[float, float]:
    """Return (CPU, wall) microseconds per request."""
    cpu, wall = time.process_time(), time.perf_counter()
    for query in queries:
        call(app, query)
    n = len(queries)
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def queries(users: np.ndarray, rng: np.random.Generator, filtered: bool, fresh: bool) -> list[str]:
    """Return one query per user; ``fresh`` draws each exclusion list anew."""
    if not filtered:
        return [f"user_id={u}" for u in users]
    made = []
    for u in users:
        draw = rng if fresh else np.random.default_rng(int(u))
        excluded = draw.choice(np.arange(1, PRODUCTS + 1), size=100, replace=False)
        made.append(f"user_id={u}&category=Category%203&exclude={','.join(map(str, excluded))}")
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="users asked for per round")
    parser.add_argument("--rounds", type=int, default=5)
    add_record_option(parser)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    verdicts = Verdicts("bench_filters.py", record=args.record)

    rng = np.random.default_rng(7)
    print(
        f"in-process /recommend, synthetic SVD {USERS:,} users x {PRODUCTS:,} products x "
        f"{FACTORS} factors, 10 categories; {args.users:,} random users per run, "
        f"{args.rounds} alternating rounds, medians"
    )
    print(
        f"  {'case':<20}{'plain CPU us':>14}{'wall us':>9}{'filtered CPU us':>17}{'wall us':>9}"
        f"{'CPU ratio':>11}{'wall ratio':>12}"
    )
    ratios = []
    use_redis = redis_answers(REDIS_URL)
    prefix = f"bench-filters-{uuid.uuid4().hex[:12]}:"
    print(
        f"  cache on: histories and announcements in Redis at {REDIS_URL}"
        if use_redis
        else f"  cache on: no Redis answers at {REDIS_URL}; histories read from SQLite"
    )
    with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
        state = Path(tmp)
        prepare_synthetic(state, USERS, PRODUCTS, FACTORS)
        cases = [
            ("cache off", "0", False),
            ("cache on, own list", "1", False),
            ("cache on, new list", "1", True),
        ]
        for label, cache, fresh in cases:
            redis_settings = {}
            if cache == "1" and use_redis:
                redis_settings = {"REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": prefix}
            app = create_app(
                {
                    "DATABASE_URL": f"sqlite:///{state / 'events.db'}",
                    "MODEL_DIR": str(state / "models"),
                    "CACHE": cache,
                    "RATE_LIMIT": "",
                    "RATE_LIMIT_INGEST": "",
                    # An automatic retrain would take the CPU mid-measurement.
                    "AUTO_RETRAIN": "0",
                    "RATE_LIMIT_ADDRESS": "",
                    "LOG_LEVEL": "WARNING",
                    # Room for every user's plain and filtered answers.
                    "CACHE_MAX_ENTRIES": "30000",
                    **redis_settings,
                }
            )
            runtime = app.extensions["recsys.runtime"]
            runtime.start()
            wait_for_listener(runtime)
            users = rng.integers(1, USERS + 1, size=args.users)
            # Warm-up: the model loads and, with the cache on, each user's rankings are kept.
            timed(app, queries(users, rng, filtered=False, fresh=fresh))
            timed(app, queries(users, rng, filtered=True, fresh=fresh))
            plain, filtered = [], []
            for _ in range(args.rounds):
                plain.append(timed(app, queries(users, rng, filtered=False, fresh=fresh)))
                filtered.append(timed(app, queries(users, rng, filtered=True, fresh=fresh)))
            p_cpu = statistics.median(c for c, _ in plain)
            p_wall = statistics.median(w for _, w in plain)
            f_cpu = statistics.median(c for c, _ in filtered)
            f_wall = statistics.median(w for _, w in filtered)
            print(
                f"  {label:<20}{p_cpu:>14.0f}{p_wall:>9.0f}{f_cpu:>17.0f}{f_wall:>9.0f}"
                f"{f_cpu / p_cpu:>11.2f}{f_wall / p_wall:>12.2f}"
            )
            ratios.append((label, f_cpu / p_cpu, not fresh))
            runtime.close()
    if use_redis:
        delete_redis_keys(REDIS_URL, prefix)
    for label, ratio, judged in ratios:
        target = f"{label}: filtered CPU per request <= {TARGET:.2f}x plain"
        if judged:
            verdicts.check(target, f"{ratio:.2f}", ratio <= TARGET)
        else:
            verdicts.inform(f"{label}: filtered CPU per request / plain", f"{ratio:.2f}")
    return verdicts.finish()


if __name__ == "__main__":
    raise SystemExit(main())
