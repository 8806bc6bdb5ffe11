"""Fault injection: real servers meet a database that is down, hangs or is locked.

Each test starts the service as production does (``tests.servers.Production``:
``python serve.py``, granian's workers over the app preloaded once) on its
own port, store and artifact directory, and breaks one thing: PostgreSQL behind
``tests.tcp_proxy.TcpProxy`` refusing or swallowing connections, a worker
killed, clients sending their bodies a byte at a time (through nginx), an SQLite write lock
held by another process. It checks what callers see (status, JSON error,
Retry-After, how long) and that the service recovers without a restart.
Measured times are recorded as test properties (``--junitxml`` shows them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from recsys.store.events import EventStore
from tests.nginx_balancer import Nginx, require_nginx
from tests.servers import ROOT, Production, Servers, service_env
from tests.store_fixtures import POSTGRES_URL
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.slow]

# The database timeout of the fault tests (RECSYS_DB_TIMEOUT_SECONDS).
DB_TIMEOUT = 2.0

EVENT = {"user_id": 7, "product_id": 3, "purchased": 0}
POST_EVENT = ("POST", "/interactions", EVENT)
GET_JOB = ("GET", "/admin/jobs/no-such-job", None)
READYZ = ("GET", "/readyz", None)
RECOMMEND = ("GET", "/recommend?user_id=1", None)

# Each kind of outage, and how soon a request must hear of it: a refused
# connection fails at once, a silent one after about the database timeout
# (twice, for a worker that reads the catalog at its first request).
OUTAGES = [
    pytest.param("refuse", 3.0, id="refused"),
    pytest.param("blackhole", 10.0, id="blackholed"),
]


# -- helpers ------------------------------------------------------------------------


def service_recovered(server: Production) -> bool:
    """Whether a write succeeds and the server reports itself ready."""
    return server.request(*POST_EVENT).status == 201 and server.get("/readyz").status == 200


def run_flask_init(env: dict[str, str]) -> None:
    """Run ``flask --app app init`` (migrate, fill, train) as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "init"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def kill_one_worker(server: Production) -> int:
    """SIGKILL one worker, wait for the master to replace it, and return the new pid."""
    before = server.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = server.worker_pids()
        return victim not in now and len(now) == len(before)

    server.wait_until(replaced, within=15, what="a replacement worker")
    (replacement,) = server.worker_pids() - before
    return replacement


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path):
    """Return a function that starts the production server on a database; all are killed after."""
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()


@pytest.fixture
def proxy():
    """Yield a TcpProxy in front of the test PostgreSQL server, forwarding."""
    upstream = sa.make_url(POSTGRES_URL)
    with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432) as running:
        yield running


