"""Several servers, one address: two production servers over one store behind nginx.

Each test starts the production topology on loopback: two servers
(two workers each, the shipped serve.py) on free ports over one
PostgreSQL schema, one Redis key prefix and one artifact directory, behind nginx
running the shipped deploy/nginx.conf (tests/nginx_balancer.py). It checks
that the servers act as one service: an event recorded by one is seen by the
other, a model retrained on one goes live on both, and when one dies no
acknowledged event is lost while the other keeps answering. Measured times
are recorded as test properties (``--junitxml`` shows them). A quick check
(not slow) runs ``nginx -t`` on the shipped configuration.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.nginx_balancer import (
    SHIPPED_CONFIG,
    Nginx,
    check_config,
    loopback_config,
    require_nginx,
)
from tests.servers import Answer, Production, service_env

pytestmark = pytest.mark.nginx

# Users of the events posted while a server dies (the bundled log has 1-100).
FIRST_NEW_USER = 1_000_000


@dataclass(frozen=True)
class Topology:
    """Two app servers, the nginx in front of them, and their database."""

    a: Production
    b: Production
    balancer: Nginx
    database_url: str


def recommended_ids(answer: Answer) -> list[int]:
    assert answer.status == 200, answer
    return [item["product_id"] for item in answer.body["recommendations"]]


@pytest.fixture
def topology(postgres_url, redis_url, cache_prefix, tmp_path):
    """Yield two ready servers behind nginx; every process is killed afterwards.

    They share the PostgreSQL schema and the Redis keys under the test's own
    prefix: the servers and databases the tests are given, nothing else.
    """
    binary = require_nginx()
    env = service_env(
        postgres_url,
        tmp_path / "models",
        WORKERS=2,
        MODEL_REFRESH_SECONDS=1,
        REDIS_URL=redis_url.url,
        CACHE_KEY_PREFIX=cache_prefix,
    )
    servers: list[Production] = []
    balancer = None
    try:
        # Started together on an empty store: one init does the work, the other waits for it.
        servers = [Production(env, tmp_path / name) for name in ("a", "b")]
        for server in servers:
            server.wait_ready()
        balancer = Nginx(binary, [server.port for server in servers], tmp_path / "nginx")
        balancer.wait_listening()
        yield Topology(servers[0], servers[1], balancer, postgres_url)
    finally:
        if balancer is not None:
            balancer.stop()
        for server in servers:
            server.stop()


# -- the shipped configuration ------------------------------------------------------


def test_the_shipped_nginx_configuration_passes_nginx_t_with_loopback_upstreams(tmp_path):
    binary = require_nginx()
    config = tmp_path / "nginx.conf"
    config.write_text(loopback_config(SHIPPED_CONFIG.read_text(), [18001, 18002], 18080, tmp_path))
    checked = check_config(binary, config, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


# -- one service -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_an_event_posted_to_one_server_is_excluded_from_the_next_answer_of_the_other(topology):
    a, b, balancer = topology.a, topology.b, topology.balancer
    path = "/recommend?user_id=1&n=5"
    bought = recommended_ids(b.get(path))[0]
    posted = a.request(
        "POST", "/interactions", {"user_id": 1, "product_id": bought, "purchased": 1}
    )
    assert posted.status == 201, posted
    from_b = recommended_ids(b.get(path))
    through_balancer = [recommended_ids(balancer.get(path)) for _ in range(4)]
    assert bought not in from_b
    assert all(bought not in ids for ids in through_balancer)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_retrain_started_on_one_server_goes_live_on_both(topology, record_property):
    a, b, balancer = topology.a, topology.b, topology.balancer
    first = b.get("/model").body["version"]
    started = a.request("POST", "/admin/retrain")
    assert started.status == 202, started
    status_url = started.body["status_url"]
    a.wait_until(
        lambda: a.get(status_url).body["state"] in ("succeeded", "failed"),
        within=120,
        what="the retrain finished",
    )
    job = a.get(status_url).body
    assert job["state"] == "succeeded", job

    def live_on_every_worker(server: Production) -> bool:
        return {a.body["version"] for a in server.ask_every_worker("/model")} == {job["version"]}

    seconds = b.wait_until(lambda: live_on_every_worker(b), within=20, what="live on b")
    record_property("seconds_until_live_on_the_other_server", round(seconds, 2))
    a.wait_until(lambda: live_on_every_worker(a), within=20, what="live on a")
    through_balancer = {balancer.get("/model").body["version"] for _ in range(6)}
    assert job["version"] != first
    assert through_balancer == {job["version"]}


@pytest.mark.slow
@pytest.mark.postgres
def test_killing_one_server_loses_no_acknowledged_event_and_the_other_keeps_answering(
    topology, record_property
):
    a, b, balancer = topology.a, topology.b, topology.balancer
    events = [
        {"user_id": FIRST_NEW_USER + i, "product_id": 1 + i % 20, "purchased": int(i % 7 == 0)}
        for i in range(300)
    ]
    posted: list[tuple[dict, Answer | None, float]] = []  # (event, answer, when it was sent)
    reads: list[tuple[Answer | None, float]] = []
    enough_posted = threading.Event()
    posting_done = threading.Event()

    def post(event: dict) -> None:
        sent = time.monotonic()
        posted.append((event, attempt(balancer, "POST", "/interactions", event), sent))
        if len(posted) >= len(events) // 3:
            enough_posted.set()

    def read() -> None:
        sent = time.monotonic()
        reads.append((attempt(balancer, "GET", "/recommend?user_id=1"), sent))

    def read_until_posting_ends() -> None:
        deadline = time.monotonic() + 60
        while not posting_done.is_set() and time.monotonic() < deadline:
            read()

    reader = threading.Thread(target=read_until_posting_ends, daemon=True)
    reader.start()
    with ThreadPoolExecutor(4) as pool:
        posting = pool.map(post, events)
        assert enough_posted.wait(timeout=60), "a third of the events were not posted in 60 s"
        killed_at = time.monotonic()
        a_workers = a.worker_pids()
        a.stop()  # SIGKILL to the whole process group
        wait_until_gone(a_workers)
        dead_at = time.monotonic()
        list(posting)
    posting_done.set()
    reader.join(timeout=30)
    # A read after the kill even when the posting ended before the reader sent one.
    read()
    # More reads and writes, after the posting.
    for _ in range(20):
        read()
    later = [{**event, "user_id": event["user_id"] + len(events)} for event in events[:20]]
    for event in later:
        post(event)

    acknowledged = {e["user_id"] for e, answer, _ in posted if status_of(answer) == 201}
    stored = rows_per_user(topology.database_url)
    refused = [answer for _, answer, _ in posted if status_of(answer) != 201]
    reads_after = [answer for answer, sent in reads if sent >= dead_at]
    first_answer_after_kill = min(
        sent + answer.seconds
        for answer, sent in reads
        if sent >= killed_at and status_of(answer) == 200
    )
    record_property("events_acknowledged", len(acknowledged))
    record_property("events_stored", len(stored))
    record_property("posts_refused_or_cut", len(refused))
    record_property("reads_cut_by_the_kill", sum(answer is None for answer, _ in reads))
    record_property("seconds_from_kill_to_an_answer", round(first_answer_after_kill - killed_at, 3))
    # The server killed had been taking events: the balancer spread them.
    assert any(e["path"] == "/interactions" and e["status"] == 201 for e in a.access_entries())
    assert acknowledged <= set(stored), sorted(acknowledged - set(stored))[:10]
    assert len(stored) >= len(acknowledged)
    assert max(stored.values()) == 1  # no event written twice
    # Posts caught in the server as it died (nginx never sends a post twice):
    # cut off, or nginx's own answer in the service's contract.
    assert {a.summary() for a in refused if a} <= {(503, "upstream_unavailable", True)}
    assert reads_after and {status_of(a) for a in reads_after} == {200}
    assert {status_of(a) for e, a, _ in posted if e in later} == {201}
    assert b.process.poll() is None


def status_of(answer: Answer | None) -> int | None:
    return None if answer is None else answer.status


def attempt(balancer: Nginx, method: str, path: str, body: dict | None = None) -> Answer | None:
    """Return the answer, or None when it was cut off (a server killed as it answered)."""
    try:
        return balancer.request(method, path, body)
    except (OSError, http.client.HTTPException):
        return None


def wait_until_gone(pids: set[int], within: float = 10) -> None:
    """Wait until none of the processes runs any more (gone, or a zombie)."""
    deadline = time.monotonic() + within
    while any(_is_running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes {pids} still running after {within} s"
        time.sleep(0.01)


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] != "Z"


def rows_per_user(database_url: str) -> dict[int, int]:
    """Return how many interactions each of the new users has in the store."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT user_id, count(*) FROM interactions WHERE user_id >= :first "
                    "GROUP BY user_id"
                ),
                {"first": FIRST_NEW_USER},
            ).all()
    finally:
        engine.dispose()
    return {int(user): int(count) for user, count in rows}
