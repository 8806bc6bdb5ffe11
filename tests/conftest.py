"""Shared fixtures: the app over the bundled data, its client, CSV helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_LOG = ROOT / "interactions.csv"


@pytest.fixture(scope="session")
def bundled_app():
    """The service over the bundled log, built once: the read-only endpoints share it."""
    return create_app({"TESTING": True, "DATA_PATH": str(BUNDLED_LOG)})


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
