"""Benchmark: one copy of the model per machine, however many workers and retrains.

Fills a store with 20,000 users' clicks over 5,000 products, starts the
production server (serve.py) with an EASE model (5,000 x 5,000 float32
weights: 100 MB) and 4 workers, and sums the workers' proportional set size
(PSS: each page shared by n processes counts 1/n in each) once every worker
has served /recommend for 30 s (wrk, random users: each worker reads the
whole model), then the same after each of two retrains (POST /admin/retrain; in the
default thread mode one worker trains, every worker then serves the new
version). Before artifacts were mapped, each worker read its own copy of each
new version: the sum grew by a model per worker and retrain.

Target: the sum grows by at most 1.3x one model's arrays file from start to
after two retrains.

Usage: python bench/bench_memory.py [--products 5000] [--users 20000] [--workers 4]
       [--serve-seconds 30] [--record FILE]
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving_kit import RECOMMEND_LUA, children, free_port, server_env, wrk  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.events import Event  # noqa: E402
from recsys.store.events import EventStore  # noqa: E402
from recsys.store.migrate import upgrade_to_head  # noqa: E402

GROWTH_BOUND = 1.3
MB = 1024 * 1024


def fill_store(url: str, users: int, products: int, clicks: int) -> None:
    """Write a catalog and every user's clicks (uniform over the products; a tenth bought)."""
    store = EventStore.from_url(url)
    upgrade_to_head(store.engine)
    ids = np.arange(1, products + 1)
    store.upsert_products(
        pd.DataFrame(
            {
                "product_id": ids,
                "name": [f"Product {i}" for i in ids],
                "category": [f"Category {i % 10}" for i in ids],
                "price": 10.0,
            }
        )
    )
    rng = np.random.default_rng(7)
    clicked = rng.integers(1, products + 1, size=(users, clicks))
    bought = rng.random((users, clicks)) < 0.1
    for start in range(0, users, 2_000):
        store.add_interactions(
            [
                Event(user + 1, int(product), purchased=bool(purchase))
                for user in range(start, min(users, start + 2_000))
                for product, purchase in zip(clicked[user], bought[user], strict=True)
            ]
        )
    store.dispose()


def pss_bytes(pid: int) -> int:
    """Return a process's proportional set size (from /proc/PID/smaps_rollup)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Service:
    """serve.py over the filled store; its access log tells which worker answered."""

    def __init__(self, state: Path, workers: int):
        self.port = free_port()
        self.workers = workers
        self.access_log = state / "access.log"
        settings = {
            "RECSYS_DATA_PATH": "",
            "RECSYS_MODEL": "ease",
            "RECSYS_WORKERS": str(workers),
            "RECSYS_MODEL_REFRESH_SECONDS": "1",
            # The answer cache's entries would be measured with the model's.
            "RECSYS_CACHE": "0",
        }
        env = server_env(state, self.port, settings)
        with open(self.access_log, "wb") as out, open(state / "server.log", "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=out, stderr=err
            )

    def request(self, method: str, path: str) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.loads(response.read())

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def versions_by_worker(self, within: float = 600) -> dict[int, str]:
        """Ask /model on new connections until every worker has answered; return their versions."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                answered: dict[int, str] = {}
                for _ in range(40 * self.workers):
                    version = self.request("GET", "/model")["version"]
                    pid = json.loads(self.access_log.read_text().splitlines()[-1])["pid"]
                    answered[pid] = version
                    if len(answered) == self.workers:
                        return answered
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError("not every worker answered")

    def wait_for_one_version(self, newer_than: str | None = None, within: float = 900) -> str:
        """Wait until every worker serves the same version (newer than one, if given)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            versions = set(self.versions_by_worker().values())
            if len(versions) == 1 and (newer_than is None or versions != {newer_than}):
                return versions.pop()
            time.sleep(1)
        raise RuntimeError("the workers did not come to serve one newer version")

    def serve_everyone(self, script: Path, users: int, seconds: float) -> float:
        """Ask /recommend for random users with wrk, so that every worker reads the whole model.

        Each measurement is of workers that have served, not of ones whose
        mapped pages no request has touched yet. Returns the rate.
        """
        return wrk(script, self.port, seconds, 16, {"BENCH_USERS": str(users)}).rate

    def memory(self) -> tuple[int, int, list[int]]:
        pids = sorted(self.worker_pids())
        each = [pss_bytes(p) for p in pids]
        return sum(each), sum(rss_bytes(p) for p in pids), each

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--clicks", type=int, default=10, help="clicks per user")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--serve-seconds", type=float, default=30, help="of /recommend before each measurement"
    )
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_memory.py", record=args.record)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        state = Path(tmp)
        started = time.monotonic()
        fill_store(f"sqlite:///{state / 'events.db'}", args.users, args.products, args.clicks)
        print(
            f"store: {args.users:,} users x {args.clicks} clicks over {args.products:,} products "
            f"({time.monotonic() - started:.0f} s); serve.py, EASE, {args.workers} workers"
        )
        service = Service(state, args.workers)
        script = state / "recommend.lua"
        script.write_text(RECOMMEND_LUA)
        try:
            rows = []
            version = service.wait_for_one_version()
            service.serve_everyone(script, args.users, args.serve_seconds)
            size = (state / "models" / version / "arrays.npz").stat().st_size
            print(f"model {version}: arrays file {size / MB:,.0f} MB")
            rows.append(("start", version, *service.memory()))
            for retrain in (1, 2):
                job = service.request("POST", "/admin/retrain")
                version = service.wait_for_one_version(newer_than=version)
                time.sleep(3)  # the trainer's last references go with its thread
                service.serve_everyone(script, args.users, args.serve_seconds)
                rows.append(
                    (f"after retrain {retrain} ({job['job_id'][:8]})", version, *service.memory())
                )
        finally:
            service.stop()
    print(
        f"\n  {'when':<30}{'version':<26}{'sum of PSS MB':>14}{'sum of RSS MB':>14}"
        "   each worker's PSS MB"
    )
    for when, served, pss, rss, each in rows:
        print(
            f"  {when:<30}{served:<26}{pss / MB:>14,.0f}{rss / MB:>14,.0f}   "
            + ", ".join(f"{one / MB:,.0f}" for one in each)
        )
    growth = (rows[-1][2] - rows[0][2]) / size
    print(f"\nGrowth of the workers' summed PSS: {growth:.2f}x the arrays file")
    verdicts.check(
        f"{args.workers} workers, 2 retrains: summed PSS grows <= {GROWTH_BOUND}x one model",
        f"{growth:.2f}x",
        growth <= GROWTH_BOUND,
    )
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
