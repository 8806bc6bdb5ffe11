"""Other WSGI servers over the production app, started by bench/server_comparison.py only.

Usage: python bench/other_servers.py {uwsgi,socketify}
       (needs ``pip install -r requirements-bench-servers.txt``; reads RECSYS_BIND,
       RECSYS_WORKERS and RECSYS_THREADS as serve.py does)

The app is prepared as serve.py prepares it for granian: the start-up work
and the newest model loaded once, in the main process, before the workers
are forked (``serve.prepare_before_workers``); each worker then runs what
serve.py's workers run (``serve.worker_app``: its refresh threads, the JSON
access log), from its first request. Only the HTTP server differs:

- uWSGI (C): its master forks ``RECSYS_WORKERS`` processes of
  ``RECSYS_THREADS`` threads each after importing this module
  (``--http11-socket``: keep-alive, no separate router process), and replaces a worker
  that dies;
- socketify (uWebSockets, C++): one event loop per process, so the app runs
  on the loop's thread and the thread setting does not apply; its ``run``
  forks the workers but does not watch them, so a killed worker is not
  replaced, and stopping its first process leaves the others running: the
  benchmark stops the whole process group.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recsys.config import SettingsError  # noqa: E402
from serve import MAX_HEADER_BYTES  # noqa: E402

SERVER_NAMES = ("uwsgi", "socketify")
# pip installs uWSGI's binary beside this interpreter.
UWSGI_BINARY = Path(sys.executable).with_name("uwsgi")


def uwsgi_command(host: str, port: int, workers: int, threads: int) -> list[str]:
    """Return uWSGI's command over this module's ``application``."""
    return [
        str(UWSGI_BINARY),
        "--http11-socket",  # HTTP/1.1 with keep-alive, as the other servers
        f"{host}:{port}",
        "--pythonpath",
        str(ROOT / "bench"),
        "--module",
        "other_servers:application",
        "--master",
        "--processes",
        str(workers),
        "--threads",
        str(threads),
        "--buffer-size",  # the largest request head, granian's limit in serve.py
        str(MAX_HEADER_BYTES),
        "--need-app",
        "--die-on-term",  # SIGTERM stops uWSGI 2.0 (its default is a reload)
        "--disable-logging",  # its own request log: the app writes the JSON one
        "--single-interpreter",
        "--listen",
        "1024",  # granian's backlog (uWSGI's default is 100)
    ]


def _listening(environ: dict[str, str]) -> tuple[str, int, int, int]:
    """Return (host, port, workers, threads) from the settings, as serve.py reads them."""
    from recsys.config import Settings
    from serve import listening_address

    settings = Settings.load(environ, None, "instance")
    address = listening_address(settings.server.bind, None, None)
    if not isinstance(address, tuple):
        raise ValueError(f"RECSYS_BIND: the compared servers listen on HOST:PORT, got {address}")
    return address[0], address[1], settings.server.workers, settings.server.threads


class _PreparedApp:
    """The app prepared once before the fork; each process wraps it at its first request."""

    def __init__(self) -> None:
        from recsys.config.metrics_dir import prepare_metrics_dir

        # Before the app is imported: prometheus-client reads its directory at import.
        self.metrics_dir = prepare_metrics_dir()
        from app import create_app
        from serve import prepare_before_workers

        self.app = create_app()
        prepare_before_workers(self.app)
        self._lock = threading.Lock()
        self._served: Any = None
        self._pid = 0  # the process ``_served`` was made in (0: none yet)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        served = self._served if self._pid == os.getpid() else self._worker()
        return served(environ, start_response)

    def _worker(self) -> Any:
        from serve import worker_app

        with self._lock:
            if self._pid != os.getpid():
                self._served = worker_app(self.app, self.metrics_dir)
                self._pid = os.getpid()
            return self._served


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SERVER_NAMES:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        host, port, workers, threads = _listening(dict(os.environ))
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if argv[0] == "uwsgi":
        command = uwsgi_command(host, port, workers, threads)
        os.execv(command[0], command)
    from socketify import WSGI, AppListenOptions

    WSGI(_PreparedApp()).listen(AppListenOptions(port=port, host=host)).run(workers=workers)
    return 0


# uWSGI imports this module by name, in its master before forking the workers;
# its own module ``uwsgi`` exists only inside it, imported before this one.
if __name__ != "__main__" and "uwsgi" in sys.modules:
    application = _PreparedApp()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
