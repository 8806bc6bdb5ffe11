"""A user's data in the store: erased, exported, and the log kept no longer than its retention.

``EventStore`` mixes ``UserData`` in, so these are the store's own methods:

- ``delete_user`` removes every row about a user (their events, their A/B
  exposures and the events linked to them, their user row) in one
  transaction, and records who deleted them, when and how many rows went in
  ``user_deletions`` (never the data). On PostgreSQL it first locks the user
  row, so it waits for a batch of theirs being written and deletes it too:
  an event acknowledged before the deletion never survives it.
- ``export_user`` returns every stored fact about a user.
- ``prune_events`` deletes the events older than a moment, a short
  transaction per range of ids, so ingestion never waits long for it;
  ``prune_exposures`` deletes the A/B exposures and the events linked to
  them older than it in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.timestamps import format_utc, utc_now
from recsys.store.engine import retry_conflicts
from recsys.store.tables import exposure_events, exposures, interactions, user_deletions, users
from recsys.store.transactions import write_transaction

# Ids per prune transaction: a few milliseconds of SQLite's write lock each.
PRUNE_CHUNK_IDS = 5_000
# Exposures per prune transaction: with their string keys and three indexes,
# 5,000 held SQLite's write lock 130 ms (median), 1,000 70 ms, near the
# events' prune (measured on a busy 2-core machine, 100,000 exposures).
PRUNE_CHUNK_EXPOSURES = 1_000
# Users per read of the user table (``user_ids``).
USER_PAGE = 10_000
# What the audit records and the export holds, table by table, in deletion order.
USER_TABLES = ("interactions", "exposure_events", "exposures", "users")

# PostgreSQL's SQLSTATE for a table that does not exist.
_UNDEFINED_TABLE = "42P01"


class PrunedExposures(NamedTuple):
    """What ``prune_exposures`` deleted.

    Attributes:
        exposures: A/B exposures (lists served inside an experiment).
        linked_events: Events posted with the recommendation id of a list.
    """

    exposures: int
    linked_events: int


@dataclass(frozen=True)
class UserDeletion:
    """The audit record of one deleted user.

    Attributes:
        user_id: The user.
        deleted_at: When, naive UTC.
        deleted_by: Who: an API key's name, or ``cli:`` and the system user.
        rows: Table name -> rows deleted from it.
    """

    user_id: int
    deleted_at: datetime
    deleted_by: str
    rows: dict[str, int]

    @property
    def total_rows(self) -> int:
        """How many rows went, all tables together."""
        return sum(self.rows.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON (the answer of ``DELETE /users/<id>``)."""
        return {
            "user_id": self.user_id,
            "deleted_at": format_utc(self.deleted_at),
            "deleted_by": self.deleted_by,
            "rows": dict(self.rows),
        }


