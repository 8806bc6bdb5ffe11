"""gunicorn settings for production: `gunicorn 'app:create_app()'` reads this file.

Start-up work (migrations, the first bootstrap and training) runs once in the
master before any worker exists, so several workers never race for it. Threaded
workers with bounded timeouts keep a few slow clients from freezing the service;
on the internet, put a reverse proxy (nginx, a cloud load balancer) in front,
which buffers slow clients entirely.
"""

import logging
import os
import sys

bind = os.environ.get("RECSYS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("RECSYS_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("RECSYS_THREADS", "8"))
# A request may take at most this long; the database timeout (5 s) stays well below.
timeout = 30
graceful_timeout = 30
keepalive = 5
# Bounded request lines and headers: junk is refused before it reaches Flask.
limit_request_line = 8190
limit_request_fields = 100
# gunicorn's control socket is one path per user for every server on the host;
# the service does not use it, and two servers must not share it.
control_socket_disable = True


def on_starting(server):
    """Run `flask --app app init` once, in the master, before the workers start."""
    refuse_open_public_bind(server)
    from app import create_app
    from recsys.store.engine import STORE_OUTAGES
    from recsys.web import RUNTIME_KEY

    app = create_app()
    runtime = app.extensions[RUNTIME_KEY]
    try:
        runtime.init()
    except STORE_OUTAGES as exc:
        # Boot anyway: workers serve the published model and recover when
        # the database returns.
        logging.getLogger("recsys").warning(
            "database unavailable at start (%s): serving the published model", type(exc).__name__
        )
    finally:
        runtime.close()


def refuse_open_public_bind(server):
    """Stop (one line, exit 2) before listening when no key is configured and a bind is public.

    RECSYS_ALLOW_OPEN=1 allows it; a service without keys is logged once as a warning.
    """
    from app import create_app
    from recsys.serving.exposure import open_bind_refusal, warn_if_open
    from recsys.web import RUNTIME_KEY

    app = create_app()
    app.extensions[RUNTIME_KEY].close()
    keys_configured = bool(app.config["API_KEYS"])
    refusal = open_bind_refusal(keys_configured, app.config["ALLOW_OPEN"], server.cfg.bind)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        sys.exit(2)
    warn_if_open(keys_configured, server.cfg.bind)


def worker_exit(server, worker):
    """Release the worker's database connections and threads."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("recsys.runtime") if app else None
    if runtime is not None:
        runtime.close()
