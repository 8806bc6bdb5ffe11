"""Real servers for the tests: started as production starts them, asked, killed.

``Granian`` runs the service as production does (``python serve.py``: the
start-up work and the model load once in the main process, then granian's
forked workers) on a free port of 127.0.0.1, in a process group of its own
that ``stop`` kills whole. ``Gunicorn`` runs the former production server
(gunicorn reading gunicorn.conf.py, gthread workers, the app preloaded in the
master) the same way. Their access logs (the same JSON lines) say which
worker answered each request. ``http_request`` asks any server on loopback,
one of these or the nginx in front of several (tests/nginx_balancer.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The gunicorn of the environment running the tests.
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# No request in these tests may take longer; a hang fails instead of blocking.
HTTP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), JSON body, and how long it took."""

    status: int
    headers: dict[str, str]
    body: Any
    seconds: float

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    def summary(self) -> tuple[int, str | None, bool]:
        """Return (status, error code, whether Retry-After holds a number of seconds)."""
        return self.status, self.error_code, self.headers.get("retry-after", "").isdigit()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    """Send one request to 127.0.0.1:port on a new connection and return the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    data = None if body is None else json.dumps(body).encode()
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    seconds = time.monotonic() - started
    is_json = (response.getheader("Content-Type") or "").startswith("application/json")
    return Answer(
        response.status,
        {name.lower(): value for name, value in response.getheaders()},
        json.loads(raw) if is_json else None,
        seconds,
    )


def service_env(database_url: str, model_dir: Path, **settings: Any) -> dict[str, str]:
    """Return the environment of a service process: ours without any RECSYS_ setting, plus these.

    Args:
        database_url: RECSYS_DATABASE_URL.
        model_dir: RECSYS_MODEL_DIR.
        settings: More settings by name (``WORKERS=4`` sets RECSYS_WORKERS);
            rate limits are off unless set here.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RECSYS_") and name not in ("DATABASE_URL", "PORT")
    }
    env["RECSYS_DATABASE_URL"] = database_url
    env["RECSYS_MODEL_DIR"] = str(model_dir)
    # These tests send bursts on purpose; rate limits have tests of their own.
    for limit in ("RATE_LIMIT", "RATE_LIMIT_INGEST", "RATE_LIMIT_ADDRESS"):
        env[f"RECSYS_{limit}"] = ""
    env.update({f"RECSYS_{name}": str(value) for name, value in settings.items()})
    return env


