"""Benchmark: gunicorn's answer rate and latency for /recommend against /healthz, cache on and off.

Starts gunicorn with the shipped configuration (gunicorn.conf.py: 2 threaded
workers; ``flask --app app init`` runs in its on_starting hook) over a fresh
temporary store and model directory, and drives it with wrk from this
machine: /healthz, then /recommend for random known users (a small wrk Lua
script), each for a bounded time with the same connections, in several
rounds. Three configurations per data set: cache off; cache on without Redis
(rankings cached in each worker, histories read from the store); cache on
with Redis (histories cached in the shared Redis, by default the local one,
under a key prefix of this run's own, deleted afterwards; cached answers trusted
while each worker hears the announcements of new events).

On the synthetic model, /recommend with ``category=Category 3`` and 100
excluded ids is compared with the plain request in the same server: with
each user's standing list (the same ids for a user on every request; judged)
and with a new list every request (information).

Data sets: the bundled data (100 users x 20 products, trained by init), and a
synthetic SVD of 10,000 users x 5,000 products x 32 factors published into
the model directory before gunicorn starts. Its users exist in the store: 5
clicks each, one of them a purchase, so /recommend takes the personal path
with a real history read, never the unknown-user one.

PASS or FAIL per target (targets a run leaves out: "not run"); exits 1 if
any fails.

Usage: python bench/bench_serving.py [--duration 10] [--rounds 2] [--only default,synthetic]
       [--record FILE]
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingestion import REDIS_URL, synthetic_svd_state  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.events import Event  # noqa: E402
from recsys.models.state import ModelState  # noqa: E402
from recsys.store.artifacts import ModelRegistry  # noqa: E402
from recsys.store.events import EventStore  # noqa: E402
from recsys.store.migrate import upgrade_to_head  # noqa: E402

# The result of one wrk run as one JSON line (latencies in microseconds).
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "errors": %d, "non_2xx": %d, '
      .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""
HEALTHZ_LUA = 'wrk.path = "/healthz"\n' + _DONE
RECOMMEND_LUA = (
    """
local users = tonumber(os.getenv("BENCH_USERS"))
init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000) end
request = function()
  return wrk.format("GET", "/recommend?user_id=" .. math.random(1, users))
end
"""
    + _DONE
)

# /recommend with a category filter and 100 excluded products. The standing
# list: each user's own, the same on every request (a shop's exclusions for a
# customer: bought elsewhere, hidden); judged against the target. The new list:
# drawn anew every request, so no answer repeats (shown for information).
_FILTERED_REQUEST = """
local users = tonumber(os.getenv("BENCH_USERS"))
local products = tonumber(os.getenv("BENCH_PRODUCTS"))
init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000) end
request = function()
  local user = math.random(1, users)
  local ids = {}
  local x = user * 7919 + 1
  for i = 1, 100 do
    DRAW
  end
  return wrk.format("GET", "/recommend?user_id=" .. user
    .. "&category=Category%203&exclude=" .. table.concat(ids, ","))
end
"""
RECOMMEND_STANDING_LUA = (
    _FILTERED_REQUEST.replace(
        # Park-Miller: the same 100 ids for the same user on every request.
        "DRAW",
        "x = (x * 16807) % 2147483647; ids[i] = x % products + 1",
    )
    + _DONE
)
RECOMMEND_NEW_LIST_LUA = (
    _FILTERED_REQUEST.replace("DRAW", "ids[i] = math.random(1, products)") + _DONE
)

# With the cache on, warm-up goes on until a 10 s run finds this share of cached answers.
WARM_HITS = 0.99

# (label, cache setting, use Redis)
CONFIGS = [
    ("cache off", "0", False),
    ("cache on, no Redis", "1", False),
    ("cache on, Redis", "1", True),
]


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0  # CPU time of the workers (and Redis) per request
    answer_hits: float | None = None  # share of cached answers among the run's lookups


def process_cpu_seconds(pids: list[int]) -> float:
    """Return the user + system CPU time the processes have used."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def redis_cpu_seconds(url: str | None) -> float:
    if url is None:
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(script: Path, port: int, seconds: float, connections: int, env: dict) -> Run:
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, **env},
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("{")]
    if result.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    data = json.loads(line[-1])
    return Run(
        rate=data["requests"] / data["seconds"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"] + data["non_2xx"],
    )


def cache_counts(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "recsys_cache_lookups":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["cache"], sample.labels["result"])] = sample.value
    return counts


