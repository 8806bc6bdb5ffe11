"""The web service: ``create_app`` builds it; ``python app.py`` prepares and serves it.

``create_app`` has no side effects: it reads the settings (``recsys.serving.
settings``: the ``config`` mapping, then ``RECSYS_*`` environment variables,
then the defaults), and wires the runtime into Flask. It opens no database,
writes no file and trains nothing. Start-up work is ``flask --app app init``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, cast

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from pythonjsonlogger.json import JsonFormatter

from recsys import web
from recsys.errors import RecsysError
from recsys.serving.exposure import open_bind_refusal, warn_if_open
from recsys.serving.runtime import ServingRuntime
from recsys.serving.settings import Settings
from recsys.store.engine import STORE_OUTAGES, describe_outage
from recsys.web.request_id import RequestIdFilter


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app and its (not yet started) runtime.

    Args:
        config: Settings that override the environment and the defaults.

    Raises:
        SettingsError: A setting is unusable (one line naming it). Without a
            ``config`` mapping (``flask``, gunicorn) it prints that line and
            exits with status 2 instead.
    """
    # No static folder: the service answers JSON only, and every route needs a declared role.
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    try:
        settings = Settings.load(os.environ, config, app.instance_path)
        runtime = ServingRuntime(settings)
    except RecsysError as exc:
        if config is not None:
            raise
        # Called by `flask --app app ...` or gunicorn: an operator reads one
        # line naming the setting, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.config.from_mapping(settings.as_flask_config())
    # Werkzeug enforces this on every body, chunked ones included; the one
    # extra byte tells a streamed body that reached the limit from one past it.
    app.config["MAX_CONTENT_LENGTH"] = settings["INGEST_MAX_BYTES"] + 1
    cast(DefaultJSONProvider, app.json).sort_keys = False
    configure_logging(settings["LOG_LEVEL"])
    web.init_app(app, runtime)
    return app


def configure_logging(level: str) -> None:
    """Send the service's own messages to stderr as JSON lines (once per process).

    Each record names the request it was written for (``request_id``, the
    answer's ``X-Request-ID``), or null outside a request.
    """
    logger = logging.getLogger("recsys")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    logger.addHandler(handler)
    logger.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")


def main(argv: list[str] | None = None) -> int:
    """Prepare the store and model (``init``), then serve with Flask's development server.

    Without API keys it listens only on a loopback address, unless ``ALLOW_OPEN`` is set.
    """
    parser = argparse.ArgumentParser(
        description="Serve the recommendation API (development server; see the README "
        "for gunicorn)."
    )
    parser.add_argument("--host", default=None, help="default: RECSYS_HOST or 127.0.0.1")
    parser.add_argument("--port", default=None, help="default: RECSYS_PORT or 5000")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("HOST", args.host), ("PORT", args.port)) if v is not None}
    try:
        app = create_app(overrides)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys_configured = bool(app.config["API_KEYS"])
    refusal = open_bind_refusal(keys_configured, app.config["ALLOW_OPEN"], [app.config["HOST"]])
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        app.extensions[web.RUNTIME_KEY].init()
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except STORE_OUTAGES as exc:
        print(f"error: {describe_outage(exc)}", file=sys.stderr)
        return 2
    host, port = app.config["HOST"], app.config["PORT"]
    warn_if_open(keys_configured, [f"{host}:{port}"])
    logging.getLogger("recsys").info("listening on http://%s:%s", host, port)
    app.run(host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
