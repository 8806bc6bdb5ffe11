"""The HTTP layer: Flask blueprints and JSON errors (the only Flask code)."""

from __future__ import annotations

from flask import Flask

from recsys.api import errors, recommend


def init_app(app: Flask, service) -> None:
    """Register the blueprints and error handlers, and attach the service.

    Args:
        app: The Flask application.
        service: The service the views call (``recommend``, ``popular``).
    """
    app.extensions["recsys.service"] = service
    errors.init_app(app)
    app.register_blueprint(recommend.bp)
