"""Benchmark: what counting rate limits adds to a request, in process and through serve.py.

A shop runs with rate limits on (the defaults), so every request it sends is
counted. Here the limits are set far above the load (``1000000 per second``
for every role and for client addresses), so each request is counted and
none is refused: the difference is the cost of counting alone.

Part "process": the app over the bundled data, trained as ``flask --app app
init`` trains it, called through its WSGI interface (no HTTP) for cached
/recommend answers of the 100 users and for /healthz; CPU time per request
for three apps (limits off, counters in memory, counters in Redis when it
answers), in alternating rounds, best round kept. Part "server": serve.py
(granian, 2 workers, cache on) on the same data, limits off then counted in
memory, driven by wrk; requests/s and server CPU per request, median of the
rounds.

Targets: a counted cached /recommend costs at most 1.3x the CPU of an
uncounted one in process; through serve.py it answers at least 0.85x the
requests/s. Exits 1 if a target fails.

Usage: python bench/bench_limits.py [--rounds 5] [--parts process,server] [--record FILE]
Part "server" needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import logging
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
from serving_kit import (  # noqa: E402
    HEALTHZ_LUA,
    RECOMMEND_LUA,
    Run,
    Server,
    delete_redis_keys,
    process_cpu_seconds,
    redis_answers,
    wrk,
    wsgi_environ,
)
from verdicts import Verdicts, add_record_option  # noqa: E402

# Far above any load here: every request is counted, none refused.
COUNTED = "1000000 per second"
LIMITS_OFF = {"RATE_LIMIT": "", "RATE_LIMIT_INGEST": "", "RATE_LIMIT_ADDRESS": ""}
LIMITS_COUNTED = {
    "RATE_LIMIT": COUNTED,
    "RATE_LIMIT_INGEST": COUNTED,
    "RATE_LIMIT_ADDRESS": COUNTED,
}
USERS = 100
MAX_PROCESS_RATIO = 1.3
MIN_SERVER_RATIO = 0.85


class InProcessApp:
    """One app over a copy of the bundled data, called through WSGI."""

    def __init__(self, state: Path, settings: dict[str, str]):
        from app import create_app
        from recsys.web import RUNTIME_KEY

        self.app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{state / 'events.db'}",
                "MODEL_DIR": str(state / "models"),
                "AUTO_RETRAIN": "0",
                "CACHE": "1",
                **settings,
            }
        )
        # (Not runtime_of: it starts the runtime's threads, as a first request does.)
        self.runtime = self.app.extensions[RUNTIME_KEY]
        self.runtime.init()
        self.statuses: dict[str, int] = {}

    def get(self, path: str, query: str = "") -> None:
        def start_response(status: str, headers: list, exc_info=None) -> None:
            self.statuses[status] = self.statuses.get(status, 0) + 1

        answer = self.app(wsgi_environ(path, query), start_response)
        b"".join(answer)
        getattr(answer, "close", lambda: None)()

    def cpu_per_request(self, path: str, queries: list[str], requests: int) -> float:
        started = time.process_time()
        for number in range(requests):
            self.get(path, queries[number % len(queries)])
        return (time.process_time() - started) / requests

    def close(self) -> None:
        self.runtime.jobs.wait_all(timeout=30)
        self.runtime.close()


def in_process(tmp: Path, args: argparse.Namespace, verdicts: Verdicts) -> None:
    """Judge the CPU a counted request costs over an uncounted one, in one process."""
    configurations = {"limits off": LIMITS_OFF, "counted in memory": LIMITS_COUNTED}
    # Each counted configuration against the uncounted one of the same setting.
    references = {"counted in memory": "limits off"}
    prefix = f"bench-limits-{uuid.uuid4().hex[:8]}:"
    shared = redis_answers(REDIS_URL)
    if shared:
        # Redis holds the counters, and the histories and announcements as well.
        redis = {"REDIS_URL": REDIS_URL, "RATELIMIT_KEY_PREFIX": prefix, "CACHE_KEY_PREFIX": prefix}
        configurations["limits off, Redis"] = {**LIMITS_OFF, **redis}
        configurations["counted in Redis"] = {**LIMITS_COUNTED, **redis}
        references["counted in Redis"] = "limits off, Redis"
    apps = {}
    try:
        for number, (name, settings) in enumerate(configurations.items()):
            state = tmp / f"process-{number}"
            state.mkdir()
            apps[name] = InProcessApp(state, settings)
        queries = [f"user_id={user}" for user in range(1, USERS + 1)]
        for app in apps.values():  # every answer cached, every path warm
            for query in queries * 3:
                app.get("/recommend", query)
        best = {(name, path): float("inf") for name in apps for path in ("healthz", "recommend")}
        for number in range(args.rounds):
            order = list(apps) if number % 2 == 0 else list(apps)[::-1]
            for name in order:
                for path, asked in (("healthz", [""]), ("recommend", queries)):
                    spent = apps[name].cpu_per_request(f"/{path}", asked, args.requests)
                    best[name, path] = min(best[name, path], spent)
        print(
            f"In process (WSGI, no HTTP), bundled data, cache on; CPU us per request, "
            f"best of {args.rounds} rounds of {args.requests:,}"
        )
        print(f"  {'limits':<20}{'healthz':>10}{'recommend':>12}   answers")
        for name, app in apps.items():
            print(
                f"  {name:<20}{best[name, 'healthz'] * 1e6:>10.1f}"
                f"{best[name, 'recommend'] * 1e6:>12.1f}   {app.statuses}"
            )
        for name, reference in references.items():
            ratio = best[name, "recommend"] / best[reference, "recommend"]
            target = f"cached /recommend {name}: CPU over {reference}'s"
            if name == "counted in memory":
                answered = set(apps[name].statuses) == {"200 OK"}
                verdicts.check(
                    f"{target} <= {MAX_PROCESS_RATIO}x",
                    f"{ratio:.2f}x",
                    ratio <= MAX_PROCESS_RATIO and answered,
                )
            else:  # a Redis round trip per request, whatever client makes it
                verdicts.inform(target, f"{ratio:.2f}x")
    finally:
        for app in apps.values():
            app.close()
        if shared:
            delete_redis_keys(REDIS_URL, prefix)


def through_server(tmp: Path, args: argparse.Namespace, verdicts: Verdicts) -> None:
    """Judge the requests/s of counted requests through serve.py against uncounted ones."""
    scripts = {}
    for name, text in (("healthz", HEALTHZ_LUA), ("recommend", RECOMMEND_LUA)):
        scripts[name] = tmp / f"{name}.lua"
        scripts[name].write_text(text)
    configurations = {"limits off": LIMITS_OFF, "counted in memory": LIMITS_COUNTED}
    runs: dict[str, list[dict[str, Run]]] = {name: [] for name in configurations}
    state = tmp / "server"
    state.mkdir()
    for number in range(args.server_rounds):
        order = list(configurations) if number % 2 == 0 else list(configurations)[::-1]
        for name in order:
            env = {
                "RECSYS_WORKERS": "2",
                "RECSYS_CACHE": "1",
                **{f"RECSYS_{k}": v for k, v in configurations[name].items()},
            }
            server = Server(state, env)
            try:
                wrk_env = {"BENCH_USERS": str(USERS)}
                wrk(scripts["recommend"], server.port, args.warmup, args.connections, wrk_env)
                found = {}
                for path in ("healthz", "recommend"):
                    pids = server.processes()
                    cpu = process_cpu_seconds(pids)
                    run = wrk(scripts[path], server.port, args.duration, args.connections, wrk_env)
                    spent = process_cpu_seconds(pids) - cpu
                    run.cpu_us = spent / max(1, run.rate * args.duration) * 1e6
                    found[path] = run
                runs[name].append(found)
            finally:
                server.stop()
    print(
        f"\nThrough serve.py (granian, 2 workers, cache on), bundled data; "
        f"wrk -c{args.connections}, {args.duration:.0f} s a run; "
        f"medians of {args.server_rounds} rounds"
    )
    print(f"  {'limits':<20}{'request':<12}{'req/s':>10}{'p99 ms':>9}{'CPU us/req':>12}   errors")
    for name, rounds in runs.items():
        for path in ("healthz", "recommend"):
            taken = [found[path] for found in rounds]
            print(
                f"  {name:<20}{path:<12}{statistics.median(r.rate for r in taken):>10,.0f}"
                f"{statistics.median(r.p99_ms for r in taken):>9.2f}"
                f"{statistics.median(r.cpu_us for r in taken):>12,.0f}"
                f"   {sum(r.errors for r in taken)}"
            )
    ratio = statistics.median(
        counted["recommend"].rate / off["recommend"].rate
        for counted, off in zip(runs["counted in memory"], runs["limits off"], strict=True)
    )
    errors = sum(found["recommend"].errors for rounds in runs.values() for found in rounds)
    verdicts.check(
        f"cached /recommend counted in memory: req/s >= {MIN_SERVER_RATIO}x limits off (serve.py)",
        f"{ratio:.2f}x",
        ratio >= MIN_SERVER_RATIO and errors == 0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="process,server")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds")
    parser.add_argument("--requests", type=int, default=3000, help="requests per in-process run")
    parser.add_argument("--server-rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_limits.py", record=args.record)
    logging.disable(logging.WARNING)
    parts = args.parts.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-limits-"))
    try:
        if "process" in parts:
            in_process(tmp, args, verdicts)
        if "server" in parts:
            if shutil.which("wrk"):
                through_server(tmp, args, verdicts)
            else:
                verdicts.not_run("requests/s through serve.py", "wrk is not installed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
