"""The servers compared on the same app, data and cores: gunicorn (gunicorn.conf.py) and granian.

Part of bench/bench_serving.py. For each data set (the bundled data; the
synthetic 5,000-product model) and cache setting (off; on, without Redis),
each server is started in turn over the same store and model directory and
driven by wrk: /healthz, then /recommend. POST /interactions (one event a
request, then batches of 100) is measured on a fresh copy of the bundled
data per server, so that one server's events never lengthen the histories
the other reads. Rounds alternate the order of the servers (gunicorn then
granian, then granian then gunicorn): a machine that speeds up or slows down
favours neither, and each comparison is the median of the rounds' ratios.

``--servers`` adds other servers over the same app, started as serve.py
starts granian (bench/other_servers.py): uWSGI and socketify, when
requirements-bench-servers.txt is installed. Their rows join each table and
their ratios to gunicorn and granian are printed for information; the
targets judge granian, the production server, against gunicorn.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

from other_servers import UWSGI_BINARY
from serving_kit import (
    HEALTHZ_LUA,
    POST_EVENTS_LUA,
    RECOMMEND_LUA,
    Run,
    Server,
    cache_counts,
    hit_ratio,
    prepare_synthetic,
    process_cpu_seconds,
    wrk,
)
from verdicts import Verdicts

REFERENCE, CHOSEN = "gunicorn", "granian"
SERVERS = (REFERENCE, CHOSEN)
# Servers --servers may add, each with what it needs installed.
OTHER_SERVERS = {
    "uwsgi": UWSGI_BINARY.is_file,
    "socketify": lambda: importlib.util.find_spec("socketify") is not None,
}
# The bundled data's users and products (every posted event is valid).
BUNDLED_USERS, BUNDLED_PRODUCTS = 100, 20
# A cached-answer warm-up stops at this share of cached answers (or after --warmup-large).
WARM_HITS = 0.95


def timed(server: Server, script: Path, seconds: float, connections: int, env: dict) -> Run:
    """Run wrk once and fill in the server's CPU time (master and workers) per request."""
    pids = server.processes()
    cpu = process_cpu_seconds(pids)
    run = wrk(script, server.port, seconds, connections, env)
    run.cpu_us = (process_cpu_seconds(pids) - cpu) / max(1, run.rate * seconds) * 1e6
    return run


def warm(server: Server, script: Path, env: dict, cached: bool, args: argparse.Namespace) -> None:
    """Drive /recommend until every worker has loaded the model (and, cached, seen the users)."""
    wrk(script, server.port, args.warmup, args.connections, env)
    deadline = time.monotonic() + args.warmup_large
    while cached and time.monotonic() < deadline:
        before = cache_counts(server.port)
        wrk(script, server.port, 5, args.connections, env)
        hits = hit_ratio(before, cache_counts(server.port), "answer")
        if hits is None or hits >= WARM_HITS:
            return


def measure_reads(kind: str, state: Path, env: dict, users: int, scripts: dict, args) -> dict:
    server = Server(state, env, kind)
    try:
        wrk_env = {"BENCH_USERS": str(users)}
        warm(server, scripts["recommend"], wrk_env, env["RECSYS_CACHE"] == "1", args)
        return {
            "healthz": timed(server, scripts["healthz"], args.duration, args.connections, {}),
            "recommend": timed(
                server, scripts["recommend"], args.duration, args.connections, wrk_env
            ),
        }
    finally:
        server.stop()


def measure_writes(kind: str, state: Path, env: dict, scripts: dict, args) -> dict:
    """POST /interactions, single events then batches of 100, on a fresh bundled store."""
    state.mkdir()
    server = Server(state, env, kind)
    try:
        found = {}
        for name, batch in (("post 1", 1), ("post 100", 100)):
            wrk_env = {
                "BENCH_USERS": str(BUNDLED_USERS),
                "BENCH_PRODUCTS": str(BUNDLED_PRODUCTS),
                "BENCH_BATCH": str(batch),
            }
            found[name] = timed(server, scripts["post"], args.duration, args.connections, wrk_env)
        return found
    finally:
        server.stop()


