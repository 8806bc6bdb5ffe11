"""The production server (gunicorn.conf.py): one model load for all workers, a JSON access log.

The master loads the newest model before it forks, so its workers answer
with it without loading it again (and share its memory pages); each worker
starts its own refresh thread after the fork, which looks at once for a
version published since. The access log holds one JSON object per line,
whatever a request's path holds, and never the API key.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from recsys.config import Settings, SettingsError, settings_table
from recsys.store.engine import StatementDeadline
from tests.builders import runtime_of
from tests.servers import GUNICORN, ROOT, Gunicorn, Servers, http_request, service_env

GUNICORN_SETTINGS = runpy.run_path(str(ROOT / "gunicorn.conf.py"))

# What gunicorn's logger hands the format for one request (see glogging.Logger.atoms).
ATOMS = {
    "t": "2026-11-30T07:14:00.123+00:00",
    "m": "GET",
    "U": "/recommend",
    "q": "user_id=1&n=3",
    "s": "200",
    "L": "0.001234",
    "B": 321,
    "h": "127.0.0.1",
    "pid": 4242,
    "{x-forwarded-for}i": "203.0.113.7",
    "{x-request-id}i": "3f2a",
    "{x-api-key}i": "secret-key-123",
}


def access_line(**atoms) -> str:
    """Return the access-log line the shipped logger writes for these atoms."""
    safe = GUNICORN_SETTINGS["JsonSafeAtoms"]({**ATOMS, **atoms})
    return GUNICORN_SETTINGS["access_log_format"] % safe


# -- the access log's format ---------------------------------------------------------


def test_an_access_log_line_is_a_json_object_with_the_request_and_its_answer():
    assert json.loads(access_line()) == {
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
        "pid": 4242,
    }


@pytest.mark.parametrize(
    "path",
    ['/"quoted"', "/back\\slash", "/line\nfeed", "/tab\tand\x00nul", "/caf\u00e9", "/\\u0041"],
    ids=["quote", "backslash", "line-feed", "control", "non-ascii", "escape-lookalike"],
)
def test_a_path_of_any_characters_stays_on_one_line_and_reads_back_unchanged(path):
    line = access_line(U=path)
    assert "\n" not in line
    assert json.loads(line)["path"] == path


def test_the_api_key_header_is_never_in_the_access_log():
    assert "secret-key-123" not in access_line()


def test_missing_proxy_headers_are_logged_as_a_dash():
    atoms = {k: v for k, v in ATOMS.items() if not k.startswith("{")}
    line = GUNICORN_SETTINGS["access_log_format"] % GUNICORN_SETTINGS["JsonSafeAtoms"](atoms)
    record = json.loads(line)
    assert (record["forwarded_for"], record["request_id"]) == ("-", "-")


# -- gunicorn's own settings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RECSYS_WORKERS": "two"}, "RECSYS_WORKERS: expected an integer from 1 up, got 'two'"),
        ({"RECSYS_WORKERS": "0"}, "RECSYS_WORKERS: expected an integer from 1 up, got '0'"),
        ({"RECSYS_THREADS": "0"}, "RECSYS_THREADS: expected an integer from 1 up, got '0'"),
        ({"RECSYS_THREADS": "1.5"}, "RECSYS_THREADS: expected an integer from 1 up, got '1.5'"),
        ({"RECSYS_BIND": ""}, "RECSYS_BIND: expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"),
        ({"RECSYS_BIND": "127.0.0.1:http"}, "RECSYS_BIND: expected HOST:PORT"),
        ({"RECSYS_BIND": "127.0.0.1:0"}, "RECSYS_BIND: expected HOST:PORT"),
        ({"RECSYS_BIND": "127.0.0.1:65536"}, "RECSYS_BIND: expected HOST:PORT"),
        ({"RECSYS_BIND": "127.0.0.1:8000,"}, "RECSYS_BIND: expected HOST:PORT"),
        ({"RECSYS_BIND": "fd://three"}, "RECSYS_BIND: expected HOST:PORT"),
    ],
)
def test_an_unusable_gunicorn_setting_names_the_variable(tmp_path, environ, message):
    with pytest.raises(SettingsError) as raised:
        Settings.load(environ, None, tmp_path)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8000", ["127.0.0.1:8000"]),
        ("[::1]:8000", ["[::1]:8000"]),
        ("unix:/run/recsys.sock", ["unix:/run/recsys.sock"]),
        ("fd://3", ["fd://3"]),
        ("127.0.0.1:8000, unix:/run/recsys.sock", ["127.0.0.1:8000", "unix:/run/recsys.sock"]),
    ],
)
def test_the_configuration_binds_every_address_gunicorn_accepts(
    monkeypatch, tmp_path, bind, expected
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("RECSYS_BIND", bind)
    monkeypatch.setenv("RECSYS_WORKERS", "3")
    monkeypatch.setenv("RECSYS_THREADS", "4")
    configured = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (configured["bind"], configured["workers"], configured["threads"]) == (expected, 3, 4)


def test_the_configuration_table_lists_gunicorns_settings_with_their_defaults():
    rows = {row.split(" | ")[0]: row.split(" | ")[1] for row in settings_table().splitlines()}
    assert rows["| `RECSYS_BIND`"] == "`127.0.0.1:8000`"
    assert rows["| `RECSYS_WORKERS`"] == "`2`"
    assert rows["| `RECSYS_THREADS`"] == "`8`"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("WORKERS", "two", "error: RECSYS_WORKERS: expected an integer from 1 up, got 'two'"),
        ("WORKERS", "0", "error: RECSYS_WORKERS: expected an integer from 1 up, got '0'"),
        ("THREADS", "many", "error: RECSYS_THREADS: expected an integer from 1 up, got 'many'"),
        ("BIND", "127.0.0.1:port", "error: RECSYS_BIND: expected HOST:PORT"),
    ],
)
def test_gunicorn_stops_on_an_unusable_setting_with_one_line_and_status_2(
    sqlite_url, tmp_path, setting, value, message
):
    # 0 workers used to start a master that served nothing and said nothing.
    try:
        started = subprocess.run(
            [GUNICORN, "app:create_app()", "--no-control-socket"],
            cwd=ROOT,
            env=service_env(sqlite_url, tmp_path / "models", **{setting: value}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"gunicorn still running after 60 s: {hung.stderr!r}")
    assert started.returncode == 2, started.stderr[-2000:]
    assert started.stderr.strip().splitlines() == [started.stderr.strip()]
    assert started.stderr.startswith(message)


@pytest.mark.slow
def test_a_log_init_cannot_read_stops_gunicorn_with_one_line(sqlite_url, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,product_clicked,purchased\n1,2,maybe\n")
    started = subprocess.run(
        [GUNICORN, "app:create_app()", "--no-control-socket"],
        cwd=ROOT,
        env=service_env(sqlite_url, tmp_path / "models", DATA_PATH=str(bad)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2, started.stderr[-2000:]
    assert "Traceback" not in started.stderr
    (line,) = [line for line in started.stderr.splitlines() if line.startswith("error:")]
    assert line == f"error: {bad}, line 2: purchased must be 0 or 1, got 'maybe'"


# -- the runtime across a fork -----------------------------------------------------


def test_a_process_whose_model_is_already_live_serves_without_loading_it_again(
    app_factory, monkeypatch
):
    app = app_factory()
    runtime = runtime_of(app)
    runtime.load_live_model()  # what the gunicorn master does before forking

    def no_second_load(*args, **kwargs):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(runtime.registry, "load_latest", no_second_load)
    answer = app.test_client().get("/recommend?user_id=1")
    assert answer.status_code == 200
    assert answer.json["model_version"].startswith("v00001-")


def test_a_process_starts_its_background_threads_once(app_factory):
    runtime = runtime_of(app_factory())
    before = set(threading.enumerate())
    runtime.start_threads()  # gunicorn's post_worker_init
    runtime.start()  # the first request
    runtime.start_threads()
    started = [t.name for t in set(threading.enumerate()) - before]
    # auto-retrain: retraining is on by default (every 10,000 events or a day).
    assert sorted(started) == [
        "auto-retrain",
        "experiment-refresh",
        "exposure-log",
        "model-refresh",
    ]


def test_a_forked_child_starts_with_a_free_statement_deadline():
    deadline = StatementDeadline(1.0)
    # As if the parent's watcher thread held the lock at the moment of the fork.
    with deadline._lock:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            free = deadline._lock.acquire(timeout=2)
            os._exit(0 if free and deadline._thread is None and not deadline._deadlines else 1)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- a real server -------------------------------------------------------------------


@pytest.fixture
def serve(sqlite_url, tmp_path):
    """Return a function that starts gunicorn on an SQLite store; every server is killed after."""
    servers = Servers(tmp_path, Gunicorn)
    yield functools.partial(servers.start, sqlite_url)
    servers.stop()


def listening_sockets(port: int) -> int:
    """Return how many sockets listen on a TCP port of 127.0.0.1 (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == local and row[3] == "0A")  # 0A: LISTEN


