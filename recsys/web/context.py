"""The one way a view reaches the runtime of its app."""

from __future__ import annotations

from flask import current_app

from recsys.serving.runtime import ServingRuntime


def runtime() -> ServingRuntime:
    """Return the current app's runtime, started (its model served) on first use."""
    found: ServingRuntime = current_app.extensions["recsys.runtime"]
    found.start()
    return found
