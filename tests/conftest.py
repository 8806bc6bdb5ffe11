"""Fixtures in flaskr's shape: app -> client and runner; the shared read-only app; CSV files.

Every app a test makes gets its own event store and artifact directory and is
closed afterwards (its threads and connection pools). Builders several
modules share live in tests/builders.py; database fixtures in
tests/store_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import BUNDLED_LOG, ROOT, AppFactory

# Event store fixtures (SQLite and PostgreSQL); Redis fixtures for the rate-limit
# and cache tests; under .ci/run, skips turned into failures.
pytest_plugins = ["tests.store_fixtures", "tests.redis_fixtures", "tests.ci_skips"]

__all__ = ["BUNDLED_LOG", "ROOT"]


@pytest.fixture(autouse=True)
def isolated_event_store(tmp_path, monkeypatch):
    """Point every app a test creates at a store and artifact directory of its own.

    Without this, create_app would use (and fill) the repository's instance folder.
    Exploration is off: most tests check the model's own ranking (pages that
    join up, exclusions that shift a list by one); tests/online/test_exploration.py
    turns it on.
    """
    monkeypatch.setenv("RECSYS_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    monkeypatch.setenv("RECSYS_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("RECSYS_EXPLORATION", "0")


@pytest.fixture(scope="session")
def bundled_app(tmp_path_factory):
    """The service over the bundled log, built once: the read-only tests share it."""
    state = tmp_path_factory.mktemp("bundled_app")
    # Built before any test's environment: exploration is turned off here too.
    factory = AppFactory(
        f"sqlite:///{state / 'events.db'}",
        state / "models",
        DATA_PATH=str(BUNDLED_LOG),
        EXPLORATION="0",
    )
    yield factory()
    factory.close()


@pytest.fixture()
def bundled_client(bundled_app):
    """A client of the shared app: for requests that change nothing."""
    return bundled_app.test_client()


@pytest.fixture()
def app(app_factory):
    """A fresh service over the bundled log, its store and artifacts its own."""
    return app_factory()


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def runner(app):
    return app.test_cli_runner()


@pytest.fixture()
def write_csv(tmp_path):
    """Write text to a CSV file in a temporary folder and return its path."""

    def write(text: str, name: str = "log.csv") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