@pytest.mark.slow
def test_each_worker_logs_the_address_it_listens_on_once_bound(serve):
    server = serve(WORKERS=2)
    server.wait_live()
    server.wait_until(
        lambda: server.log().count("Listening at: http") == 2, within=20, what="both logged"
    )
    log = server.log()
    for pid in server.worker_pids():
        booted = log.index(f"Booting worker with pid: {pid}")
        listening = log.index(f"Listening at: http://127.0.0.1:{server.port} ({pid})")
        assert booted < listening
    # The master binds nothing itself (a socket per worker): no line without an address.
    assert "Listening at:  (" not in log


@pytest.mark.slow
def test_kept_alive_connections_are_spread_over_the_workers(serve):
    # With one shared socket, the worker that woke first could take every
    # connection of a burst and keep it; each worker has a socket of its own.
    server = serve(WORKERS=2)
    server.wait_ready()
    server.wait_until(server.all_workers_forked, within=20, what="both workers forked")
    server.ask_every_worker("/healthz")
    assert listening_sockets(server.port) == 2
    # A query of its own: earlier requests' log lines may still be arriving.
    query = "user_id=1&n=7"
    connections = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=20) for _ in range(16)
    ]
    for _ in range(3):
        for connection in connections:
            connection.request("GET", f"/recommend?{query}")
            assert connection.getresponse().read()
    for connection in connections:
        connection.close()

    def ours() -> list[dict]:
        return [entry for entry in server.access_entries() if entry["query"] == query]

    server.wait_until(lambda: len(ours()) == 48, within=5, what="all logged")
    served = Counter(entry["pid"] for entry in ours())
    assert set(served) == server.worker_pids()
    # Each connection stays with the worker that accepted it: whole connections per worker.
    assert all(count % 3 == 0 for count in served.values())


