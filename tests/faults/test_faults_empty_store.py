"""Fault injection: real production servers start on an empty store (``RECSYS_DATA_PATH=``).

The production setting: no demo log, no model. The master's ``init`` finds
nothing to train on and the workers start anyway: alive, not ready for want
of a model, taking products and events, until the first events train the
first model and every worker serves it.
"""

from __future__ import annotations

import pytest

from tests.builders import SMALL_CATALOG
from tests.servers import Servers

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PRODUCTS = SMALL_CATALOG.to_dict("records")
FIRST_EVENTS = [
    {"user_id": 1, "product_id": 1, "purchased": 0},
    {"user_id": 1, "product_id": 2, "purchased": 1},
    {"user_id": 2, "product_id": 3, "purchased": 0},
]


@pytest.fixture
def serve(tmp_path):
    """Return a function that starts the production server on a database; all are killed after."""
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()


def test_an_empty_store_serves_healthy_then_a_first_model_after_the_first_events(
    database_url, serve, tmp_path, record_property
):
    server = serve(database_url, DATA_PATH="")
    server.wait_live()
    ready = server.ask_every_worker("/readyz")
    recommend = server.get("/recommend?user_id=1")
    assert {(a.status, tuple(a.body["missing"])) for a in ready} == {(503, ("model",))}
    assert (recommend.status, recommend.error_code) == (503, "model_unavailable")
    assert "Traceback" not in server.log()

    assert server.request("PUT", "/products", PRODUCTS).status == 200
    assert server.request("POST", "/interactions", FIRST_EVENTS).status == 201
    seconds = server.wait_until(
        lambda: server.get("/readyz").status == 200, within=60, what="a first model"
    )
    record_property("seconds_to_first_model", round(seconds, 2))

    # The worker that did not train serves the model at its next request.
    answers = server.ask_every_worker("/recommend?user_id=1")
    assert {a.status for a in answers} == {200}
    (version,) = {a.body["model_version"] for a in answers}
    assert version.startswith("v00001-")
    assert [path.name for path in (tmp_path / "models").glob("v*")] == [version]