class UserData:
    """Deletes, exports and prunes the data of the store at ``engine``."""

    engine: Engine

    def delete_user(self, user_id: int, deleted_by: str) -> UserDeletion | None:
        """Delete every row about a user in one transaction and record the deletion.

        Args:
            user_id: The user.
            deleted_by: Who asks (at most 64 characters are kept).

        Returns:
            The audit record, or None when the store knows nothing of the user
            (nothing is written then).
        """

        def delete() -> UserDeletion | None:
            with write_transaction(self.engine) as conn:
                row = sa.select(users.c.id).where(users.c.id == user_id)
                if conn.dialect.name == "postgresql":
                    # Waits for a batch of the user's being written (it holds a
                    # key-share lock on this row) and keeps new ones out until
                    # the commit: what is deleted is everything acknowledged.
                    row = row.with_for_update()
                known = conn.execute(row).first() is not None
                rows = {
                    "interactions": _delete(conn, interactions, interactions.c.user_id, user_id),
                    "exposure_events": _delete(
                        conn, exposure_events, exposure_events.c.user_id, user_id
                    ),
                    "exposures": _delete(conn, exposures, exposures.c.user_id, user_id),
                    "users": _delete(conn, users, users.c.id, user_id),
                }
                if not known and not any(rows.values()):
                    return None
                record = UserDeletion(user_id, utc_now(), deleted_by[:64], rows)
                conn.execute(
                    user_deletions.insert().values(
                        user_id=user_id,
                        deleted_at=record.deleted_at,
                        deleted_by=record.deleted_by,
                        rows=rows,
                    )
                )
                return record

        return retry_conflicts(delete)

    def export_user(self, user_id: int) -> dict[str, Any] | None:
        """Return every stored fact about a user, or None when the store knows nothing of them.

        Returns:
            ``user_id``, ``user`` (their row, or None when only events name
            them), ``interactions`` (oldest first), ``exposures`` and
            ``exposure_events``: each row with every column the table has,
            times as ISO-8601 UTC.
        """
        with self.engine.connect() as conn, conn.begin():
            user = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
            found = {
                "interactions": _rows(conn, interactions, interactions.c.user_id, user_id),
                "exposures": _rows(conn, exposures, exposures.c.user_id, user_id),
                "exposure_events": _rows(conn, exposure_events, exposure_events.c.user_id, user_id),
            }
        if user is None and not any(found.values()):
            return None
        return {"user_id": user_id, "user": _json_row(user) if user else None, **found}

    def deletions_after(self, after_id: int = 0) -> list[tuple[int, int, datetime]]:
        """Return the deletions recorded after an audit row id: ``(id, user_id, deleted_at)``.

        A store whose schema is not there yet (a server started before
        ``init``) has recorded none; on SQLite its missing table is an
        OperationalError, an outage the caller already waits out.
        """
        query = (
            sa.select(user_deletions.c.id, user_deletions.c.user_id, user_deletions.c.deleted_at)
            .where(user_deletions.c.id > after_id)
            .order_by(user_deletions.c.id)
        )
        try:
            with self.engine.connect() as conn:
                return [(int(i), int(u), at) for i, u, at in conn.execute(query)]
        except sa.exc.ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE:
                return []
            raise

    def deletions(self, user_id: int) -> list[UserDeletion]:
        """Return the audit records of a user's deletions, oldest first."""
        query = (
            sa.select(user_deletions)
            .where(user_deletions.c.user_id == user_id)
            .order_by(user_deletions.c.id)
        )
        with self.engine.connect() as conn:
            return [
                UserDeletion(int(r.user_id), r.deleted_at, r.deleted_by, dict(r.rows))
                for r in conn.execute(query)
            ]

    def user_ids(self, page: int = USER_PAGE) -> Iterator[list[int]]:
        """Yield every user id, ascending, a page at a time (keyset reads, bounded memory)."""
        after = 0
        while True:
            query = sa.select(users.c.id).where(users.c.id > after).order_by(users.c.id)
            with self.engine.connect() as conn:
                found = [int(u) for u in conn.execute(query.limit(page)).scalars()]
            if not found:
                return
            yield found
            after = found[-1]

    def prune_events(
        self,
        before: datetime,
        chunk_ids: int = PRUNE_CHUNK_IDS,
        on_chunk: Callable[[int, int], object] | None = None,
    ) -> int:
        """Delete the events recorded before a moment, one short transaction per range of ids.

        Ranges of the primary key rather than of time: an imported log may
        hold old events at any id, and a range is found by the key's index
        whatever the table's size. Each transaction holds the write lock for
        one range only, so ingestion waits a moment at most.

        Args:
            before: Events with ``created_at`` before this (naive UTC) go.
            chunk_ids: Ids per transaction.
            on_chunk: Called with (ids scanned, events deleted) after each range.

        Returns:
            How many events were deleted.
        """
        return self._prune_id_ranges(interactions, before, chunk_ids, on_chunk)

    def prune_exposures(
        self, before: datetime, chunk_rows: int = PRUNE_CHUNK_EXPOSURES
    ) -> PrunedExposures:
        """Delete the A/B exposures served before a moment and the linked events recorded before it.

        The linked events are copies of users' interactions, so the
        retention that prunes the events prunes them too, each by its own
        time. An exposure goes by the moment it was served, ``chunk_rows`` a
        transaction, found by ``served_at``'s index.

        Args:
            before: Exposures with ``served_at``, and linked events with
                ``created_at``, before this (naive UTC) go.
            chunk_rows: Exposures (and ids of linked events) per transaction.
        """
        linked = self._prune_id_ranges(exposure_events, before, chunk_rows)
        oldest = (
            sa.select(exposures.c.recommendation_id)
            .where(exposures.c.served_at < before)
            .limit(chunk_rows)
        )
        statement = exposures.delete().where(exposures.c.recommendation_id.in_(oldest))

        def prune_oldest() -> int:
            with write_transaction(self.engine) as conn:
                return int(conn.execute(statement).rowcount)

        served = 0
        # Nothing served now is older than the cutoff, so the loop ends.
        while count := retry_conflicts(prune_oldest):
            served += count
        return PrunedExposures(exposures=served, linked_events=linked)

    def _prune_id_ranges(
        self,
        table: sa.Table,
        before: datetime,
        chunk_ids: int,
        on_chunk: Callable[[int, int], object] | None = None,
    ) -> int:
        """Delete the rows with ``created_at`` before a moment, one range of ids a transaction."""
        with self.engine.connect() as conn:
            low, high = conn.execute(
                sa.select(sa.func.min(table.c.id), sa.func.max(table.c.id))
            ).one()
        if low is None:
            return 0
        deleted = 0
        for start in range(int(low), int(high) + 1, chunk_ids):
            end = start + chunk_ids
            statement = table.delete().where(
                table.c.id >= start, table.c.id < end, table.c.created_at < before
            )

            def prune_range(statement: sa.Delete = statement) -> int:
                with write_transaction(self.engine) as conn:
                    return int(conn.execute(statement).rowcount)

            count = retry_conflicts(prune_range)
            deleted += count
            if on_chunk is not None:
                on_chunk(min(end, int(high) + 1) - start, count)
        return deleted

    def count_events_before(self, before: datetime) -> int:
        """Return how many events were recorded before a moment (what a prune would delete)."""
        query = sa.select(sa.func.count()).where(interactions.c.created_at < before)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _delete(conn: sa.Connection, table: sa.Table, column: sa.Column, user_id: int) -> int:
    return int(conn.execute(table.delete().where(column == user_id)).rowcount)


def _rows(
    conn: sa.Connection, table: sa.Table, column: sa.Column, user_id: int
) -> list[dict[str, Any]]:
    order = [table.c[name] for name in ("created_at", "served_at", "id") if name in table.c]
    query = sa.select(table).where(column == user_id).order_by(*order)
    return [_json_row(row) for row in conn.execute(query).mappings()]


def _json_row(row: Any) -> dict[str, Any]:
    """Return a row as JSON values: times as ISO-8601 UTC, the rest as stored."""
    return {
        key: format_utc(value) if isinstance(value, datetime) else value
        for key, value in dict(row).items()
    }
