"""What several test modules build: paths, a small catalog, apps like restarts of a server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_LOG = ROOT / "interactions.csv"

SMALL_CATALOG = pd.DataFrame(
    {
        "product_id": [1, 2, 3, 4, 5],
        "name": ["Desk Lamp", "Kettle", "Mug", "Notebook", "Pen"],
        "category": ["home", "kitchen", "kitchen", "office", "office"],
        "price": [25.0, 30.0, 8.5, 4.0, 1.5],
    }
)


# An A/B test of the popularity list against the live model, as POST /experiments takes it.
POPULAR_VS_CHAMPION = {
    "name": "pop-vs-svd",
    "metric": "conversion",
    "baseline_rate": 0.3,
    "mde": 0.1,
    "variants": [
        {"name": "control", "weight": 1, "strategy": "popular"},
        {"name": "personal", "weight": 1, "strategy": "champion"},
    ],
}


def listed(response) -> list[int]:
    """Return the product ids of a 200 list answer (/recommend, /popular, /similar)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["product_id"] for item in response.get_json()["recommendations"]]


def buy(client, user_id: int, product_id: int) -> None:
    """Post one purchase and check it was accepted."""
    response = client.post(
        "/interactions", json={"user_id": user_id, "product_id": product_id, "purchased": 1}
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def uncached_list(app, user_id: int, n: int) -> list[int]:
    """Return the list the app's pipeline makes from the store now, past every cache."""
    from recsys.online.service import NoAnswerCache, RecommendRequest

    service = runtime_of(app).service
    history = service.store.user_history(user_id)
    answer = service.pipeline.answer(
        service.live.current(),
        RecommendRequest(user_id, n),
        history,
        None,
        NoAnswerCache(service.store),
    )
    return [item.product_id for item in answer.recommendations]


def wait_for_announcements(app, seconds: float = 5.0) -> None:
    """Wait until the app's invalidation listener (REDIS_URL) vouches for its cached answers."""
    import time

    from recsys.online.invalidation import InvalidationBus

    bus = runtime_of(app).service.cache.invalidations
    assert isinstance(bus, InvalidationBus), "the app has no REDIS_URL"
    runtime_of(app).start()
    deadline = time.monotonic() + seconds
    while bus.history_version(0) is None:
        assert time.monotonic() < deadline, "the invalidation listener never proved itself"
        time.sleep(0.01)


def generate_small_log(path) -> None:
    """Write a 3,000-event log of 200 users and 30 products (with its catalog) with generate."""
    from recsys.cli.main import main

    args = ["generate", "--users", "200", "--products", "30", "--events", "3000"]
    assert main([*args, "--out", str(path)]) == 0


def fit_on_shuffled_events(name: str, params, feedback: pd.DataFrame):
    """Fit the model on the events with their products shuffled: a model that learned no taste."""
    shuffled = feedback.assign(
        product_id=np.random.default_rng(7).permutation(feedback["product_id"].to_numpy())
    )
    pairs = shuffled.groupby(["user_id", "product_id"], as_index=False).agg(
        clicks=("clicks", "sum"), engagement=("engagement", "sum"), rating=("rating", "max")
    )
    from recsys.training.train import fit_locally

    return fit_locally(name, params, pairs)


def generate_shop_log(path) -> None:
    """Write a 9,000-event log of 600 users and 30 products (with its catalog), users in turn.

    Large enough for the quality gate to tell a model that learned no taste
    (``fit_on_shuffled_events``) from the live one on the last quarter's users.
    """
    from recsys.cli.main import main

    args = ["generate", "--users", "600", "--products", "30", "--events", "9000"]
    assert main([*args, "--out", str(path)]) == 0


def runtime_of(app):
    """Return the app's ServingRuntime."""
    return app.extensions["recsys.runtime"]


class AppFactory:
    """Makes apps over one database and one artifact directory, like restarts of a server.

    Each app is initialised as `flask --app app init` would (unless asked not
    to); ``close`` waits for their training jobs and closes their runtimes.
    Rate limits are off unless a test sets them: tests send bursts no client
    would, and tests/web/test_rate_limits.py checks the limits themselves.
    """

    def __init__(self, database_url: str, model_dir: Path, **config):
        self.database_url = database_url
        self.model_dir = model_dir
        self.config = config
        self.apps: list = []

    def __call__(self, init: bool = True, **overrides):
        from app import create_app

        config = {
            "TESTING": True,
            "DATABASE_URL": self.database_url,
            "MODEL_DIR": str(self.model_dir),
            "RATE_LIMIT": "",
            "RATE_LIMIT_INGEST": "",
            "RATE_LIMIT_ADDRESS": "",
            **self.config,
            **overrides,
        }
        app = create_app(config)
        self.apps.append(app)
        if init:
            runtime_of(app).init()
        return app

    def close(self) -> None:
        for app in self.apps:
            runtime = runtime_of(app)
            runtime.jobs.wait_all(timeout=30)
            runtime.close()


# Prepended to a child's script: its first fsync prints "writing" and hangs,
# so the parent can SIGKILL it with a file written and nothing renamed yet.
_HANG_AFTER_FIRST_FSYNC = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = {paths!r}
    real_fsync = os.fsync

    def fsync_then_hang(fd):
        real_fsync(fd)
        print("writing", flush=True)
        time.sleep(60)

    os.fsync = fsync_then_hang
    """
)


def kill_mid_write(script: str, paths: list[str], env: dict[str, str] | None = None) -> int:
    """Run a script in a child that is SIGKILLed right after its first fsync.

    Args:
        script: Python code whose first fsync comes while publishing a model.
        paths: Prepended to the child's sys.path.
        env: Extra environment variables for the child.

    Returns:
        The child's exit status (-9 when it was killed mid-write).
    """
    code = _HANG_AFTER_FIRST_FSYNC.format(paths=paths) + textwrap.dedent(script)
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        child.kill()  # SIGKILL: no cleanup handler runs
    finally:
        child.wait(timeout=30)
    return child.returncode


def exposure_row(user_id: int, served_at: datetime, recommendation_id: str) -> dict:
    """Return one list served inside experiment "e" (variant "a") as an ``exposures`` row."""
    return {
        "recommendation_id": recommendation_id,
        "experiment": "e",
        "variant": "a",
        "user_id": user_id,
        "product_ids": "1 2",
        "latency_ms": 1.0,
        "failed": False,
        "served_at": served_at,
    }


def expose(
    store, user_id: int, served_at: datetime | None = None, clicked_at: datetime | None = None
) -> None:
    """Record one A/B exposure of the user and one event linked to it (both now by default)."""
    from recsys.data.timestamps import utc_now
    from recsys.experiments.records import ExperimentStore

    records = ExperimentStore(store.engine)
    now = utc_now()
    records.add_exposures([exposure_row(user_id, served_at or now, f"r{user_id}")])
    records.add_exposure_events(
        [
            {
                "recommendation_id": f"r{user_id}",
                "user_id": user_id,
                "product_id": 1,
                "purchased": True,
                "created_at": clicked_at or served_at or now,
            }
        ]
    )
