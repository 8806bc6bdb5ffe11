"""What several test modules build: paths, a small catalog, apps like restarts of a server."""

from __future__ import annotations

from pathlib import Path

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


def runtime_of(app):
    """Return the app's ServingRuntime."""
    return app.extensions["recsys.runtime"]


class AppFactory:
    """Makes apps over one database and one artifact directory, like restarts of a server.

    Each app is initialised as `flask --app app init` would (unless asked not
    to); ``close`` waits for their training jobs and closes their runtimes.
    Rate limits are off unless a test sets them: tests send bursts no client
    would, and tests/test_rate_limits.py checks the limits themselves.
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
