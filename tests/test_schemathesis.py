"""Schemathesis over every documented operation: no 5xx, every answer as the document says.

Positive and negative cases, through WSGI against an app with API keys
configured; the admin key (which holds every role) rides in the headers.
The schema is loaded when the module is collected (schemathesis's lazy
``from_fixture`` does not work with pytest 9): creating the app has no side
effects and /openapi.json needs no database, so collection stays cheap. The
store and the first model are made by a fixture, only when the tests run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from recsys.serving.api_keys import new_key
from tests.builders import AppFactory, runtime_of

pytestmark = pytest.mark.slow

ADMIN_KEY, ADMIN = new_key(["admin"])
# Bounded: a few dozen cases per operation keep the whole run near a minute.
MAX_EXAMPLES = 30
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
# Named now, made by the fixture: collecting this module writes nothing.
STATE = Path(tempfile.gettempdir()) / f"recsys-schemathesis-{os.getpid()}"

factory = AppFactory(
    f"sqlite:///{STATE / 'events.db'}", STATE / "models", API_KEYS=ADMIN.config_entry()
)
app = factory(init=False)
schema = schemathesis.openapi.from_wsgi(
    "/openapi.json",
    app,
    config=SchemathesisConfig.from_dict(
        {
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                # Parameters an operation does not name are ignored, as documented.
                "allow-extra-parameters": False,
            },
            "checks": {
                # A batch over its size is 413 (batch_too_large), as the document says.
                "negative_data_rejection": {"expected-statuses": REFUSALS},
                # Off: a schema-valid event may still name a product not in the
                # catalog (422) or a time outside 1970..tomorrow (400); the
                # document names both answers, and their conformance is checked.
                "positive_data_acceptance": {"enabled": False},
            },
        }
    ),
)


@pytest.fixture(scope="module", autouse=True)
def initialised_app():
    STATE.mkdir(parents=True, exist_ok=True)
    runtime_of(app).init()
    yield app
    factory.close()
    shutil.rmtree(STATE, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(headers={"X-API-Key": ADMIN_KEY})
