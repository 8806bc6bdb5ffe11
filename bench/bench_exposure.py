"""Benchmark: what the A/B exposure log costs /recommend, at p50 and p99.

Three apps over copies of one bundled store (SQLite, cache on, no Redis),
driven in-process through Flask's test client, so the figures are the
service's own time per request without a network:

- ``no experiment``: the plain path (the layer's one attribute read);
- ``log off``: an experiment running (popular against the live model) with
  ``RECSYS_AB_EXPOSURE_LOG=0``;
- ``log on``: the same with the exposure log, its writer thread inserting
  batches in the background while requests run.

Rounds alternate between the apps so that a noisy neighbour hurts all three
alike. The cost of the log is p50(on) / p50(off) - 1; the target is at most 10%
(PASS or FAIL; exits 1 if it fails).

Usage: python bench/bench_exposure.py [--requests 3000] [--rounds 3] [--record FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from app import create_app  # noqa: E402

# The exposure log may add at most this share to /recommend's p50.
MAX_LOG_COST = 0.10

EXPERIMENT = {
    "name": "bench",
    "baseline_rate": 0.1,
    "mde": 0.02,
    "variants": [
        {"name": "control", "strategy": "popular"},
        {"name": "personal", "strategy": "champion"},
    ],
}


def make_app(folder: Path, log_on: bool, experiment: bool):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'events.db'}",
            "MODEL_DIR": str(folder / "models"),
            "DATA_PATH": str(ROOT / "interactions.csv"),
            "AB_EXPOSURE_LOG": log_on,
            "RATE_LIMIT": "",
            # An automatic retrain would take the CPU mid-measurement.
            "AUTO_RETRAIN": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    runtime = app.extensions["recsys.runtime"]
    runtime.init()
    client = app.test_client()
    client.get("/recommend?user_id=1")  # starts the runtime: live model, threads
    if experiment:
        assert client.post("/experiments", json=EXPERIMENT).status_code == 201
        assert client.post("/experiments/bench/start").status_code == 200
    return app, client


def timed(client, users: np.ndarray) -> list[float]:
    times = []
    for user_id in users.tolist():
        started = time.perf_counter()
        response = client.get(f"/recommend?user_id={user_id}")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=3)
    add_record_option(parser)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    verdicts = Verdicts("bench_exposure.py", record=args.record)
    rng = np.random.default_rng(0)
    configs = {"no experiment": (True, False), "log off": (False, True), "log on": (True, True)}
    with tempfile.TemporaryDirectory() as tmp:
        apps = {}
        for name, (log_on, experiment) in configs.items():
            folder = Path(tmp) / name.replace(" ", "-")
            folder.mkdir()
            apps[name] = make_app(folder, log_on, experiment)
        for _, client in apps.values():
            timed(client, rng.integers(1, 101, 300))  # warm caches
        times: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            users = rng.integers(1, 101, args.requests)
            for name, (_, client) in apps.items():
                times[name].extend(timed(client, users))
        logged = apps["log on"][0].extensions["recsys.runtime"]
        logged.exposure_log.flush()
        written = len(logged.experiments.store.exposures_frame("bench"))
        for app, _ in apps.values():
            app.extensions["recsys.runtime"].close()
    print(f"/recommend over the bundled data, {args.rounds} x {args.requests} requests per app")
    print(f"{'configuration':<16}{'p50 ms':>10}{'p99 ms':>10}")
    figures = {}
    for name, values in times.items():
        p50, p99 = np.percentile(values, [50, 99])
        figures[name] = (p50, p99)
        print(f"{name:<16}{p50:>10.3f}{p99:>10.3f}")
    on, off = figures["log on"], figures["log off"]
    print(f"exposure log cost: p50 {on[0] / off[0] - 1:+.1%}, p99 {on[1] / off[1] - 1:+.1%}")
    plain = figures["no experiment"]
    print(f"experiment layer (log off) against no experiment: p50 {off[0] / plain[0] - 1:+.1%}")
    print(f"exposures written by the log-on app: {written}")
    cost = on[0] / off[0] - 1
    verdicts.check(
        f"exposure log cost at p50 <= {MAX_LOG_COST:.0%}", f"{cost:+.1%}", cost <= MAX_LOG_COST
    )
    verdicts.inform("exposure log cost at p99", f"{on[1] / off[1] - 1:+.1%}")
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