def print_runs(kind: str, rounds: list[dict]) -> None:
    for name in rounds[0]:
        runs = [found[name] for found in rounds]
        rate = statistics.median(r.rate for r in runs)
        errors = sum(r.errors for r in runs)
        print(
            f"  {kind:<10}{name:<12}{rate:>10,.0f}"
            f"{statistics.median(r.p50_ms for r in runs):>9.2f}"
            f"{statistics.median(r.p99_ms for r in runs):>9.2f}"
            f"{statistics.median(r.cpu_us for r in runs):>12,.0f}"
            f"   {', '.join(f'{r.rate:,.0f}' for r in runs)}"
            + (f"   errors or non-2xx: {errors}" if errors else "")
        )


def per_round(found: dict, value) -> float:
    """Return the median over rounds of ``value(round's runs by server)``."""
    rounds = zip(*found.values(), strict=True)
    return statistics.median(value(dict(zip(found, r, strict=True))) for r in rounds)


def servers_to_compare(names: str) -> tuple[str, ...]:
    """Return gunicorn, granian and the other servers named (comma-separated) that are installed."""
    kinds = list(SERVERS)
    for name in [n for n in names.split(",") if n and n not in SERVERS]:
        if name not in OTHER_SERVERS:
            known = ", ".join(OTHER_SERVERS)
            raise SystemExit(f"--servers: unknown server {name!r} (known: {known})")
        if OTHER_SERVERS[name]():
            kinds.append(name)
        else:
            print(f"{name} is not installed: pip install -r requirements-bench-servers.txt")
    return tuple(kinds)


def run_comparison(
    tmp: Path, args: argparse.Namespace, servers: tuple[str, ...]
) -> dict[tuple[str, str], dict]:
    """Measure every server on every data set and cache setting; return the runs by case."""
    scripts = {}
    for name, text in (
        ("healthz", HEALTHZ_LUA),
        ("recommend", RECOMMEND_LUA),
        ("post", POST_EVENTS_LUA),
    ):
        scripts[name] = tmp / f"compare-{name}.lua"
        scripts[name].write_text(text)
    common = {"RECSYS_WORKERS": str(args.workers), "RECSYS_THREADS": str(args.threads)}
    cases: dict[tuple[str, str], dict] = {}
    for dataset in [d for d in args.only.split(",") if d in ("default", "synthetic")]:
        state = tmp / f"compare-{dataset}"
        state.mkdir()
        users = BUNDLED_USERS
        if dataset == "synthetic":
            prepare_synthetic(state, users=10_000, products=5_000, factors=32)
            users = 10_000
        for cache in ("0", "1"):
            env = {**common, "RECSYS_CACHE": cache, "RECSYS_CACHE_MAX_ENTRIES": "30000"}
            found: dict = {kind: [] for kind in servers}
            for number in range(args.compare_rounds):
                for kind in servers if number % 2 == 0 else servers[::-1]:
                    found[kind].append(measure_reads(kind, state, env, users, scripts, args))
            cases[(dataset, cache)] = found
    if "default" in args.only.split(","):
        found = {kind: [] for kind in servers}
        for number in range(args.compare_rounds):
            for kind in servers if number % 2 == 0 else servers[::-1]:
                state = tmp / f"compare-ingest-{kind}-{number}"
                found[kind].append(measure_writes(kind, state, common, scripts, args))
        cases[("default", "ingest")] = found
    return cases


def compare_servers(tmp: Path, args: argparse.Namespace, verdicts: Verdicts) -> None:
    """Measure the servers in turn, print the table and judge the servers' targets."""
    servers = servers_to_compare(args.servers)
    others = "".join(f", {kind} (bench/other_servers.py)" for kind in servers[2:])
    one_thread = " (socketify: one thread)" if "socketify" in servers else ""
    print(
        f"\nServers compared: {REFERENCE} (gunicorn.conf.py, gthread), {CHOSEN} (serve.py)"
        f"{others}, each {args.workers} workers x {args.threads} threads{one_thread}, "
        f"access log on; {args.compare_rounds} round(s), servers in alternating order; "
        "medians over rounds"
    )
    cases = run_comparison(tmp, args, servers)
    titles = {
        ("default", "0"): "bundled data, cache off",
        ("default", "1"): "bundled data, cache on (no Redis)",
        ("synthetic", "0"): "synthetic SVD, 5,000 products, cache off",
        ("synthetic", "1"): "synthetic SVD, 5,000 products, cache on (no Redis)",
        ("default", "ingest"): "POST /interactions (1 event, a batch of 100), bundled data",
    }
    for case, found in cases.items():
        print(f"\n{titles[case]}")
        print(
            f"  {'server':<10}{'request':<12}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'CPU us/req':>12}   rounds' req/s"
        )
        for kind in servers:
            print_runs(kind, found[kind])
    judge(cases, verdicts)
    for kind in servers[2:]:
        compare_other(kind, cases, verdicts)


