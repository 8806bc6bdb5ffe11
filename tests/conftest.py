"""Shared fixtures: the app over the bundled data, its client, CSV helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app

# Event store fixtures (SQLite and PostgreSQL) for the store and API tests.
pytest_plugins = ["tests.store_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_LOG = ROOT / "interactions.csv"


@pytest.fixture(scope="session")
def bundled_app(tmp_path_factory):
    """The service over the bundled log, built once: the read-only endpoints share it."""
    state = tmp_path_factory.mktemp("bundled_app")
    app = create_app(
        {
            "TESTING": True,
            "DATA_PATH": str(BUNDLED_LOG),
            "DATABASE_URL": f"sqlite:///{state / 'events.db'}",
            "MODEL_DIR": str(state / "models"),
        }
    )
    runtime = app.extensions["recsys.runtime"]
    runtime.init()
    yield app
    runtime.close()


@pytest.fixture(autouse=True)
def isolated_event_store(tmp_path, monkeypatch):
    """Give every app a test creates its own event store and artifact directory.

    Without this, create_app would use (and fill) the repository's instance folder.
    """
    monkeypatch.setenv("RECSYS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.setenv("RECSYS_MODEL_DIR", str(tmp_path / "models"))


@pytest.fixture()
def make_app():
    """Return a function that builds an app from a config and runs its init step.

    Every app made is closed at the end of the test (threads, connection pools).
    """
    made = []

    def make(config: dict | None = None, init: bool = True):
        app = create_app({"TESTING": True, **(config or {})})
        made.append(app)
        if init:
            app.extensions["recsys.runtime"].init()
        return app

    yield make
    for app in made:
        runtime = app.extensions["recsys.runtime"]
        runtime.jobs.wait_all(timeout=30)
        runtime.close()


@pytest.fixture()
def client(bundled_app):
    return bundled_app.test_client()


@pytest.fixture()
def write_csv(tmp_path):
    """Write text to a CSV file in a temporary folder and return its path."""

    def write(text: str, name: str = "log.csv") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
