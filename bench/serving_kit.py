"""What the serving benchmarks share: wrk scripts and runs, the servers, the synthetic store.

``Server`` starts the production server (serve.py: granian) or gunicorn
with gunicorn.conf.py over one store and model directory; ``wrk`` drives it
with a Lua script and returns the rate, p50 and p99; ``process_cpu_seconds``
gives the server's CPU time, so a run's CPU per request can be compared
between servers whatever else the machine runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from bench_ingestion import synthetic_svd_state
from prometheus_client.parser import text_string_to_metric_families

from recsys.data.events import Event
from recsys.models.state import ModelState
from recsys.store.artifacts import ModelRegistry
from recsys.store.events import EventStore
from recsys.store.migrate import upgrade_to_head

ROOT = Path(__file__).resolve().parent.parent
SERVER_COMMANDS = {
    "granian": [sys.executable, "serve.py"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
    # Compared only (bench/other_servers.py; requirements-bench-servers.txt).
    "uwsgi": [sys.executable, "bench/other_servers.py", "uwsgi"],
    "socketify": [sys.executable, "bench/other_servers.py", "socketify"],
}
# Servers whose first process does not stop the others: stopped as a process group.
_STOPPED_AS_GROUP = {"socketify"}

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

# POST /interactions: one event per request, or a batch of 100 (users and
# products of the bundled data, so every event is valid).
_POST_EVENTS = """
local users = tonumber(os.getenv("BENCH_USERS"))
local products = tonumber(os.getenv("BENCH_PRODUCTS"))
local batch = tonumber(os.getenv("BENCH_BATCH"))
init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000) end
request = function()
  local events = {}
  for i = 1, batch do
    events[i] = string.format('{"user_id": %d, "product_id": %d, "purchased": %s}',
      math.random(1, users), math.random(1, products), math.random() < 0.1 and "true" or "false")
  end
  local body = batch == 1 and events[1] or ("[" .. table.concat(events, ",") .. "]")
  return wrk.format("POST", "/interactions", {["Content-Type"] = "application/json"}, body)
end
"""
POST_EVENTS_LUA = _POST_EVENTS + _DONE


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0  # CPU time of the workers (and Redis) per request
    answer_hits: float | None = None  # share of cached answers among the run's lookups


def wsgi_environ(path: str, query: str = "") -> dict:
    """Return a WSGI environ of a GET from 127.0.0.1 (what a server hands the app)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


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


def server_env(state: Path, port: int, settings: dict[str, str]) -> dict[str, str]:
    """Return a benchmark server's environment: this one's without RECSYS_*, then its own.

    The store and models under ``state``, the port, warnings only and no rate
    limits (a benchmark measures serving, not the limiter's 429s), then ``settings``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "RECSYS_BIND": f"127.0.0.1:{port}",
            "RECSYS_DATABASE_URL": f"sqlite:///{state / 'events.db'}",
            "RECSYS_MODEL_DIR": str(state / "models"),
            "RECSYS_LOG_LEVEL": "WARNING",
            "RECSYS_RATE_LIMIT": "",
            "RECSYS_RATE_LIMIT_INGEST": "",
            "RECSYS_RATE_LIMIT_ADDRESS": "",
            **settings,
        }
    )
    return env


class Server:
    """One server over one store and model directory: ``kind`` "granian" (serve.py) or "gunicorn".

    Both run the shipped configuration (serve.py; gunicorn.conf.py) with the
    same workers and threads from ``env``, their access log to the log file.
    """

    def __init__(self, state: Path, env: dict[str, str], kind: str = "granian"):
        self.kind = kind
        self.port = free_port()
        self.log = state / f"{kind}-{self.port}.log"
        full_env = server_env(state, self.port, {"RECSYS_AUTO_RETRAIN": "0", **env})
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                SERVER_COMMANDS[kind],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=kind in _STOPPED_AS_GROUP,
            )
        self._wait_ready()

    def processes(self) -> list[int]:
        """Return the master's and its workers' pids (their CPU is the server's)."""
        return [self.process.pid, *children(self.process.pid)]

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
        raise RuntimeError(f"{self.kind} did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.kind in _STOPPED_AS_GROUP:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return
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
