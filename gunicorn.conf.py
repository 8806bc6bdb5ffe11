"""gunicorn settings for production: `gunicorn 'app:create_app()'` reads this file.

Start-up work (migrations, the first bootstrap and training) runs once in the
master before any worker exists, so several workers never race for it. Threaded
workers with bounded timeouts keep a few slow clients from freezing the service;
on the internet, put a reverse proxy (nginx, a cloud load balancer) in front,
which buffers slow clients entirely.
"""

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

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


_OWN_METRICS_DIR = "recsys-metrics-"


def prepare_metrics_dir() -> Path:
    """Give the workers an empty directory to share their metrics in (prometheus-client).

    Called first thing in the master (on_starting): PROMETHEUS_MULTIPROC_DIR
    must be set before prometheus-client is imported. An operator's own
    directory is kept, emptied of the series files of a previous run (they
    would be added to this run's); otherwise a new temporary one, removed on exit.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix=_OWN_METRICS_DIR))
    path.mkdir(parents=True, exist_ok=True)
    for series in path.glob("*.db"):
        series.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def on_starting(server):
    """Run `flask --app app init` once, in the master, before the workers start."""
    prepare_metrics_dir()
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


def child_exit(server, worker):
    """Drop a dead worker's live gauges from /metrics (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server):
    """Remove the metrics directory made for this run (an operator's own stays)."""
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if path.name.startswith(_OWN_METRICS_DIR):
        shutil.rmtree(path, ignore_errors=True)
