"""Database fixtures shared by the store, ingestion and retraining tests.

``database_url`` is parametrised over SQLite (a temporary file) and
PostgreSQL (a fresh schema per test on the server named by
``RECSYS_TEST_POSTGRES_URL``, default the local ``test`` database). When that
server cannot be reached the PostgreSQL cases skip, unless
``RECSYS_REQUIRE_POSTGRES=1`` (set by .ci/run), which makes them fail.

pytest loads this module as a plugin (see conftest.py): tests name the
fixtures, never import them.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid

import pytest
import sqlalchemy as sa

from recsys.store.events import EventStore
from recsys.store.migrate import upgrade_to_head
from tests.builders import SMALL_CATALOG, AppFactory

POSTGRES_URL = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_postgres_problem: list[str | None] = []


def postgres_unavailable_reason() -> str | None:
    """Return why PostgreSQL cannot be used for tests, or None when it can (cached)."""
    if not _postgres_problem:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            _postgres_problem.append(None)
        except sa.exc.OperationalError as exc:
            first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            _postgres_problem.append(f"PostgreSQL at {POSTGRES_URL} unreachable: {first_line}")
        finally:
            engine.dispose()
    return _postgres_problem[0]


def require_postgres() -> None:
    """Skip (or, with RECSYS_REQUIRE_POSTGRES=1, fail) when PostgreSQL is unreachable."""
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("RECSYS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_POSTGRES=1 makes PostgreSQL mandatory)")
    pytest.skip(f"{reason}; set RECSYS_REQUIRE_POSTGRES=1 to make this a failure")


@pytest.fixture
def postgres_url():
    """Yield a URL to a fresh, empty PostgreSQL schema, dropped afterwards."""
    require_postgres()
    schema = f"recsys_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    # search_path puts every table (and Alembic's version table) in the schema,
    # so parallel test runs and other users of the database never collide.
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def jdbc_url(postgres_url: str) -> str:
    """Return the JDBC URL of the database and schema a PostgreSQL URL names (for Spark).

    Host, port, database, user and password come from the URL as given (the
    test server is whatever ``RECSYS_TEST_POSTGRES_URL`` says); the schema
    from its ``options=-csearch_path=...``, as ``postgres_url`` makes it.
    """
    url = sa.engine.make_url(postgres_url)
    query = {}
    if url.username:
        query["user"] = url.username
    if url.password:
        query["password"] = url.password
    if "sslmode" in url.query:
        query["sslmode"] = url.query["sslmode"]
    options = url.query.get("options", "")
    for option in options if isinstance(options, tuple) else (options,):
        if option.startswith("-csearch_path="):
            query["currentSchema"] = option.removeprefix("-csearch_path=")
    address = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"jdbc:postgresql://{address}/{url.database or ''}?{urllib.parse.urlencode(query)}"


@pytest.fixture
def sqlite_url(tmp_path):
    """Return a URL to a new SQLite file."""
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request):
    """Yield an empty database URL, once per back-end."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


@pytest.fixture
def store(database_url):
    """Yield a migrated, empty event store on each back-end."""
    event_store = EventStore.from_url(database_url)
    upgrade_to_head(event_store.engine)
    yield event_store
    event_store.dispose()


@pytest.fixture
def catalog_store(store):
    """Yield an event store whose catalog holds products 1-5."""
    store.upsert_products(SMALL_CATALOG)
    return store


@pytest.fixture
def app_factory(sqlite_url, tmp_path):
    """Yield a factory of apps over one SQLite store and artifact directory."""
    factory = AppFactory(sqlite_url, tmp_path / "models")
    yield factory
    factory.close()


@pytest.fixture
def any_app_factory(database_url, tmp_path):
    """Yield a factory of apps over one store, once per database back-end."""
    factory = AppFactory(database_url, tmp_path / "models")
    yield factory
    factory.close()