def hit_ratio(before: dict, after: dict, cache: str) -> float | None:
    hits = after.get((cache, "hit"), 0) - before.get((cache, "hit"), 0)
    misses = after.get((cache, "miss"), 0) - before.get((cache, "miss"), 0)
    return hits / (hits + misses) if hits + misses else None


class Server:
    """gunicorn with gunicorn.conf.py over one store and model directory."""

    def __init__(self, state: Path, env: dict[str, str]):
        self.port = free_port()
        self.log = state / f"gunicorn-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        full_env.update(
            {
                "RECSYS_BIND": f"127.0.0.1:{self.port}",
                "RECSYS_DATABASE_URL": f"sqlite:///{state / 'events.db'}",
                "RECSYS_MODEL_DIR": str(state / "models"),
                "RECSYS_LOG_LEVEL": "WARNING",
                # The benchmark measures serving, not the limiter's 429s.
                "RECSYS_RATE_LIMIT": "",
                "RECSYS_RATE_LIMIT_INGEST": "",
                # An automatic retrain would take the CPU mid-measurement.
                "RECSYS_AUTO_RETRAIN": "0",
                **env,
            }
        )
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/readyz", timeout=5
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"gunicorn did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def prepare_synthetic(state: Path, users: int, products: int, factors: int) -> None:
    """Fill a store with users' events and publish a synthetic SVD (with its fallback)."""
    store = EventStore.from_url(f"sqlite:///{state / 'events.db'}")
    upgrade_to_head(store.engine)
    ids = np.arange(1, products + 1)
    catalog = pd.DataFrame(
        {
            "product_id": ids,
            "name": [f"Product {i}" for i in ids],
            "category": [f"Category {i % 10}" for i in ids],
            "price": 10.0,
        }
    )
    store.upsert_products(catalog)
    rng = np.random.default_rng(1)
    clicked = rng.integers(1, products + 1, size=(users, 5))
    events = [
        Event(int(u), int(p), purchased=(k == 0))
        for u, row in zip(range(1, users + 1), clicked, strict=True)
        for k, p in enumerate(row)
    ]
    store.add_interactions(events)
    store.dispose()
    clicks = np.bincount(clicked.ravel() - 1, minlength=products).astype(np.float64)
    fallback = ModelState(
        arrays={
            "user_ids": np.arange(1, users + 1, dtype=np.int64),
            "product_ids": ids.astype(np.int64),
            "item_clicks": clicks,
        },
        params={"model": "popular"},
    )
    ModelRegistry(state / "models").publish(
        synthetic_svd_state(users, products, factors),
        data_fingerprint="synthetic",
        fallback=fallback,
        catalog=catalog[["product_id", "name", "category"]],
    )


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def measure(
    state: Path, env: dict, users: int, args: argparse.Namespace, scripts: dict[str, Path]
) -> dict:
    server = Server(state, env)
    redis_url = env.get("RECSYS_REDIS_URL")
    try:
        wrk_env = {"BENCH_USERS": str(users)}
        # Warm-up: every worker loads the model; with the cache on, rankings fill
        # (each worker ranks each of the synthetic model's 10,000 users once).
        warmup = args.warmup if users <= 1_000 else max(args.warmup, args.warmup_large)
        cached = env.get("RECSYS_CACHE") != "0"

        def warm(script: Path) -> None:
            # With the cache on, until a run finds nearly every answer cached (each
            # worker has seen each user): this machine's speed swings too much
            # for a fixed time to fill the caches alike for every kind of request.
            wrk(script, server.port, warmup, args.connections, wrk_env)
            deadline = time.monotonic() + args.warmup_max
            while cached and time.monotonic() < deadline:
                before = cache_counts(server.port)
                wrk(script, server.port, 10, args.connections, wrk_env)
                hits = hit_ratio(before, cache_counts(server.port), "answer")
                if hits is None or hits >= WARM_HITS:
                    return
            if cached:
                print(
                    f"  (warm-up of {script.stem} stopped short of {WARM_HITS:.0%} cached answers)"
                )

        warm(scripts["recommend"])
        workers = children(server.process.pid)

        def timed(script: Path, extra_env: dict, seconds: float | None = None) -> Run:
            seconds = seconds or args.duration
            cpu = process_cpu_seconds(workers) + redis_cpu_seconds(redis_url)
            run = wrk(script, server.port, seconds, args.connections, extra_env)
            used = process_cpu_seconds(workers) + redis_cpu_seconds(redis_url) - cpu
            run.cpu_us = used / max(1, run.rate * seconds) * 1e6
            return run

        healthz, recommend, ratios = [], [], []
        for _ in range(args.rounds):
            healthz.append(timed(scripts["healthz"], {}))
            before = cache_counts(server.port)
            recommend.append(timed(scripts["recommend"], wrk_env))
            after = cache_counts(server.port)
            ratios.append((hit_ratio(before, after, "answer"), hit_ratio(before, after, "history")))
        filtered, filtered_new = [], []
        if "filtered" in scripts:
            # The same server, alternating: plain /recommend, then filtered,
            # after a warm-up in which each worker ranks each user within the
            # category once (the plain warm-up ranked them across all categories).
            wrk_env["BENCH_PRODUCTS"] = str(scripts["products"])
            warm(scripts["filtered"])

            def timed_with_hits(script: Path) -> Run:
                before = cache_counts(server.port)
                run = timed(script, wrk_env, args.filter_duration)
                run.answer_hits = hit_ratio(before, cache_counts(server.port), "answer")
                return run

            for round_number in range(args.filter_rounds):
                # Every other round in reverse order (plain, filtered, new list;
                # then new list, filtered, plain): a machine that speeds up or
                # slows down during the rounds favours neither kind.
                kinds = ["recommend", "filtered", "filtered_new"]
                if round_number % 2:
                    kinds.reverse()
                runs = {kind: timed_with_hits(scripts[kind]) for kind in kinds}
                filtered.append((runs["recommend"], runs["filtered"]))
                filtered_new.append((runs["recommend"], runs["filtered_new"]))
        return {
            "healthz": healthz,
            "recommend": recommend,
            "hits": ratios[-1],
            "filtered": filtered,
            "filtered_new": filtered_new,
        }
    finally:
        server.stop()