def compare_other(kind: str, cases: dict, verdicts: Verdicts) -> None:
    """Print another server's rates against gunicorn's and granian's (information only)."""
    for case, name, text in (
        (("default", "1"), "healthz", "/healthz, bundled"),
        (("default", "1"), "recommend", "/recommend, cache on, bundled"),
        (("default", "0"), "recommend", "/recommend, cache off, bundled"),
        (("synthetic", "0"), "recommend", "/recommend, cache off, 5,000 products"),
        (("default", "ingest"), "post 1", "POST /interactions, 1 event"),
    ):
        if case not in cases:
            continue
        for versus in (REFERENCE, CHOSEN):
            measured = per_round(
                cases[case], lambda runs, v=versus, n=name: runs[kind][n].rate / runs[v][n].rate
            )
            verdicts.inform(f"{text}: rate ({kind} / {versus})", f"{measured:.2f}")


def judge(cases: dict, verdicts: Verdicts) -> None:
    def rate(name: str):
        return lambda runs: runs[CHOSEN][name].rate / runs[REFERENCE][name].rate

    def cpu(name: str):
        return lambda runs: runs[REFERENCE][name].cpu_us / runs[CHOSEN][name].cpu_us

    def floor(runs: dict) -> float:
        return runs[CHOSEN]["recommend"].rate / runs[CHOSEN]["healthz"].rate

    def floor_by_cpu(runs: dict) -> float:
        # What the floor would be with the cores to the server alone.
        return runs[CHOSEN]["healthz"].cpu_us / runs[CHOSEN]["recommend"].cpu_us

    targets = [
        (("default", "1"), rate("recommend"), 2.5, "/recommend, cache on, bundled: rate"),
        (("default", "1"), cpu("recommend"), None, "/recommend, cache on, bundled: by CPU"),
        # The two servers' floors: a cached answer costs at least /healthz's work.
        (("default", "1"), rate("healthz"), None, "/healthz, bundled: rate"),
        (
            ("default", "1"),
            lambda r: r[CHOSEN]["recommend"].p99_ms / r[REFERENCE]["recommend"].p99_ms,
            -1.0,
            "/recommend, cache on, bundled: p99",
        ),
        (("default", "0"), floor, 0.75, "cache off, bundled: /recommend over /healthz"),
        (
            ("default", "0"),
            floor_by_cpu,
            None,
            "cache off, bundled: by CPU, /recommend over /healthz",
        ),
        (("synthetic", "0"), floor, 0.75, "cache off, 5,000 products: /recommend over /healthz"),
        (
            ("synthetic", "0"),
            floor_by_cpu,
            None,
            "cache off, 5,000 products: by CPU, /recommend over /healthz",
        ),
        (("synthetic", "1"), rate("recommend"), None, "/recommend, cache on, 5,000 products"),
        (("default", "ingest"), rate("post 1"), 1.0, "POST /interactions, 1 event: rate"),
        (("default", "ingest"), rate("post 100"), 1.0, "POST /interactions, 100 events: rate"),
    ]
    print(f"\nTargets ({CHOSEN} against {REFERENCE} in the same run, or against its own /healthz)")
    for case, value, bound, text in targets:
        vs = "" if value in (floor, floor_by_cpu) else f" ({CHOSEN} / {REFERENCE})"
        if case not in cases:
            verdicts.not_run(text + vs, "not in this run (--only)")
            continue
        measured = per_round(cases[case], value)
        if bound is None:
            verdicts.inform(text + vs, f"{measured:.2f}")
        elif bound < 0:  # an upper bound
            verdicts.check(f"{text}{vs} <= {-bound:g}x", f"{measured:.2f}", measured <= -bound)
        else:
            verdicts.check(f"{text}{vs} >= {bound:g}x", f"{measured:.2f}", measured >= bound)
