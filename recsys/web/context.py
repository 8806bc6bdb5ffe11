"""The one way a view reaches the runtime of its app, and its settings."""

from __future__ import annotations

from flask import Flask, current_app

from recsys.config import Settings
from recsys.runtime import ServingRuntime


def runtime() -> ServingRuntime:
    """Return the current app's runtime, started (its model served) on first use."""
    return runtime_of(current_app)


def runtime_of(app: Flask) -> ServingRuntime:
    """Return an app's runtime, started on first use (for a view that holds its app already)."""
    found: ServingRuntime = app.extensions["recsys.runtime"]
    found.start()
    return found


def settings_of(app: Flask) -> Settings:
    """Return an app's settings (its runtime's), without starting the runtime."""
    found: ServingRuntime = app.extensions["recsys.runtime"]
    return found.settings
