"""Production server: ``python serve.py`` (``make serve``) runs granian's workers over the app.

Why granian: measured by bench/bench_serving.py on the same app, data and
cores, its Rust HTTP layer answers about 2.4 times the /healthz requests of
gunicorn's threaded workers and 1.5 to 2.3 times the /recommend ones; uWSGI
answered fewer, socketify about as many (docs/operations/running.md has the
table).

What this launcher adds around it, in the main process before any worker
exists, so that several workers never race for it:

- the start-up work (``flask --app app init``: migrations, the first
  bootstrap and training), then the newest model loaded once; workers are
  forked with it and share its memory pages instead of loading copies;
- a public address without API keys, or an address something already
  listens on, stops it with one line and exit status 2;
- a fresh directory for the workers' shared Prometheus series.

Each worker then starts its own refresh and retrain threads. A killed
worker is replaced; SIGHUP replaces the workers one by one (a graceful
restart); SIGTERM or SIGINT stops the server after the answers in flight.
The access log goes to standard output, one JSON object per line.

Usage: python serve.py [--host HOST] [--port PORT]   (default: RECSYS_BIND)
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from flask.cli import get_load_dotenv, load_dotenv

from recsys.config import Settings, SettingsError
from recsys.config.metrics_dir import prepare_metrics_dir, remove_own_metrics_dir
from recsys.errors import RecsysError

# Headers larger than this are refused by granian before they reach Flask; bodies
# are bounded by the app (RECSYS_INGEST_MAX_BYTES). hyper's smallest buffer is 8 KiB.
MAX_HEADER_BYTES = 16 * 1024
# After a SIGHUP, each new worker serves this long before its predecessor is stopped.
RESTART_OVERLAP_SECONDS = 2.0
# A stopping worker finishes its answers in flight for at most this long (a
# request's database work is bounded far below it).
STOP_SECONDS = 30


def main(argv: list[str] | None = None) -> int:
    """Prepare the store and the model once, then serve them with granian's workers."""
    args = parse_arguments(argv)
    if get_load_dotenv():
        load_dotenv()
    try:
        settings = Settings.load(os.environ, None, "instance")
        address = listening_address(settings.server.bind, args.host, args.port)
    except (SettingsError, ValueError) as exc:
        return refuse(str(exc))
    try:
        metrics_dir = prepare_metrics_dir()
    except RecsysError as exc:
        return refuse(str(exc))
    # Before any model is loaded or trained: large temporaries leave nothing behind.
    from recsys.runtime import return_large_blocks_at_once

    return_large_blocks_at_once()
    # Imported only now: prometheus-client reads PROMETHEUS_MULTIPROC_DIR at import.
    from app import create_app
    from recsys.config.open_bind import open_bind_refusal, warn_if_open

    app = create_app()
    runtime = app.extensions["recsys.runtime"]
    keys = bool(runtime.settings.security.api_keys)
    shown = [format_address(address)]
    refusal = open_bind_refusal(keys, runtime.settings.security.allow_open, shown)
    if refusal:
        return refuse(refusal)
    if isinstance(address, tuple):
        problem = why_not_listen(*address)
    else:
        problem = why_not_listen_on_socket(address)
    if problem is not None:
        return refuse(f"cannot listen on {shown[0]}: {problem}")
    warn_if_open(keys, shown)
    try:
        prepare_before_workers(app)
    except RecsysError as exc:  # a data file or setting init cannot use: one line
        return refuse(str(exc))
    server = granian_server(address, settings, app)
    server.on_startup(notify_systemd_ready)
    server.on_shutdown(lambda: remove_own_metrics_dir(metrics_dir))
    server.serve(target_loader=lambda _target: worker_app(app, metrics_dir))
    return 0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the recommendation API (production).")
    parser.add_argument("--host", default=None, help="default: the host of RECSYS_BIND")
    parser.add_argument("--port", type=int, default=None, help="default: the port of RECSYS_BIND")
    return parser.parse_args(argv)


def refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def listening_address(
    bind: tuple[str, ...], host: str | None, port: int | None
) -> tuple[str, int] | Path:
    """Return the one address to listen on: (host, port), or a Unix socket's path.

    Raises:
        ValueError: Several addresses, or a handed-over descriptor (granian binds one address).
    """
    from gunicorn.util import parse_address

    if host or port:
        default_host, default_port = "127.0.0.1", 8000
        if len(bind) == 1 and isinstance(parsed := parse_address(bind[0]), tuple):
            default_host, default_port = parsed
        return (host or default_host).strip("[]"), port or default_port
    if len(bind) != 1:
        raise ValueError(f"RECSYS_BIND: serve.py listens on one address, got {','.join(bind)!r}")
    parsed = parse_address(bind[0])
    if isinstance(parsed, tuple):
        return parsed[0].strip("[]"), parsed[1]
    if isinstance(parsed, str):
        return Path(parsed)
    raise ValueError("RECSYS_BIND: serve.py listens on HOST:PORT, [IPV6]:PORT or unix:PATH")


def format_address(address: tuple[str, int] | Path) -> str:
    if isinstance(address, Path):
        return f"unix:{address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def why_not_listen(host: str, port: int) -> str | None:
    """Return why host:port cannot be listened on, or None when it can.

    Taken, a name that resolves to nothing, an address of another machine:
    checked before granian starts, whose own socket would share a port
    another server holds.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers bind: a port whose last connections wait in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def why_not_listen_on_socket(path: Path) -> str | None:
    """Return why a Unix socket cannot be made at ``path``, or None when it can.

    Its folder missing or read-only, a file in its place or a server
    listening there: granian would stop with a traceback. The socket a
    stopped server left behind is removed, as gunicorn does. A probe socket
    is bound there and removed.
    """
    if path.exists():
        if not path.is_socket():
            return "a file that is not a socket is in its place"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(str(path)) == 0:
                return "another server listens there"
        path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(str(path))
        except OSError as exc:
            return exc.strerror or str(exc)
    path.unlink(missing_ok=True)
    return None


# -- the workers ---------------------------------------------------------------------


def granian_server(address: tuple[str, int] | Path, settings: Settings, app: Any) -> Any:
    """Return granian's server over the preloaded app (WSGI, forked workers)."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    where: dict[str, Any] = (
        {"uds": address}
        if isinstance(address, Path)
        else {"address": address[0], "port": address[1]}
    )
    return Server(
        "app:create_app",  # shown in the process titles; the workers run the preloaded app
        interface=Interfaces.WSGI,
        workers=settings.server.workers,
        blocking_threads=settings.server.threads,
        http1_settings=HTTP1Settings(max_buffer_size=MAX_HEADER_BYTES),
        respawn_failed_workers=True,
        respawn_interval=RESTART_OVERLAP_SECONDS,
        workers_kill_timeout=STOP_SECONDS,
        log_level=LogLevels.info,
        # granian's messages on standard error: standard output is the access log's
        # (JsonAccessLog, around the app; granian's own is off).
        log_dictconfig=GRANIAN_LOG_CONFIG,
        **where,
    )


