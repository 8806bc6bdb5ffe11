"""Races on the admin endpoints of real production servers over PostgreSQL.

Admin calls that arrive at the same moment land in different workers, each
with its own connections: only the database can settle them. Six starts of
six experiments at once must leave exactly one running, the others refused
as if they had come second, and every worker serving the one that runs.
The test holds the experiments' rows until all six starts wait for them,
so every start has read the table before any writes: the race is certain.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from recsys.experiments.records import ExperimentStore
from recsys.store.events import EventStore
from recsys.store.tables import experiments
from tests.builders import POPULAR_VS_CHAMPION
from tests.locks import writes_held
from tests.servers import Servers

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.postgres]

STARTS_AT_ONCE = 6


@pytest.fixture
def serve(tmp_path):
    """Return a function that starts the production server on a database; all are killed after."""
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()


def test_six_experiment_starts_at_once_leave_exactly_one_running(postgres_url, serve):
    server = serve(postgres_url, WORKERS=3, AB_REFRESH_SECONDS=1)
    server.wait_ready()
    names = [f"race-{i}" for i in range(STARTS_AT_ONCE)]
    for name in names:
        created = server.request("POST", "/experiments", {**POPULAR_VS_CHAMPION, "name": name})
        assert created.status == 201, created.body

    store = EventStore.from_url(postgres_url)
    try:
        # Every start reads the table before any writes: held until all six wait.
        with ThreadPoolExecutor(1) as sender, writes_held(store.engine, experiments) as wait_for:
            starts = [("POST", f"/experiments/{n}/start", None) for n in names]
            sent = sender.submit(server.requests_at_once, starts)
            wait_for(STARTS_AT_ONCE)
        answers = sent.result()
        running = [
            e["name"] for e in ExperimentStore(store.engine).list() if e["status"] == "running"
        ]
    finally:
        store.dispose()
    assert len(running) == 1, running
    (winner,) = running
    assert sorted(a.status for a in answers) == [200] + [409] * (STARTS_AT_ONCE - 1)
    for answer, name in zip(answers, names, strict=True):
        if name == winner:
            assert answer.status == 200 and answer.body["status"] == "running"
        else:
            assert answer.error_code == "experiment_state", answer.body
            assert f"{winner!r} is running" in answer.body["error"]["message"]
    server.wait_until(
        lambda: (
            {a.body.get("experiment") for a in server.ask_every_worker("/recommend?user_id=1")}
            == {winner}
        ),
        within=20,
        what=f"every worker serving {winner}",
    )
