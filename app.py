"""The web service: ``create_app`` builds it; ``python app.py`` prepares and serves it.

``create_app`` has no side effects: it reads the settings (``recsys.config``:
the ``config`` mapping, then ``RECSYS_*`` environment variables,
then the defaults), and wires the runtime into Flask. It opens no database,
writes no file and trains nothing. Start-up work is ``flask --app app init``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any, cast

from flask import Flask
from flask.cli import get_load_dotenv, load_dotenv
from flask.json.provider import DefaultJSONProvider
from pythonjsonlogger.json import JsonFormatter
from werkzeug.serving import make_server

from recsys.config.metrics_dir import metrics_dir_refusal

# The modules below define their Prometheus metrics when imported, and with
# PROMETHEUS_MULTIPROC_DIR set prometheus-client writes a file there for each:
# a directory it cannot write is one line, before them, not a traceback.
if (_refusal := metrics_dir_refusal()) is not None:
    print(f"error: {_refusal}", file=sys.stderr)
    raise SystemExit(2)

from recsys import web
from recsys.config import Settings
from recsys.config.open_bind import open_bind_refusal, warn_if_open
from recsys.errors import RecsysError
from recsys.runtime import ServingRuntime
from recsys.store.engine import STORE_OUTAGES, describe_outage
from recsys.web.application import ServiceFlask
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
    app = ServiceFlask(__name__, instance_relative_config=True, static_folder=None)
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
    # Flask's own keys (TESTING...); the service reads its settings from the runtime's.
    app.config.from_mapping(settings.extra)
    # Werkzeug enforces this on every body, chunked ones included; the one
    # extra byte tells a streamed body that reached the limit from one past it.
    app.config["MAX_CONTENT_LENGTH"] = settings.server.ingest_max_bytes + 1
    cast(DefaultJSONProvider, app.json).sort_keys = False
    configure_logging(settings.server.log_level)
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
    logger.setLevel(level)  # a name the settings checked


def load_dotenv_files() -> None:
    """Add the variables of ``.env`` to the environment, as ``flask`` commands do.

    The same rule for every entry point (``python app.py``, gunicorn through
    gunicorn.conf.py, ``flask --app app ...``): ``.env`` of the current folder
    or the nearest one above it (and ``.flaskenv``, which ``.env`` overrides);
    a variable already in the environment wins; ``FLASK_SKIP_DOTENV=1`` reads
    neither. This is Flask's own loader.
    """
    if get_load_dotenv():
        load_dotenv()


def main(argv: list[str] | None = None) -> int:
    """Prepare the store and model (``init``), then serve with Flask's development server.

    Settings come from the environment and ``.env`` (``load_dotenv_files``).
    Without API keys it listens only on a loopback address, unless ``ALLOW_OPEN`` is set.
    """
    parser = argparse.ArgumentParser(
        description="Serve the recommendation API (development server; for production, "
        "serve.py: see docs/operations/running.md)."
    )
    parser.add_argument("--host", default=None, help="default: RECSYS_HOST or 127.0.0.1")
    parser.add_argument("--port", default=None, help="default: RECSYS_PORT or 5000")
    args = parser.parse_args(argv)
    load_dotenv_files()
    overrides = {k: v for k, v in (("HOST", args.host), ("PORT", args.port)) if v is not None}
    try:
        app = create_app(overrides)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = app.extensions[web.RUNTIME_KEY].settings
    keys_configured = bool(settings.security.api_keys)
    refusal = open_bind_refusal(
        keys_configured, settings.security.allow_open, [settings.server.host]
    )
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
    host, port = settings.server.host, settings.server.port
    try:
        listener = listen(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    with listener:
        # Werkzeug's development server, as app.run starts it, on the bound
        # socket (it serves a duplicate of it).
        server = make_server(host, port, app, threaded=True, fd=listener.fileno())
    warn_if_open(keys_configured, [f"{host}:{port}"])
    shown_host = f"[{server.host}]" if ":" in server.host else server.host
    logging.getLogger("recsys").info("listening on http://%s:%s", shown_host, server.port)
    server.log_startup()
    server.serve_forever()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """Return a TCP socket listening on host:port, bound as Werkzeug binds it.

    Binding here, not in Werkzeug, turns a taken port into one line and exit
    status 2 (Werkzeug prints several lines and exits with 1), and the
    listening line is logged only once the bind succeeded.

    Raises:
        OSError: The address cannot be bound (taken, not local, unknown name).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As Werkzeug binds: a port whose last connections wait in TIME_WAIT is free.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


if __name__ == "__main__":
    sys.exit(main())
