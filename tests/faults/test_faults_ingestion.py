"""Fault injection: a server killed in the middle of a batch, and the client's retry.

A client whose ``POST /interactions`` got no answer cannot know whether its
batch landed. With an ``event_id`` per event it sends the batch again: the
events stored before the kill are known, the rest are stored, none twice.
The server is the production one (``tests.servers.Production``), on SQLite
and PostgreSQL; every worker is SIGKILLed while the batch is in flight.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

import pytest
import sqlalchemy as sa

from tests.servers import Servers

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EVENTS = 10_000
ACKNOWLEDGED_FIRST = 3_000


@pytest.fixture
def serve(tmp_path):
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()


def batch() -> list[dict]:
    return [
        {
            "user_id": 50_000 + i % 700,
            "product_id": 1 + i % 20,
            "type": ("view", "click", "cart", "purchase")[i % 4],
            "event_id": f"kill-{i}",
        }
        for i in range(EVENTS)
    ]


def test_a_batch_retried_after_its_server_was_killed_mid_batch_is_stored_once(
    database_url, serve, record_property
):
    server = serve(database_url)
    server.wait_ready()
    events = batch()
    first = server.request("POST", "/interactions", events[:ACKNOWLEDGED_FIRST])
    assert first.status == 201 and first.body["new"] == ACKNOWLEDGED_FIRST

    outcome: dict[str, object] = {}

    def send_whole_batch() -> None:
        try:
            outcome["answer"] = server.request("POST", "/interactions", events)
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send_whole_batch)
    sender.start()
    time.sleep(0.3)  # the batch is being read, checked or written
    for pid in server.worker_pids():
        os.kill(pid, signal.SIGKILL)
    sender.join(60)
    record_property("killed_batch_answered", "answer" in outcome)

    server.wait_ready()
    retry = server.request("POST", "/interactions", events)
    assert retry.status == 201, retry.body
    assert retry.body["accepted"] == EVENTS
    assert retry.body["new"] + retry.body["known"] == EVENTS
    assert retry.body["known"] >= ACKNOWLEDGED_FIRST
    record_property("stored_before_the_retry", retry.body["known"])

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stored, distinct = conn.execute(
            sa.text(
                "SELECT count(*), count(DISTINCT event_id) FROM interactions "
                "WHERE event_id LIKE 'kill-%'"
            )
        ).one()
    engine.dispose()
    assert (stored, distinct) == (EVENTS, EVENTS)
