"""The A/B tests' tables: experiments, the lists served (exposures) and events linked to them.

Rows go in and come out as plain mappings and frames; what an experiment
means (its variants, assignment, statistics) lives in
``recsys.experiments.definitions``, ``.assignment`` and ``.report``.
Exposures and linked events arrive in batches from a background writer, so
each insert is one multi-row statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.errors import RecsysError, quote
from recsys.store.tables import (
    experiments,
    exposure_events,
    exposures,
    interactions,
    products,
)

DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
STATUSES = (DRAFT, RUNNING, STOPPED)
_INSERT_CHUNK = 500


class ExperimentExistsError(RecsysError):
    """An experiment of that name exists already (a 409 for the API)."""


class ExperimentStateError(RecsysError):
    """The experiment cannot make that move from its status (a 409 for the API)."""


class ExperimentStore:
    """Reads and writes experiments, exposures and linked events.

    Args:
        engine: The event store's engine (the schema must be migrated).
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- experiments -----------------------------------------------------------

    def create(self, record: Mapping[str, Any]) -> None:
        """Insert a new experiment in draft.

        Raises:
            ExperimentExistsError: The name is taken (also by a create at the same moment).
        """
        try:
            with _writing(self.engine) as conn:
                conn.execute(experiments.insert(), {**record, "status": DRAFT})
        except sa.exc.IntegrityError:
            # The primary key refused the name; anything else the table refuses is a bug.
            if self.get(record["name"]) is None:
                raise
            raise ExperimentExistsError(
                f"an experiment named {quote(record['name'])} exists"
            ) from None

    def get(self, name: str) -> dict[str, Any] | None:
        """Return one experiment's row, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(_by_name(name)).mappings().first()
        return dict(row) if row is not None else None

    def list(self) -> list[dict[str, Any]]:
        """Return every experiment, newest first."""
        query = sa.select(experiments).order_by(experiments.c.created_at.desc())
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def running(self) -> dict[str, Any] | None:
        """Return the running experiment, or None."""
        query = sa.select(experiments).where(experiments.c.status == RUNNING)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def start(self, name: str, variants: Sequence[Mapping[str, Any]], when: datetime) -> None:
        """Move a draft to running, saving its variants as resolved for serving.

        The unique index over running experiments (migration 0007) settles
        starts at the same moment: one runs, the others are refused as if
        they had come second.

        Raises:
            ExperimentStateError: It is not a draft, or another experiment runs.
            LookupError: No such experiment.
        """
        try:
            with _writing(self.engine) as conn:
                row = conn.execute(_by_name(name)).mappings().first()
                if row is None:
                    raise LookupError(name)
                if row["status"] != DRAFT:
                    raise _wrong_status(DRAFT, name, row["status"])
                other = conn.execute(_RUNNING_NAME).scalar()
                if other is not None:
                    raise _another_runs(other)
                moved = conn.execute(
                    experiments.update()
                    .where(experiments.c.name == name, experiments.c.status == DRAFT)
                    .values(status=RUNNING, started_at=when, variants=list(variants))
                )
                if moved.rowcount == 0:  # a start of the same name came first
                    raise _wrong_status(DRAFT, name, _status(conn, name))
        except sa.exc.IntegrityError:
            # Another experiment started between the check and the update.
            with self.engine.connect() as conn:
                raise _another_runs(conn.execute(_RUNNING_NAME).scalar()) from None

    def stop(self, name: str, when: datetime) -> None:
        """Move a running experiment to stopped.

        Raises:
            ExperimentStateError: It is not running.
            LookupError: No such experiment.
        """
        with _writing(self.engine) as conn:
            row = conn.execute(_by_name(name)).mappings().first()
            if row is None:
                raise LookupError(name)
            if row["status"] != RUNNING:
                raise _wrong_status(RUNNING, name, row["status"])
            moved = conn.execute(
                experiments.update()
                .where(experiments.c.name == name, experiments.c.status == RUNNING)
                .values(status=STOPPED, stopped_at=when)
            )
            if moved.rowcount == 0:  # a stop at the same moment came first
                raise _wrong_status(RUNNING, name, _status(conn, name))

    # -- what was served and what followed ------------------------------------

    def add_exposures(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert served lists (``exposures`` columns), in one transaction."""
        _insert(self.engine, exposures, rows)

    def add_exposure_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert events posted with a recommendation id (``exposure_events`` columns)."""
        _insert(self.engine, exposure_events, rows)

    def exposures_frame(self, experiment: str) -> pd.DataFrame:
        """Return an experiment's exposures: one row per served list."""
        query = sa.select(
            exposures.c.recommendation_id,
            exposures.c.variant,
            exposures.c.user_id,
            exposures.c.product_ids,
            exposures.c.explored_ids,
            exposures.c.latency_ms,
            exposures.c.failed,
            exposures.c.served_at,
        ).where(exposures.c.experiment == experiment)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(
            rows,
            columns=[
                "recommendation_id",
                "variant",
                "user_id",
                "product_ids",
                "explored_ids",
                "latency_ms",
                "failed",
                "served_at",
            ],
        )

    def linked_events_frame(self, experiment: str) -> pd.DataFrame:
        """Return events posted with a recommendation id of this experiment, with their price."""
        query = (
            sa.select(
                exposure_events.c.recommendation_id,
                exposure_events.c.user_id,
                exposure_events.c.product_id,
                exposure_events.c.purchased,
                exposure_events.c.created_at,
                products.c.price,
            )
            .join(
                exposures,
                exposures.c.recommendation_id == exposure_events.c.recommendation_id,
            )
            .outerjoin(products, products.c.id == exposure_events.c.product_id)
            .where(exposures.c.experiment == experiment)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        columns = ["recommendation_id", "user_id", "product_id", "purchased", "created_at"]
        return pd.DataFrame(rows, columns=[*columns, "price"])

    def exposed_users_purchases(self, experiment: str) -> pd.DataFrame:
        """Return purchases of exposed users made after their first exposure, with price.

        One row per purchase: ``user_id, product_id, price, created_at``.
        """
        first = (
            sa.select(exposures.c.user_id, sa.func.min(exposures.c.served_at).label("first_served"))
            .where(exposures.c.experiment == experiment)
            .group_by(exposures.c.user_id)
            .subquery()
        )
        query = (
            sa.select(
                interactions.c.user_id,
                interactions.c.product_id,
                products.c.price,
                interactions.c.created_at,
            )
            .join(first, first.c.user_id == interactions.c.user_id)
            .outerjoin(products, products.c.id == interactions.c.product_id)
            .where(interactions.c.purchased.is_(True))
            .where(interactions.c.created_at >= first.c.first_served)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=["user_id", "product_id", "price", "created_at"])


_RUNNING_NAME = sa.select(experiments.c.name).where(experiments.c.status == RUNNING)


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """Begin a write transaction; on SQLite it holds the write lock from its first read."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # A deferred transaction that reads and then writes fails at once
            # (SQLITE_BUSY) when another writer went first; waiting is right.
            conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def _by_name(name: str) -> sa.Select:
    return sa.select(experiments).where(experiments.c.name == name)


def _status(conn: Connection, name: str) -> str | None:
    return conn.execute(sa.select(experiments.c.status).where(experiments.c.name == name)).scalar()


def _wrong_status(status: str, name: str, actual: str | None) -> ExperimentStateError:
    verb = "start" if status == DRAFT else "stop"
    article = "a draft" if status == DRAFT else "a running one"
    return ExperimentStateError(f"experiment {quote(name)} is {actual}; only {article} can {verb}")


def _another_runs(other: str | None) -> ExperimentStateError:
    if other is None:  # it stopped again already
        return ExperimentStateError(
            "another experiment started at the same moment; one runs at a time"
        )
    return ExperimentStateError(
        f"experiment {quote(other)} is running; stop it first (one runs at a time)"
    )


def _insert(engine: Engine, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    with engine.begin() as conn:
        for start in range(0, len(rows), _INSERT_CHUNK):
            conn.execute(table.insert(), list(rows[start : start + _INSERT_CHUNK]))