def get_over_unix_socket(path: Path, target: str) -> int:
    """GET ``target`` on a new connection to a Unix socket; return the status."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(20)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = client.recv(64).decode()
    return int(head.split()[1])


@pytest.mark.slow
def test_every_worker_answers_on_a_unix_socket(sqlite_url, tmp_path):
    # A socket per worker would be a path each worker removes and binds again.
    sock_path, access_log = tmp_path / "recsys.sock", tmp_path / "access.log"
    env = service_env(sqlite_url, tmp_path / "models", BIND=f"unix:{sock_path}", WORKERS=2)
    command = [GUNICORN, "app:create_app()", "--no-control-socket", "--access-logfile"]
    process = subprocess.Popen(
        [*command, str(access_log)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        answered: set[int] = set()
        while len(answered) < 2:
            assert time.monotonic() < deadline, f"only workers {answered} answered"
            try:
                assert get_over_unix_socket(sock_path, "/healthz") == 200
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.2)  # not listening yet
                continue
            lines = access_log.read_text().splitlines() if access_log.exists() else []
            answered = {json.loads(line)["pid"] for line in lines if line.endswith("}")}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_a_server_refuses_a_port_another_one_listens_on(sqlite_url, tmp_path, reuse_port):
    # Another gunicorn's workers listen with SO_REUSEPORT: ours would join them.
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = subprocess.run(
            [GUNICORN, "app:create_app()", "--no-control-socket"],
            cwd=ROOT,
            env=service_env(sqlite_url, tmp_path / "models", BIND=f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert started.returncode == 2, started.stderr[-2000:]
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in started.stderr


@pytest.mark.slow
def test_a_replacement_worker_serves_a_version_published_after_its_master_loaded(
    serve, tmp_path, sqlite_url, record_property
):
    # A refresh period far longer than the test: only the look at start can find it.
    server = serve(WORKERS=1, MODEL_REFRESH_SECONDS=600)
    server.wait_ready()
    first = server.get("/model").body["version"]
    trained = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "train"],
        cwd=ROOT,
        env=service_env(sqlite_url, tmp_path / "models"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    assert server.get("/model").body["version"] == first  # the running worker has not looked
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)
    seconds = server.wait_until(
        lambda: server.get("/model").body["version"] != first, within=20, what="caught up"
    )
    record_property("seconds_to_newer_version", round(seconds, 2))
    assert server.get("/model").body["version"].startswith("v00002-")


@pytest.mark.slow
def test_the_access_log_is_one_json_object_per_request_without_the_api_key(serve):
    server = serve(WORKERS=1)
    server.wait_ready()
    answers = [
        http_request(server.port, "GET", "/recommend?user_id=1", headers={"X-API-Key": "k-9"}),
        http_request(server.port, "GET", "/%22a%5Cb%0Ac?user_id=2"),
    ]

    def logged() -> list[dict]:
        return [r for r in server.access_entries() if r["path"] != "/readyz"]

    # gunicorn writes the line just after the answer.
    server.wait_until(lambda: len(logged()) == 2, within=5, what="both requests logged")
    requests = logged()
    text = server.access_log.read_text()
    assert [a.status for a in answers] == [200, 404]
    # Sorted: each of the worker's threads writes its own line, in any order.
    assert sorted((r["method"], r["path"], r["query"], r["status"]) for r in requests) == [
        ("GET", '/"a\\b\nc', "user_id=2", 404),
        ("GET", "/recommend", "user_id=1", 200),
    ]
    assert all(r["bytes"] > 0 and r["duration"] >= 0 for r in requests)
    assert "k-9" not in text
