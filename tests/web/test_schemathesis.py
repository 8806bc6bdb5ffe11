"""Schemathesis over every documented operation: no 5xx, every answer as the document says.

Positive and negative cases, through WSGI against an app with API keys
configured; the admin key (which holds every role) rides in the headers.
Every check runs (``--checks all``): a schema-valid request must succeed
unless it breaks one of the few rules across fields that JSON Schema cannot
state, and a schema-invalid one must be refused.
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

from recsys.config.api_keys import new_key
from tests.builders import AppFactory, runtime_of

pytestmark = pytest.mark.slow

ADMIN_KEY, ADMIN = new_key(["admin"])
# Bounded: a few dozen cases per operation keep the whole run near a minute.
MAX_EXAMPLES = 30
# What a schema-valid request may get besides success: schemathesis's defaults.
ACCEPTANCE = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# Rules across fields that JSON Schema cannot state; each operation's
# description states them, and a valid request that breaks one is a 400
# (or the 422 for a product not in the catalog).
RULES_ACROSS_FIELDS = {
    ("GET", "/recommend"): ["400"],  # offset + n at most 1000
    ("POST", "/interactions"): ["400", "422"],  # a real date, 1970 to tomorrow; a known product
    ("PUT", "/products"): ["400"],  # each product_id once per batch
    ("POST", "/experiments"): ["400"],  # baseline_rate + mde < 1; distinct names; model or version
}
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
            # Every check schemathesis has (`--checks all`).
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ACCEPTANCE + statuses}
                    },
                }
                for (method, path), statuses in RULES_ACROSS_FIELDS.items()
            ],
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


# Parameters that take any text: a number or boolean generated for one travels
# as its text ("false" is a category name like any other), so it is valid.
TEXT_PARAMETERS = {"category"}


def filter_query(context, query) -> bool:
    # An empty array or object travels as no parameter at all: such a
    # "schema-violating" case is the valid request without the parameter.
    query = query or {}
    if any(value in ([], {}) for value in query.values()):
        return False
    return not any(
        isinstance(item, bool | int | float)
        for name in TEXT_PARAMETERS & set(query)
        for item in (query[name] if isinstance(query[name], list) else [query[name]])
    )


@schema.hooks.apply(filter_query)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(headers={"X-API-Key": ADMIN_KEY})