def median_run(runs: list[Run]) -> Run:
    return Run(
        rate=statistics.median(r.rate for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
    )


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of warm-up per server")
    parser.add_argument(
        "--warmup-large",
        type=float,
        default=60,
        help="seconds of warm-up for the 10,000-user model (its rankings fill the caches)",
    )
    parser.add_argument(
        "--warmup-max",
        type=float,
        default=300,
        # argparse formats help with %: a percent sign is written %%.
        help=f"seconds more of warm-up at most, until {WARM_HITS:.0%}% of answers are cached ones",
    )
    parser.add_argument("--rounds", type=int, default=3, help="healthz + recommend runs each")
    parser.add_argument(
        "--filter-rounds", type=int, default=6, help="plain + filtered runs each (synthetic)"
    )
    parser.add_argument(
        "--filter-duration", type=float, default=5, help="seconds per plain or filtered run"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--only", default="default,synthetic", help="data sets to run")
    parser.add_argument("--configs", default="0,1,2", help="indexes of " + str(CONFIGS))
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="default RECSYS_TEST_REDIS_URL or the local Redis"
    )
    add_record_option(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    verdicts = Verdicts("bench_serving.py", record=args.record)
    datasets = [d for d in args.only.split(",") if d]
    configs = [CONFIGS[int(i)] for i in args.configs.split(",")]
    has_redis = redis_answers(args.redis_url)

    print(
        f"gunicorn (gunicorn.conf.py: {args.workers} gthread workers x {args.threads} threads) "
        "driven by wrk: 1 thread, "
        f"{args.connections} connections, {args.duration:g} s per run, {args.rounds} round(s) of "
        f"/healthz then /recommend after a {args.warmup:g} s warm-up; medians over rounds"
    )
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        for dataset in datasets:
            state = Path(tmp) / dataset
            state.mkdir()
            if dataset == "synthetic":
                prepare_synthetic(state, users=10_000, products=5_000, factors=32)
                users, title = 10_000, "synthetic SVD, 10,000 users x 5,000 products x 32 factors"
            else:
                users, title = 100, "bundled data, 100 users x 20 products (SVD trained by init)"
            scripts: dict = {}
            lua = [("healthz", HEALTHZ_LUA), ("recommend", RECOMMEND_LUA)]
            if dataset == "synthetic":
                lua.append(("filtered", RECOMMEND_STANDING_LUA))
                lua.append(("filtered_new", RECOMMEND_NEW_LIST_LUA))
                scripts["products"] = 5_000
            for name, text in lua:
                scripts[name] = state / f"{name}.lua"
                scripts[name].write_text(text)
            print(f"\n{title}")
            print(
                f"  {'configuration':<20}{'/healthz req/s':>15}{'p50 ms':>8}{'p99 ms':>8}"
                f"{'/recommend req/s':>18}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
                f"{'p99 ratio':>10}{'answer hits':>14}{'history hits':>14}"
            )
            for label, cache, use_redis in configs:
                env = {
                    "RECSYS_CACHE": cache,
                    # Room for each user's plain and category rankings (the
                    # default, 10,000, fits the plain ones of 10,000 users only).
                    "RECSYS_CACHE_MAX_ENTRIES": "30000",
                    "RECSYS_WORKERS": str(args.workers),
                    "RECSYS_THREADS": str(args.threads),
                }
                prefix = f"bench-{uuid.uuid4().hex[:12]}:"
                if use_redis:
                    if not has_redis:
                        print(f"  {label:<20}skipped: no Redis answers at {args.redis_url}")
                        continue
                    env.update(
                        {"RECSYS_REDIS_URL": args.redis_url, "RECSYS_CACHE_KEY_PREFIX": prefix}
                    )
                try:
                    found = measure(state, env, users, args, scripts)
                finally:
                    if use_redis:
                        delete_redis_keys(args.redis_url, prefix)
                h, r = median_run(found["healthz"]), median_run(found["recommend"])
                # Medians of each round's ratios: a round's two runs follow each
                # other, so the machine's swings touch both alike.
                pairs = list(zip(found["healthz"], found["recommend"], strict=True))
                ratio = statistics.median(b.rate / a.rate for a, b in pairs)
                p99_ratio = statistics.median(b.p99_ms / a.p99_ms for a, b in pairs)
                cpu_ratio = statistics.median(a.cpu_us / b.cpu_us for a, b in pairs)
                results[(dataset, label)] = {
                    "ratio": ratio,
                    "p99_ratio": p99_ratio,
                    "cpu_ratio": cpu_ratio,
                }
                answer_hits, history_hits = found["hits"]
                print(
                    f"  {label:<20}{h.rate:>15,.0f}{h.p50_ms:>8.2f}{h.p99_ms:>8.2f}"
                    f"{r.rate:>18,.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{ratio:>7.2f}"
                    f"{p99_ratio:>10.2f}{percent(answer_hits):>14}{percent(history_hits):>14}"
                )
                rounds = ", ".join(
                    f"{a.rate:,.0f}/{b.rate:,.0f}"
                    for a, b in zip(found["healthz"], found["recommend"], strict=True)
                )
                print(f"  {'':<20}rounds (healthz/recommend req/s): {rounds}")
                print(
                    f"  {'':<20}server CPU per request (workers{' + Redis' if use_redis else ''}): "
                    f"/healthz {h.cpu_us:,.0f} us, /recommend {r.cpu_us:,.0f} us, "
                    f"ratio {cpu_ratio:.2f}"
                )
                for key, lists in (("filtered", "each user's own"), ("filtered_new", "new")):
                    if not found[key]:
                        continue
                    plain = statistics.median(p.cpu_us for p, _ in found[key])
                    narrowed = statistics.median(f.cpu_us for _, f in found[key])
                    cost = statistics.median(f.cpu_us / p.cpu_us for p, f in found[key])
                    results[(dataset, label)][f"{key}_cost"] = cost
                    hits = ", ".join(
                        f"{percent(p.answer_hits)}/{percent(f.answer_hits)}" for p, f in found[key]
                    )
                    print(
                        f"  {'':<20}with category=Category 3 and 100 excluded ids ({lists} "
                        f"list): server CPU per request {plain:,.0f} -> {narrowed:,.0f} us, "
                        f"x{cost:.2f} (median of the rounds' ratios); rate "
                        f"{statistics.median(p.rate for p, _ in found[key]):,.0f} -> "
                        f"{statistics.median(f.rate for _, f in found[key]):,.0f} req/s; "
                        f"answer hits (plain/filtered) {hits}"
                    )
                if h.errors or r.errors:
                    print(f"  {'':<20}errors or non-2xx answers: {h.errors + r.errors}")

    print(
        "\nTargets (ratios of /recommend to /healthz in the same server and round; the CPU "
        "ratio, /healthz's server CPU per request over /recommend's, is what the rate ratio "
        "would be if the server had the cores to itself)"
    )
    targets = [
        (
            "default",
            "cache on, Redis",
            "ratio",
            0.9,
            "cache on (Redis), bundled data: rate >= 0.9x",
        ),
        (
            "default",
            "cache on, Redis",
            "p99_ratio",
            2.0,
            "cache on (Redis), bundled data: p99 <= 2x",
        ),
        (
            "synthetic",
            "cache on, Redis",
            "ratio",
            0.75,
            "cache on (Redis), 5,000 products: rate >= 0.75x",
        ),
        ("default", "cache off", "ratio", 0.6, "cache off, bundled data: rate >= 0.6x"),
        (
            "synthetic",
            "cache off",
            "filtered_cost",
            1.1,
            "filters, 5,000 products, cache off: CPU <= 1.1x",
        ),
        (
            "synthetic",
            "cache on, Redis",
            "filtered_cost",
            1.1,
            "filters, 5,000 products, cache on: CPU <= 1.1x",
        ),
        (
            "synthetic",
            "cache on, Redis",
            "filtered_new_cost",
            None,
            "filters, new list every request, cache on",
        ),
    ]
    for dataset, label, key, bound, text in targets:
        found = results.get((dataset, label))
        if found is None or key not in found:
            verdicts.not_run(text, "not in this run (--only, --configs, no Redis)")
            continue
        value = found[key]
        if bound is None:
            verdicts.inform(text, f"{value:.2f}")
            continue
        ok = value <= bound if key == "p99_ratio" or key.endswith("_cost") else value >= bound
        verdicts.check(text, f"{value:.2f}", ok)
        if key == "ratio":
            # What the rate ratio would be with the cores to itself; not judged.
            verdicts.inform(f"{text}, by server CPU per request", f"{found['cpu_ratio']:.2f}")
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
