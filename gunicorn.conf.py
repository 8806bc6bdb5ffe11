"""gunicorn settings for production: `gunicorn 'app:create_app()'` reads this file.

Start-up work (migrations, the first bootstrap and training) runs once in the
master before any worker exists, so several workers never race for it. The
app is preloaded: after that work the master loads the newest model, closes
its database connections and then forks, so every worker starts serving at
once and shares the model's arrays with the others (copy-on-write) instead of
loading a copy of its own. Each worker then starts its own refresh and retrain
threads. Threaded workers with bounded timeouts keep a few slow clients from
freezing the service; on the internet, put a reverse proxy (nginx, a cloud
load balancer) in front, which buffers slow clients entirely.

The access log goes to standard output, one JSON object per line.
"""

import gc
import json
import logging
import os
from datetime import UTC, datetime

from gunicorn import glogging

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
# The master builds the app (create_app has no side effects) and, in
# on_starting, loads the model its workers inherit.
preload_app = True


# -- the access log: one JSON object per line ------------------------------------


class JsonSafeAtoms(glogging.SafeAtoms):
    """gunicorn's log atoms with every text escaped as the inside of a JSON string.

    gunicorn escapes only double quotes; a path may also hold backslashes and,
    percent-decoded, control characters such as a line feed.
    """

    def __init__(self, atoms):
        super().__init__({})
        for key, value in atoms.items():
            self[key] = json.dumps(value)[1:-1] if isinstance(value, str) else value


class JsonAccessLogger(glogging.Logger):
    """gunicorn's logger with JSON-safe access-log atoms, ISO 8601 times and ``pid``."""

    atoms_wrapper_class = JsonSafeAtoms

    def now(self):
        return datetime.now(UTC).isoformat(timespec="milliseconds")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["pid"] = os.getpid()  # which worker answered
        return atoms


logger_class = JsonAccessLogger
accesslog = "-"
# Texts are quoted here and escaped by JsonSafeAtoms; status, bytes, duration
# (seconds) and pid are numbers. The only headers logged are X-Forwarded-For
# and X-Request-ID (set by the proxy in front): never X-API-Key. The query
# holds ids and paging only.
access_log_format = (
    '{"time": "%(t)s", "method": "%(m)s", "path": "%(U)s", "query": "%(q)s", '
    '"status": %(s)s, "duration": %(L)s, "bytes": %(B)s, "remote_addr": "%(h)s", '
    '"forwarded_for": "%({x-forwarded-for}i)s", "request_id": "%({x-request-id}i)s", '
    '"pid": %(pid)s}'
)


# -- hooks ---------------------------------------------------------------------------


def on_starting(server):
    """In the master, before any worker exists: init, load the model, close connections."""
    runtime = runtime_of(server.app.wsgi())
    if init_once(runtime):
        preload_live_model(runtime)
    release_database(runtime)


def init_once(runtime):
    """Run `flask --app app init` (migrate, fill, first training); return whether it could."""
    from recsys.store.engine import STORE_OUTAGES

    try:
        runtime.init()
    except STORE_OUTAGES as exc:
        # Boot anyway: each worker loads the published model at its first
        # request and recovers when the database returns.
        logging.getLogger("recsys").warning(
            "database unavailable at start (%s): serving the published model", type(exc).__name__
        )
        return False
    return True


def preload_live_model(runtime):
    """Load the newest model in the master, so that every worker is forked with it."""
    runtime.load_live_model()
    # Everything so far goes to a generation the collector never scans: a
    # collection in a worker then writes nothing into the inherited objects,
    # so their pages stay shared instead of being copied.
    gc.freeze()


def release_database(runtime):
    """Close the master's pooled connections: two processes must never share one.

    Only the pool: ``runtime.close()`` would also set the stop flag that
    every worker inherits, and their threads would end at once.
    """
    runtime.store.dispose()


def post_worker_init(worker):
    """Start the worker's refresh poller and retrain timer (threads do not survive a fork)."""
    runtime = runtime_of(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.start_threads()


def worker_exit(server, worker):
    """Release the worker's database connections and threads."""
    runtime = runtime_of(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.close()


def runtime_of(app):
    """Return the app's ServingRuntime, or None for anything else."""
    return getattr(app, "extensions", {}).get("recsys.runtime")