GRANIAN_LOG_CONFIG = {
    "handlers": {
        "console": {
            "formatter": "generic",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {"formatter": "access", "class": "logging.StreamHandler"},
    },
}


def prepare_before_workers(app: Any) -> None:
    """In the main process: the start-up work once, the newest model loaded, no connection kept.

    Raises:
        RecsysError: A data file or setting the start-up work cannot use.
    """
    runtime = app.extensions["recsys.runtime"]
    if runtime.init_before_workers():
        runtime.load_live_model()
        # Everything so far goes to a generation the collector never scans: a
        # collection in a worker then writes nothing into the inherited
        # objects, so their pages stay shared instead of being copied.
        gc.freeze()
    # Two processes must never share a pooled connection: each worker opens its own.
    runtime.store.dispose()


def worker_app(app: Any, metrics_dir: Path) -> Any:
    """In each new worker: forget dead workers' gauges, start the threads, return the app."""
    from prometheus_client import multiprocess

    for series in metrics_dir.glob("gauge_live*_*.db"):
        pid = int(series.stem.rsplit("_", 1)[1])
        if not pid_alive(pid):
            multiprocess.mark_process_dead(pid, str(metrics_dir))
    app.extensions["recsys.runtime"].start_threads()
    return JsonAccessLog(app)


def notify_systemd_ready() -> None:
    """Tell systemd (``Type=notify``) the service is ready: init done, model loaded, bound."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket's name
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.sendto(b"READY=1", address)


def pid_alive(pid: int) -> bool:
    """Return whether a process runs; a killed worker its parent has not reaped yet does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0: when a replacement starts before the
    # server reaps the dead worker, /proc says it is dead ("Z" after the name).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


# -- metrics shared by the workers ---------------------------------------------------


# -- the access log: one JSON object per line ------------------------------------

# A logged path or query longer than this is cut (with "..."): every line then
# stays under the 4 KiB a pipe writes whole, so lines of concurrent workers and
# threads never interleave.
MAX_LOGGED_CHARS = 1000


class JsonAccessLog:
    """WSGI middleware: one JSON line per request on standard output, written in one call.

    Measured under load, granian's own access log (Python's logging behind one
    lock per process) took a fifth of the workers' Python time; this takes a
    few microseconds. A body of known length is joined and handed over whole
    (granian then sends it in one piece instead of iterating); a streamed
    one passes through and is logged when it ends. Logged headers are
    X-Forwarded-For and X-Request-ID (the answer's: the caller's or the one
    the service made), never X-API-Key.

    Args:
        app: The WSGI app.
        fd: Where lines go (standard output).
    """

    def __init__(self, app: Any, fd: int = 1):
        self.app = app
        self.fd = fd

    def __call__(self, environ: dict, start_response: Any) -> Any:
        started, clock = time.time(), time.perf_counter()
        answer: list = [500, ()]

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            answer[:] = [int(status[:3]), headers]
            return start_response(status, headers, exc_info)

        try:
            chunks = self.app(environ, start)
        except BaseException:
            self.write(environ, started, clock, 500, (), 0)
            raise
        headers = dict(answer[1])
        if "Content-Length" not in headers:
            return _LoggedStream(
                chunks, lambda size: self.write(environ, started, clock, *answer, size)
            )
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self.write(environ, started, clock, answer[0], answer[1], len(body))
        return [body]

    def write(self, environ: dict, started: float, clock: float, status: int, headers, size: int):
        os.write(
            self.fd,
            access_line(environ, started, time.perf_counter() - clock, status, headers, size),
        )


class _LoggedStream:
    """A streamed body that calls ``done(bytes sent)`` when the server closes it."""

    def __init__(self, chunks: Any, done: Any):
        self.chunks, self.done, self.size = chunks, done, 0

    def __iter__(self):
        for chunk in self.chunks:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self.chunks, "close"):
                self.chunks.close()
        finally:
            self.done(self.size)


def access_line(
    environ: dict, started: float, seconds: float, status: int, headers, size: int
) -> bytes:
    """Return one request's access-log line: a JSON object, every text escaped, and a newline."""
    request_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
    record = {
        "time": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
        "method": environ.get("REQUEST_METHOD", "-"),
        "path": _cut(environ.get("PATH_INFO", "")),
        "query": _cut(environ.get("QUERY_STRING", "")),
        "status": status,
        "duration": round(seconds, 6),
        "bytes": size,
        "remote_addr": environ.get("REMOTE_ADDR", "-"),
        "forwarded_for": _cut(environ.get("HTTP_X_FORWARDED_FOR", "-")),
        "request_id": request_id or environ.get("HTTP_X_REQUEST_ID", "-")[:MAX_LOGGED_CHARS],
        "pid": os.getpid(),  # which worker answered
    }
    # orjson: a tenth of the standard library's time; it escapes control
    # characters and writes other text as UTF-8, so a line stays one line.
    return orjson.dumps(record) + b"\n"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_CHARS else text[: MAX_LOGGED_CHARS - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
