"""Benchmark: Redis round trips per /recommend answer, for the capacity plan (docs/scaling.md).

One app over the bundled data with the cache on and a Redis at
``RECSYS_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/15), driven through
Flask's test client. It counts the round trips the app's redis-py
connections make (each command, or each pipeline, sent is one) for three
kinds of request: a user's first answer (nothing cached), the same answer
again (cached), and an answer after the user posted an event (the history
announced and re-read). Figures only: Redis's own capacity is measured by
its authors (``redis-benchmark``: about 100,000 simple operations a second
per core).

Usage: python bench/bench_redis_ops.py [--users 50] [--record FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class RoundTrips:
    """Counts what redis-py sends: one per command or pipeline, in every connection."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return original(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="users asked for, one answer each")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_redis_ops.py", record=args.record)
    from app import create_app

    trips = RoundTrips()
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{folder}/events.db",
                "MODEL_DIR": f"{folder}/models",
                "REDIS_URL": REDIS_URL,
                "CACHE": True,
                "RATE_LIMIT": "",
                "RATE_LIMIT_INGEST": "",
                "MODEL_REFRESH_SECONDS": 0,
            }
        )
        runtime = app.extensions["recsys.runtime"]
        runtime.init()
        client = app.test_client()
        users = list(range(1, args.users + 1))
        figures = {}
        for name, before_each in (
            ("first answer (nothing cached)", None),
            ("same answer again (cached)", None),
            ("answer after the user's new event", "post"),
        ):
            counted = 0
            for user in users:
                if before_each == "post":
                    event = [{"user_id": user, "product_id": 1, "purchased": 0}]
                    posted = client.post("/interactions", json=event)
                    assert posted.status_code in (200, 201), posted.get_data(as_text=True)
                start = trips.count
                response = client.get(f"/recommend?user_id={user}")
                assert response.status_code == 200, response.get_data(as_text=True)
                counted += trips.count - start
            figures[name] = counted / len(users)
        runtime.close()
    print(f"Redis round trips per /recommend answer (bundled data, {args.users} users, cache on)")
    for name, value in figures.items():
        print(f"  {name:<40} {value:5.2f}")
        verdicts.inform(f"round trips per answer: {name}", f"{value:.2f}")
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
