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
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from flask.cli import get_load_dotenv, load_dotenv
from gunicorn import glogging

from recsys.config import Settings, SettingsError
from recsys.config.metrics_dir import prepare_metrics_dir, remove_own_metrics_dir
from recsys.errors import RecsysError


def server_settings(environ) -> Settings:
    """Read the service's settings, or stop (one line, exit 2) on an unusable one.

    RECSYS_BIND, RECSYS_WORKERS and RECSYS_THREADS are parsed with the
    others (recsys/config/), so a bad value reads as any bad
    setting does instead of a traceback, and 0 workers cannot start a master
    that serves nothing.
    """
    try:
        return Settings.load(environ, None, "instance")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


# As every entry point: .env of the current folder (or above) fills in what
# the environment does not set (`python app.py`, `flask` commands; see
# app.load_dotenv_files). gunicorn loads this file as the module __config__;
# a test that only reads the settings (runpy) keeps its own environment.
if __name__ == "__config__" and get_load_dotenv():
    load_dotenv()
_settings = server_settings(os.environ)
bind = list(_settings.server.bind)
workers = _settings.server.workers
worker_class = "gthread"
threads = _settings.server.threads
# A request may take at most this long; the database timeout (5 s) stays well below.
timeout = 30
graceful_timeout = 30
keepalive = 5
# Each worker listens on a socket of its own (SO_REUSEPORT), and the kernel
# spreads new connections over them. With one shared socket, the worker that
# wakes first may accept every connection of a burst; kept-alive connections
# (a load balancer's pool, a benchmark's) then stay with it, and the other
# workers idle: measured here, 2 workers served a third of their rate with
# one of them doing all the work.
reuse_port = True
# Bounded request lines and headers: junk is refused before it reaches Flask.
limit_request_line = 8190
limit_request_fields = 100
# gunicorn's control socket is one path per user for every server on the host;
# the service does not use it, and two servers must not share it.
control_socket_disable = True
# The master builds the app (create_app has no side effects) and, in
# on_starting, loads the model its workers inherit.
preload_app = True


# -- metrics shared by the workers ---------------------------------------------------


# gunicorn loads this file as the module __config__; a test that only reads the
# settings (runpy) must not switch its own process's metrics to files.
if __name__ == "__config__":
    try:
        prepare_metrics_dir()
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


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

    def info(self, msg, *args, **kwargs):
        # With a socket per worker (reuse_port) the master binds nothing, and
        # gunicorn would log "Listening at:  (PID)" before any bind: each
        # worker logs its own address once bound instead (post_fork).
        if msg.startswith("Listening at:") and args and not args[0]:
            return
        super().info(msg, *args, **kwargs)


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
    refuse_open_public_bind(server)
    listen_per_worker_where_possible(server)
    if server.cfg.reuse_port:
        refuse_a_taken_port(server)
    runtime = runtime_of(server.app.wsgi())
    try:
        prepared = runtime.init_before_workers()
    except RecsysError as exc:  # a data file or model directory init cannot use: one line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if prepared:
        preload_live_model(runtime)
    release_database(runtime)


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


def post_fork(server, worker):
    """Log where the worker listens, once its own socket is bound (``reuse_port``).

    Without reuse_port the workers share the master's sockets, which gunicorn
    logs itself after binding them.
    """
    if server.cfg.reuse_port and worker.sockets:
        addresses = ",".join(str(listener) for listener in worker.sockets)
        server.log.info("Listening at: %s (%s)", addresses, worker.pid)


def post_worker_init(worker):
    """Start the worker's refresh poller and retrain timer (threads do not survive a fork)."""
    runtime = runtime_of(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.start_threads()


def refuse_open_public_bind(server):
    """Stop (one line, exit 2) before listening when no key is configured and a bind is public.

    RECSYS_ALLOW_OPEN=1 allows it; a service without keys is logged once as a warning.
    """
    from recsys.config.open_bind import open_bind_refusal, warn_if_open

    app = server.app.wsgi()  # preloaded: the app the workers will serve
    security = runtime_of(app).settings.security
    keys_configured = bool(security.api_keys)
    refusal = open_bind_refusal(keys_configured, security.allow_open, server.cfg.bind)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        sys.exit(2)
    warn_if_open(keys_configured, server.cfg.bind)


def listen_per_worker_where_possible(server):
    """Keep a socket per worker (``reuse_port``) only when every address is a TCP port.

    A Unix socket is a path that each worker would remove and bind again,
    leaving only the last one reachable; sockets handed over by systemd or a
    re-executed master are shared as they come.
    """
    tcp_only = all(isinstance(address, tuple) for address in server.cfg.address)
    handed_over = os.environ.get("LISTEN_FDS") or os.environ.get("GUNICORN_FD")
    if not tcp_only or handed_over:
        server.cfg.set("reuse_port", False)


def refuse_a_taken_port(server):
    """Stop (one line, exit 2) when something already listens on a TCP address of the bind.

    With reuse_port, the workers' own sockets would join another server's
    listening on the same port (same user), and the two would share its
    connections unnoticed; without it, gunicorn itself refuses.
    """
    for host, port in server.cfg.address:  # TCP only: reuse_port is off otherwise
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As gunicorn binds: a port whose last connections wait in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
                sys.exit(2)


def worker_exit(server, worker):
    """Release the worker's database connections and threads."""
    runtime = runtime_of(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.close()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from /metrics (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server):
    """Remove the metrics directory made for this run (an operator's own stays)."""
    remove_own_metrics_dir(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))


def runtime_of(app):
    """Return the app's ServingRuntime, or None for anything else."""
    return getattr(app, "extensions", {}).get("recsys.runtime")
