"""Bring the event store's schema up to date with Alembic, from code.

The service calls ``upgrade_to_head`` at every start: Alembic records the
applied revision in the database, so a start on an up-to-date schema does
nothing and an upgrade runs only the new revisions, each altering tables in
place (never dropping and recreating them), so no recorded event is lost.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# Any fixed number: the advisory lock that serialises migrations on PostgreSQL.
_MIGRATION_LOCK_KEY = 727_401_000
# Alembic's context is module-global state: two upgrades in one process at
# once (tests that start two apps in threads) must not interleave.
_upgrade_lock = threading.Lock()


def alembic_config() -> Config:
    """Return an Alembic configuration pointing at the project's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration the database has not seen yet.

    Args:
        engine: The store's engine (SQLite or PostgreSQL).
    """
    upgrade_to(engine, "head")


def upgrade_to(engine: Engine, revision: str) -> None:
    """Apply the migrations up to one revision (tests use it to build an old schema).

    Args:
        engine: The store's engine.
        revision: An Alembic revision id, or ``head``.
    """
    config = alembic_config()
    with _upgrade_lock, engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it (Alembic's batch mode), which
            # foreign keys would block; the pragma only works outside a
            # transaction, so it goes to the driver before Alembic begins one.
            _driver_execute(conn, "PRAGMA foreign_keys=OFF")
        if conn.dialect.name == "postgresql":
            # Servers starting together must not run the same migration twice;
            # released with the transaction that Alembic commits.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, revision)
            conn.commit()
        finally:
            if sqlite:
                conn.rollback()
                _driver_execute(conn, "PRAGMA foreign_keys=ON")


def _driver_execute(conn: Connection, statement: str) -> None:
    """Run a statement on the driver's connection, outside SQLAlchemy's transaction."""
    driver = conn.connection.dbapi_connection
    assert driver is not None, "a checked-out connection has a driver connection"
    driver.cursor().execute(statement)