class ServerProcess:
    """A server's main process and its workers, in their own process group, on a free port.

    Args:
        env: The service's environment (``service_env``).
        logs: A new directory for the error and access logs.
    """

    name = "server"

    def __init__(self, env: dict[str, str], logs: Path):
        self.port = free_port()
        self.workers = int(env["RECSYS_WORKERS"])
        logs.mkdir(parents=True)
        self.error_log = logs / f"{self.name}.log"
        self.access_log = logs / "access.log"
        self.process = self.launch({**env, "RECSYS_BIND": f"127.0.0.1:{self.port}"})

    def launch(self, env: dict[str, str]) -> subprocess.Popen:
        """Start the server's main process with this environment."""
        raise NotImplementedError

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        """Send one request on a new connection and return the answer."""
        return http_request(self.port, method, path, body)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def requests_at_once(self, requests: list[tuple[str, str, Any]]) -> list[Answer]:
        """Send the requests concurrently, each on its own connection; answers in order."""
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(lambda r: self.request(*r), requests))

    def wait_until(
        self, check: Callable[[], bool], within: float, what: str, consecutive: int = 1
    ) -> float:
        """Poll until ``check`` holds ``consecutive`` times in a row; return the seconds taken.

        A server not listening yet counts as "not yet"; a master that exits
        or a deadline that passes fails the test with the server's log.
        """
        started = time.monotonic()
        streak = 0
        while True:
            try:
                streak = streak + 1 if check() else 0
            except (OSError, http.client.HTTPException):
                streak = 0
            if streak >= consecutive:
                return time.monotonic() - started
            assert self.process.poll() is None, f"{self.name} exited before {what}:\n{self.log()}"
            assert time.monotonic() - started < within, (
                f"not {what} within {within} s:\n{self.log()[-4000:]}"
            )
            time.sleep(0.1)

    def wait_ready(self, within: float = 60) -> float:
        """Wait until every worker is forked and /readyz answers 200 (model live, database up)."""
        return self.wait_until(
            lambda: self.all_workers_forked() and self.get("/readyz").status == 200,
            within,
            "ready",
        )

    def wait_live(self, within: float = 60) -> float:
        """Wait until every worker is forked and /healthz answers 200."""
        return self.wait_until(
            lambda: self.all_workers_forked() and self.get("/healthz").status == 200,
            within,
            "live",
        )

    def all_workers_forked(self) -> bool:
        return len(self.worker_pids()) == self.workers

    def worker_pids(self) -> set[int]:
        """Return the pids of the master's children (its workers)."""
        pids: set[int] = set()
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread that just ended
                pids.update(int(pid) for pid in children.read_text().split())
        return pids

    def access_entries(self) -> list[dict[str, Any]]:
        """Return the access log's records (one JSON object per line)."""
        text = self.access_log.read_text()
        # The server may be writing the last line right now: read complete lines only.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def ask_every_worker(self, path: str, within: float = 20) -> list[Answer]:
        """GET ``path`` on new connections until every worker has answered; return the answers."""
        workers = self.worker_pids()
        already_logged = len(self.access_entries())
        answers = []
        deadline = time.monotonic() + within
        while True:
            answers.append(self.get(path))
            answered = {entry["pid"] for entry in self.access_entries()[already_logged:]}
            if workers <= answered:
                return answers
            assert time.monotonic() < deadline, (
                f"workers {sorted(workers - answered)} did not answer {path} within {within} s"
            )

    def answered_by(self, pid: int, path: str) -> list[int]:
        """Return the statuses worker ``pid`` answered for ``path``, from the access log."""
        return [
            entry["status"]
            for entry in self.access_entries()
            if entry["pid"] == pid and entry["path"] == path
        ]

    def log(self) -> str:
        return self.error_log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the master and its workers at once.

        No test here checks shutdown, and a graceful one costs seconds of
        interpreter teardown per worker.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


class Granian(ServerProcess):
    """The production server: ``python serve.py`` (granian's workers), access log on stdout."""

    name = "granian"
    # What the main process logs as it starts each worker.
    worker_start_line = "Spawning worker"

    def launch(self, env: dict[str, str]) -> subprocess.Popen:
        with open(self.access_log, "wb") as access, open(self.error_log, "wb") as log:
            return subprocess.Popen(
                [sys.executable, "serve.py"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=access,
                stderr=log,
                start_new_session=True,
            )


class Gunicorn(ServerProcess):
    """gunicorn with gunicorn.conf.py: the former production server, kept as the reference."""

    name = "gunicorn"
    worker_start_line = "Booting worker"

    def launch(self, env: dict[str, str]) -> subprocess.Popen:
        command = [
            GUNICORN,
            "app:create_app()",
            # Servers of parallel test runs must not share ~/.gunicorn/gunicorn.ctl.
            "--no-control-socket",
            "--access-logfile",
            str(self.access_log),
        ]
        with open(self.error_log, "wb") as log:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


# What the fault and topology tests start: the production server.
Production = Granian


class Servers:
    """The servers one test starts (2 workers unless told), over one model directory.

    Args:
        tmp_path: The test's directory: models, and each server's logs.
        kind: Which server (default: the production one).
    """

    def __init__(self, tmp_path: Path, kind: type[ServerProcess] = Granian):
        self.tmp_path = tmp_path
        self.kind = kind
        self.started: list[ServerProcess] = []

    def start(self, database_url: str, **settings: Any) -> ServerProcess:
        env = service_env(database_url, self.tmp_path / "models", **{"WORKERS": 2, **settings})
        server = self.kind(env, self.tmp_path / f"server-{len(self.started)}")
        self.started.append(server)
        return server

    def stop(self) -> None:
        for server in self.started:
            server.stop()
