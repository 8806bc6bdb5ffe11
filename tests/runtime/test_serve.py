"""The production server (serve.py): granian's workers over an app prepared once.

The main process does the start-up work and loads the model before any
worker exists; the workers answer with it without loading it again. The
access log holds one JSON object per line, whatever a request's path holds,
and never the API key. A public address without keys, or a taken port,
stops the server with one line; SIGHUP replaces the workers without losing
an acknowledged event.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import serve
from recsys.store.events import EventStore
from tests.servers import ROOT, Granian, Gunicorn, Servers, http_request, service_env

# One request as the server hands it to the app, and what the app answered.
ENVIRON = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/recommend",
    "QUERY_STRING": "user_id=1&n=3",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    "HTTP_X_REQUEST_ID": "3f2a",
    "HTTP_X_API_KEY": "secret-key-123",
}
HEADERS = [("Content-Type", "application/json"), ("X-Request-ID", "3f2a")]
STARTED = 1_796_022_840.123  # 2026-11-30T07:14:00.123Z


def access_record(environ=None, headers=HEADERS, status=200, size=321) -> dict:
    line = serve.access_line(environ or ENVIRON, STARTED, 0.001234, status, headers, size)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return json.loads(line)


# -- the access log's format ---------------------------------------------------------


def test_an_access_log_line_is_a_json_object_with_the_request_and_its_answer():
    assert access_record() == {
        "time": "2026-11-30T07:14:00.123+00:00",
        "method": "GET",
        "path": "/recommend",
        "query": "user_id=1&n=3",
        "status": 200,
        "duration": 0.001234,
        "bytes": 321,
        "remote_addr": "127.0.0.1",
        "forwarded_for": "203.0.113.7",
        "request_id": "3f2a",
        "pid": os.getpid(),
    }


@pytest.mark.parametrize(
    "path",
    ['/"quoted"', "/back\\slash", "/line\nfeed", "/tab\tand\x00nul", "/caf\u00e9", "/\\u0041"],
    ids=["quote", "backslash", "line-feed", "control", "non-ascii", "escape-lookalike"],
)
def test_a_path_of_any_characters_stays_on_one_line_and_reads_back_unchanged(path):
    assert access_record({**ENVIRON, "PATH_INFO": path})["path"] == path


def test_a_long_path_is_cut_so_that_a_line_is_written_whole():
    record = access_record({**ENVIRON, "PATH_INFO": "/" + "a" * 20_000})
    assert len(record["path"]) == serve.MAX_LOGGED_CHARS and record["path"].endswith("...")


def test_the_api_key_header_is_never_in_the_access_log():
    line = serve.access_line(ENVIRON, STARTED, 0.001, 200, HEADERS, 1)
    assert b"secret-key-123" not in line


def test_the_logged_request_id_is_the_answers_one():
    # The service makes an id when the caller sends none: the line names that one.
    environ = {k: v for k, v in ENVIRON.items() if k != "HTTP_X_REQUEST_ID"}
    assert access_record(environ, headers=[("X-Request-ID", "made-1")])["request_id"] == "made-1"


def test_missing_proxy_headers_are_logged_as_a_dash():
    environ = {k: v for k, v in ENVIRON.items() if not k.startswith("HTTP_X_")}
    record = access_record(environ, headers=[])
    assert (record["forwarded_for"], record["request_id"]) == ("-", "-")


def test_the_middleware_hands_a_body_of_known_length_over_whole(tmp_path):
    def app(environ, start_response):
        start_response("201 CREATED", [("Content-Length", "5"), ("X-Request-ID", "r")])
        return iter([b"ab", b"cde"])

    log = tmp_path / "access.log"
    with open(log, "wb") as out:
        body = serve.JsonAccessLog(app, out.fileno())(dict(ENVIRON), lambda *a: None)
    assert body == [b"abcde"]
    record = json.loads(log.read_text())
    assert (record["status"], record["bytes"], record["request_id"]) == (201, 5, "r")


def test_a_streamed_body_is_logged_when_the_server_closes_it(tmp_path):
    def app(environ, start_response):
        start_response("200 OK", [])
        return iter([b"ab", b"cde"])

    log = tmp_path / "access.log"
    with open(log, "wb") as out:
        body = serve.JsonAccessLog(app, out.fileno())(dict(ENVIRON), lambda *a: None)
        assert log.read_text() == ""  # not sent yet
        assert b"".join(body) == b"abcde"
        body.close()
    assert json.loads(log.read_text())["bytes"] == 5


# -- where it listens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "host", "port", "expected"),
    [
        (("127.0.0.1:8000",), None, None, ("127.0.0.1", 8000)),
        (("0.0.0.0:9000",), None, 8123, ("0.0.0.0", 8123)),
        (("127.0.0.1:8000",), "0.0.0.0", None, ("0.0.0.0", 8000)),
        (("[::1]:8000",), None, None, ("::1", 8000)),
        (("unix:/run/recsys.sock",), None, None, Path("/run/recsys.sock")),
        (("unix:/run/recsys.sock",), None, 8123, ("127.0.0.1", 8123)),
    ],
)
def test_the_address_comes_from_the_bind_setting_or_the_arguments(bind, host, port, expected):
    assert serve.listening_address(bind, host, port) == expected


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        (("127.0.0.1:8000", "127.0.0.1:8001"), "serve.py listens on one address"),
        (("fd://3",), "serve.py listens on HOST:PORT, [IPV6]:PORT or unix:PATH"),
    ],
)
def test_an_address_granian_cannot_bind_is_refused_by_name(bind, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        serve.listening_address(bind, None, None)


def test_a_unix_socket_in_a_missing_folder_or_over_a_file_is_refused_by_reason(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert serve.why_not_listen_on_socket(tmp_path / "missing" / "s.sock") == (
        "No such file or directory"
    )
    assert serve.why_not_listen_on_socket(tmp_path / "a-file") == (
        "a file that is not a socket is in its place"
    )


def test_a_unix_socket_a_server_listens_on_is_refused_and_a_stopped_ones_is_removed(tmp_path):
    live, stale = tmp_path / "live.sock", tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as listening, socket.socket(socket.AF_UNIX) as left:
        listening.bind(str(live))
        listening.listen()
        left.bind(str(stale))  # bound, never listening: what a stopped server leaves
        assert serve.why_not_listen_on_socket(live) == "another server listens there"
        assert serve.why_not_listen_on_socket(stale) is None
    assert live.exists() and not stale.exists()
    assert serve.why_not_listen_on_socket(tmp_path / "new.sock") is None
    assert not (tmp_path / "new.sock").exists(), "the probe leaves nothing behind"


# -- a real server -------------------------------------------------------------------


def start_and_wait(command_env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "serve.py"],
        cwd=ROOT,
        env=command_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_server_refuses_a_port_another_one_listens_on(sqlite_url, tmp_path):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = service_env(sqlite_url, tmp_path / "models", BIND=f"127.0.0.1:{port}")
        started = start_and_wait(env)
    assert started.returncode == 2, started.stderr[-2000:]
    assert started.stderr.strip().endswith(
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.slow
def test_the_server_names_why_it_cannot_listen_on_an_address_of_another_machine(
    sqlite_url, tmp_path
):
    # 192.0.2.1 is reserved for documentation: never an address of this machine.
    env = service_env(sqlite_url, tmp_path / "models", BIND="192.0.2.1:8999", ALLOW_OPEN="1")
    started = start_and_wait(env)
    assert started.returncode == 2, started.stderr[-2000:]
    assert started.stderr.strip().endswith(
        "error: cannot listen on 192.0.2.1:8999: Cannot assign requested address"
    )


@pytest.mark.slow
def test_the_server_refuses_a_unix_socket_in_a_missing_folder_in_one_line(sqlite_url, tmp_path):
    socket_path = tmp_path / "missing" / "recsys.sock"
    env = service_env(sqlite_url, tmp_path / "models", BIND=f"unix:{socket_path}")
    started = start_and_wait(env)
    assert started.returncode == 2, started.stderr[-2000:]
    assert "Traceback" not in started.stderr
    assert started.stderr.strip().endswith(
        f"error: cannot listen on unix:{socket_path}: No such file or directory"
    )


@pytest.mark.slow
def test_the_server_refuses_a_public_address_without_keys(sqlite_url, tmp_path):
    env = service_env(sqlite_url, tmp_path / "models", BIND="0.0.0.0:8999")
    started = start_and_wait(env)
    assert started.returncode == 2, started.stderr[-2000:]
    assert "which is not a loopback address" in started.stderr
    assert not (tmp_path / "models").exists()  # refused before any start-up work


@pytest.fixture
def serve_one(sqlite_url, tmp_path):
    """Return a function that starts the production server on SQLite; all are killed after."""
    servers = Servers(tmp_path, Granian)
    yield functools.partial(servers.start, sqlite_url)
    servers.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", [Granian, Gunicorn], ids=lambda kind: kind.name)
def test_every_worker_answers_with_the_model_loaded_once_before_workers_started(
    kind, sqlite_url, tmp_path
):
    servers = Servers(tmp_path, kind)
    try:
        server = servers.start(sqlite_url)
        server.wait_ready()
        answers = server.ask_every_worker("/recommend?user_id=1")
        log = server.log()
        answered = {entry["pid"] for entry in server.access_entries()}
        workers = server.worker_pids()
    finally:
        servers.stop()
    assert {a.status for a in answers} == {200}
    assert len({a.body["model_version"] for a in answers}) == 1
    # One load in the whole log, written before any worker existed: the main process's.
    assert log.count("serving model v") == 1, log
    assert log.index("serving model v") < log.index(kind.worker_start_line)
    assert answered == workers and server.process.pid not in answered


@pytest.mark.slow
def test_the_access_log_is_one_json_object_per_request_without_the_api_key(serve_one):
    server = serve_one(WORKERS=1)
    server.wait_ready()
    answers = [
        http_request(
            server.port,
            "GET",
            "/recommend?user_id=1",
            headers={"X-API-Key": "k-9", "X-Request-ID": "r-1"},
        ),
        http_request(server.port, "GET", "/%22a%5Cb%0Ac?user_id=2"),
    ]

    def logged() -> list[dict]:
        return [r for r in server.access_entries() if r["path"] != "/readyz"]

    server.wait_until(lambda: len(logged()) == 2, within=5, what="both requests logged")
    assert [a.status for a in answers] == [200, 404]
    assert sorted((r["path"], r["query"], r["status"], r["request_id"]) for r in logged()) == [
        ('/"a\\b\nc', "user_id=2", 404, answers[1].headers["x-request-id"]),
        ("/recommend", "user_id=1", 200, "r-1"),
    ]
    assert "k-9" not in server.access_log.read_text()


@pytest.mark.slow
def test_a_graceful_restart_loses_no_acknowledged_event(serve_one, sqlite_url, record_property):
    server = serve_one(WORKERS=2)
    server.wait_ready()
    before = server.worker_pids()
    acknowledged: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def post() -> None:
        product = 0
        while not stop.is_set():
            product = product % 20 + 1
            try:
                answer = server.request(
                    "POST",
                    "/interactions",
                    {"user_id": 900_000 + len(acknowledged), "product_id": product, "purchased": 0},
                )
            except OSError as exc:  # refused while no worker listens: not acknowledged
                failures.append(type(exc).__name__)
                continue
            if answer.status == 201:
                acknowledged.append(900_000 + len(acknowledged))
            else:
                failures.append(str(answer.status))

    poster = threading.Thread(target=post)
    poster.start()
    try:
        time.sleep(1)
        server.process.send_signal(signal.SIGHUP)
        seconds = server.wait_until(
            lambda: len(server.worker_pids()) == 2 and not (server.worker_pids() & before),
            within=60,
            what="both workers replaced",
        )
        time.sleep(1)
    finally:
        stop.set()
        poster.join(timeout=30)
    record_property("seconds_to_replace_workers", round(seconds, 2))
    record_property("events_acknowledged", len(acknowledged))
    store = EventStore.from_url(sqlite_url)
    with store.engine.connect() as conn:
        stored = set(
            conn.execute(sa.text("SELECT user_id FROM interactions WHERE user_id >= 900000"))
            .scalars()
            .all()
        )
    store.dispose()
    assert acknowledged and set(acknowledged) <= stored
    assert failures == [], failures


def test_systemd_hears_ready_once_the_server_is_prepared(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        serve.notify_systemd_ready()
        assert systemd.recv(64) == b"READY=1"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "serve.py"),
        (["PORT=8123"], "serve.py --port 8123"),
        (["HOST=0.0.0.0", "PORT=8123"], "serve.py --host 0.0.0.0 --port 8123"),
    ],
)
def test_make_serve_starts_serve_py_where_it_is_told(args, expected):
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", "serve", *args],
        cwd=ROOT,
        # Under `make test` the parent make's variables would make this one a sub-make.
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("PORT", "HOST", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    command = shown.stdout.strip().splitlines()[-1].split("/python ", 1)[1]
    assert command.split() == expected.split()


@pytest.mark.slow
def test_every_worker_answers_on_a_unix_socket(sqlite_url, tmp_path):
    sock_path, access_log = tmp_path / "recsys.sock", tmp_path / "access.log"
    env = service_env(sqlite_url, tmp_path / "models", BIND=f"unix:{sock_path}", WORKERS=2)
    with open(access_log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "serve.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        answered: set[int] = set()
        while len(answered) < 2:
            assert time.monotonic() < deadline, f"only workers {answered} answered"
            assert process.poll() is None, "serve.py exited"
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(20)
                    client.connect(str(sock_path))
                    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    assert client.recv(64).split()[1] == b"200"
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.2)  # not listening yet
                continue
            lines = access_log.read_text().splitlines()
            answered = {json.loads(line)["pid"] for line in lines if line.endswith("}")}
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.slow
def test_a_log_init_cannot_read_stops_the_server_with_one_line(sqlite_url, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,product_clicked,purchased\n1,2,maybe\n")
    started = start_and_wait(service_env(sqlite_url, tmp_path / "models", DATA_PATH=str(bad)))
    assert started.returncode == 2, started.stderr[-2000:]
    (line,) = [line for line in started.stderr.splitlines() if line.startswith("error:")]
    assert str(bad) in line and "Traceback" not in started.stderr
