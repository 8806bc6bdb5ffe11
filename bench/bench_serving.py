"""Benchmark: the servers compared, then the production server's /recommend against /healthz.

Part "servers" (bench/server_comparison.py): gunicorn with gunicorn.conf.py
(the production server before) and granian through serve.py (the production
server now), started in turn on the same app, data and cores, on /healthz,
/recommend (cache off and on; bundled data and 5,000 products) and POST
/interactions (single events and batches of 100): requests/s, p50, p99 and
the server's CPU per request, and the targets of the choice. ``--servers
uwsgi,socketify`` adds those servers to the tables (for information; they
need requirements-bench-servers.txt).

Part "ratios": the production server (serve.py: granian, 2 workers;
``flask --app app init`` runs once before they start) over a fresh
temporary store and model directory, driven by wrk from this machine:
/healthz, then /recommend for random known users (a small wrk Lua script),
each for a bounded time with the same connections, in several rounds. Three
configurations per data set: cache off; cache on without Redis (rankings
cached in each worker, histories read from the store); cache on with Redis
(histories cached in the shared Redis, by default the local one, under a key
prefix of this run's own, deleted afterwards; cached answers trusted while
each worker hears the announcements of new events).

On the synthetic model, /recommend with ``category=Category 3`` and 100
excluded ids is compared with the plain request in the same server: with
each user's standing list (the same ids for a user on every request; judged)
and with a new list every request (information).

Data sets: the bundled data (100 users x 20 products, trained by init), and a
synthetic SVD of 10,000 users x 5,000 products x 32 factors published into
the model directory before the server starts. Its users exist in the store: 5
clicks each, one of them a purchase, so /recommend takes the personal path
with a real history read, never the unknown-user one.

PASS or FAIL per target (targets a run leaves out: "not run"); exits 1 if
any fails.

Usage: python bench/bench_serving.py [--duration 10] [--rounds 2] [--only default,synthetic]
       [--parts servers,ratios] [--compare-rounds 2] [--servers uwsgi,socketify]
       [--record FILE]
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingestion import REDIS_URL  # noqa: E402
from server_comparison import compare_servers  # noqa: E402
from serving_kit import (  # noqa: E402
    HEALTHZ_LUA,
    RECOMMEND_LUA,
    RECOMMEND_NEW_LIST_LUA,
    RECOMMEND_STANDING_LUA,
    Run,
    Server,
    cache_counts,
    delete_redis_keys,
    hit_ratio,
    prepare_synthetic,
    process_cpu_seconds,
    redis_answers,
    redis_cpu_seconds,
    wrk,
)
from verdicts import Verdicts, add_record_option  # noqa: E402

# With the cache on, warm-up goes on until a 10 s run finds this share of cached answers.
WARM_HITS = 0.99

# (label, cache setting, use Redis)
CONFIGS = [
    ("cache off", "0", False),
    ("cache on, no Redis", "1", False),
    ("cache on, Redis", "1", True),
]


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
        workers = server.processes()

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
    parser.add_argument("--workers", type=int, default=2, help="workers of each server")
    parser.add_argument(
        "--parts",
        default="servers,ratios",
        help="servers: gunicorn and granian compared; ratios: the production server's "
        "/recommend against /healthz with Redis and filters",
    )
    parser.add_argument(
        "--compare-rounds", type=int, default=2, help="rounds of the servers' comparison"
    )
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument(
        "--servers",
        default="",
        help="other servers to compare beside gunicorn and granian: uwsgi, socketify",
    )
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
    parts = args.parts.split(",")
    if "servers" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
            compare_servers(Path(tmp), args, verdicts)
    if "ratios" not in parts:
        return verdicts.finish()

    print(
        f"\nThe production server (serve.py: granian, {args.workers} workers x {args.threads} "
        "threads) "
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