@pytest.fixture
def proxied_url(postgres_url, proxy):
    """Return the URL of a fresh PostgreSQL schema, reached through the proxy."""
    url = sa.make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def proxied_server(proxied_url, serve):
    """Return a ready server (2 workers, 2 s database timeout) reaching its database by proxy."""
    server = serve(proxied_url, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    server.wait_ready()
    return server


@pytest.fixture
def published_model(tmp_path, proxied_url):
    """Run ``flask --app app init`` through the forwarding proxy: a store and a published model."""
    run_flask_init(service_env(proxied_url, tmp_path / "models"))


def start_outage(proxy: TcpProxy, kind: str) -> None:
    """Make the database refuse connections ("refuse") or swallow them ("blackhole")."""
    getattr(proxy, kind)()


# -- 1. start-up ------------------------------------------------------------------

FIRST_STARTS = [pytest.param("sqlite", id=f"sqlite-{n}") for n in range(1, 11)] + [
    pytest.param("postgresql", id=f"postgresql-{n}", marks=pytest.mark.postgres)
    for n in range(1, 3)
]


@pytest.mark.parametrize("database_url", FIRST_STARTS, indirect=True)
def test_four_workers_starting_on_an_empty_store_train_once_and_serve(
    database_url, serve, tmp_path, record_property
):
    server = serve(database_url, WORKERS=4)
    seconds = server.wait_ready()
    record_property("seconds_to_ready", round(seconds, 2))
    answers = [server.get("/recommend?user_id=1") for _ in range(8)]
    versions = sorted(path.name for path in (tmp_path / "models").glob("v*"))
    assert [a.status for a in answers] == [200] * 8
    assert len(versions) == 1 and versions[0].startswith("v00001-"), versions


# -- 2, 3. PostgreSQL refusing or swallowing connections --------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("outage, within", OUTAGES)
def test_store_bound_requests_answer_503_with_retry_after_during_an_outage(
    outage, within, proxied_server, proxy, record_property
):
    workers = proxied_server.worker_pids()
    start_outage(proxy, outage)
    answers = proxied_server.requests_at_once([POST_EVENT] * 3 + [GET_JOB] * 3)
    slowest = max(a.seconds for a in answers)
    record_property("slowest_503_seconds", round(slowest, 2))
    assert [a.summary() for a in answers] == [(503, "store_unavailable", True)] * 6
    assert slowest < within
    # Every request ended inside its worker: none was killed and replaced.
    assert proxied_server.worker_pids() == workers
    assert "WORKER TIMEOUT" not in proxied_server.log()


@pytest.mark.postgres
@pytest.mark.parametrize("outage, within", OUTAGES)
def test_the_model_keeps_answering_and_readiness_says_the_database_is_missing(
    outage, within, proxied_server, proxy
):
    start_outage(proxy, outage)
    health, ready, recommend = proxied_server.requests_at_once(
        [("GET", "/healthz", None), READYZ, RECOMMEND]
    )
    assert {
        "healthz": health.status,
        "readyz": (ready.status, ready.body["missing"]),
        "recommend": (recommend.status, recommend.body.get("degraded")),
    } == {
        "healthz": 200,
        "readyz": (503, ["database"]),
        "recommend": (200, "store_unavailable"),
    }
    assert max(health.seconds, ready.seconds, recommend.seconds) < within


@pytest.mark.postgres
@pytest.mark.parametrize("outage, within", OUTAGES)
def test_the_service_recovers_without_restart_when_the_database_returns(
    outage, within, proxied_server, proxy, record_property
):
    workers = proxied_server.worker_pids()
    start_outage(proxy, outage)
    assert proxied_server.request(*POST_EVENT).status == 503
    proxy.forward()
    # Each worker may find one pooled connection dead before reconnecting,
    # so recovery means several successes in a row.
    seconds = proxied_server.wait_until(
        lambda: service_recovered(proxied_server), within=10, what="recovered", consecutive=4
    )
    record_property("seconds_to_recover", round(seconds, 2))
    assert proxied_server.worker_pids() == workers


# -- 4. a worker killed during an outage ------------------------------------------


@pytest.mark.postgres
def test_a_worker_killed_during_an_outage_is_replaced_by_one_that_answers(
    proxied_server, proxy, record_property
):
    proxy.refuse()
    replacement = kill_one_worker(proxied_server)
    answers = []
    started = time.monotonic()
    # Until the access log shows the new worker answering, every answer counts.
    while 200 not in proxied_server.answered_by(replacement, "/recommend"):
        assert time.monotonic() - started < 15, "the replacement never answered /recommend"
        answers += [proxied_server.get("/healthz"), proxied_server.get("/recommend?user_id=1")]
    record_property("seconds_to_replacement_answering", round(time.monotonic() - started, 2))
    assert answers and {a.status for a in answers} == {200}


@pytest.mark.postgres
def test_a_worker_started_during_an_outage_recovers_when_the_database_returns(
    proxied_url, proxy, serve, record_property
):
    server = serve(proxied_url, WORKERS=1, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    server.wait_ready()
    proxy.refuse()
    kill_one_worker(server)
    # The replacement starts serving (with the model its master loaded) while
    # the database is down.
    assert server.get("/recommend?user_id=1").body["degraded"] == "store_unavailable"
    proxy.forward()
    seconds = server.wait_until(
        lambda: service_recovered(server), within=10, what="recovered", consecutive=4
    )
    record_property("seconds_to_recover", round(seconds, 2))


# -- 5. booting while the database is down ----------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("outage, within", OUTAGES)
def test_a_server_booted_during_an_outage_serves_the_published_model(
    outage, within, published_model, proxy, proxied_url, serve, record_property
):
    start_outage(proxy, outage)
    server = serve(proxied_url, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    record_property("seconds_to_live", round(server.wait_live(), 2))
    ready, recommend = server.get("/readyz"), server.get("/recommend?user_id=1")
    assert (ready.status, ready.body["missing"]) == (503, ["database"])
    assert (recommend.status, recommend.body.get("degraded")) == (200, "store_unavailable")
    assert recommend.body["model_version"].startswith("v00001-")
    assert max(ready.seconds, recommend.seconds) < within


@pytest.mark.postgres
def test_a_server_booted_during_an_outage_becomes_ready_when_the_database_returns(
    published_model, proxy, proxied_url, serve, record_property
):
    proxy.refuse()
    server = serve(proxied_url, DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    server.wait_live()
    assert server.get("/readyz").status == 503
    proxy.forward()
    seconds = server.wait_until(
        lambda: service_recovered(server), within=10, what="ready", consecutive=4
    )
    record_property("seconds_to_ready", round(seconds, 2))


# -- 6. slow clients ------------------------------------------------------------------


def open_slow_upload(port: int) -> socket.socket:
    """Start a POST whose body, announced as 4 KiB, is still to come."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /interactions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n["
    )
    return sock


def is_still_open(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed the connection."""
    sock.setblocking(False)
    try:
        sock.recv(1)  # an answer's first byte, or b"" for a closed connection
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@pytest.mark.nginx
def test_behind_nginx_more_slow_uploads_than_the_app_has_threads_hold_up_nobody(
    sqlite_url, serve, tmp_path, record_property
):
    # granian gives a body to an app thread as it arrives, with no time limit:
    # six uploads that never end would hold both threads of this one-worker
    # server. deploy/nginx.conf reads whole bodies before it passes them on.
    binary = require_nginx()
    server = serve(sqlite_url, WORKERS=1, THREADS=2)
    server.wait_ready()
    balancer = Nginx(binary, [server.port, server.port], tmp_path / "nginx")
    try:
        balancer.wait_listening()
        uploads = [open_slow_upload(balancer.port) for _ in range(6)]
        stop = threading.Event()

        def trickle() -> None:
            # One space (valid JSON padding) per connection every half second.
            while not stop.wait(0.5):
                for sock in uploads:
                    with contextlib.suppress(OSError):
                        sock.sendall(b" ")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            answers = []
            deadline = time.monotonic() + 7
            while time.monotonic() < deadline:
                answers += [balancer.get("/healthz"), balancer.get("/recommend?user_id=1")]
                time.sleep(0.2)
            open_uploads = [is_still_open(sock) for sock in uploads]
        finally:
            stop.set()
            trickler.join(timeout=5)
            for sock in uploads:
                sock.close()
    finally:
        balancer.stop()
    slowest = max(a.seconds for a in answers)
    record_property("slowest_answer_seconds", round(slowest, 3))
    assert {a.status for a in answers} == {200}
    assert slowest < 2
    # nginx was really holding the six uploads all along.
    assert open_uploads == [True] * 6


# -- 7. SQLite's write lock held elsewhere ----------------------------------------

HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("ROLLBACK")
"""


@pytest.fixture
def write_lock(tmp_path):
    """Return a function that holds SQLite's write lock in another process until released."""
    holders: list[subprocess.Popen] = []

    def hold(database_path: Path) -> Callable[[], None]:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_WRITE_LOCK, str(database_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        holders.append(holder)
        assert holder.stdout.readline() == "locked\n"

        def release() -> None:
            holder.stdin.close()
            holder.wait(timeout=10)

        return release

    yield hold
    for holder in holders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)


def test_writes_answer_503_while_another_process_holds_the_sqlite_write_lock(
    tmp_path, serve, write_lock, record_property
):
    database = tmp_path / "events.db"
    server = serve(f"sqlite:///{database}", DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    server.wait_ready()
    workers = server.worker_pids()
    write_lock(database)
    answers = server.requests_at_once([POST_EVENT] * 4)
    slowest = max(a.seconds for a in answers)
    record_property("slowest_503_seconds", round(slowest, 2))
    assert [a.summary() for a in answers] == [(503, "store_unavailable", True)] * 4
    assert DB_TIMEOUT <= slowest < DB_TIMEOUT + 5
    assert server.worker_pids() == workers


def test_writes_succeed_once_the_sqlite_write_lock_is_released(tmp_path, serve, write_lock):
    database = tmp_path / "events.db"
    server = serve(f"sqlite:///{database}", DB_TIMEOUT_SECONDS=DB_TIMEOUT)
    server.wait_ready()
    release = write_lock(database)
    assert server.request(*POST_EVENT).status == 503
    release()
    assert server.request(*POST_EVENT).status == 201


# -- the statement deadline's own false alarm ---------------------------------------


@pytest.mark.postgres
def test_the_statement_deadline_spares_a_connection_idle_between_statements(postgres_url):
    store = EventStore.from_url(postgres_url, timeout_seconds=0.5)
    try:
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            # Work between statements (a streamed export writing its file,
            # say) is not a statement waiting for the server.
            time.sleep(1.5)
            assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
    finally:
        store.dispose()
