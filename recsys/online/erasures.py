"""Deleted users: no version trained on their events ranks them from their training-time row.

A deleted user's events are gone from the store, so a model that folds users
in finds nothing to fold and gives them the ``unknown_user`` list. But a
version trained before the deletion still holds the user's row, which
serving uses for models without fold-in, and for every model while the
store cannot be read. ``ErasedUsers`` is the process's set of deleted users
and when each was deleted, learnt from the deletion's announcement on the
invalidation bus at once and from the store's audit table
(``user_deletions``) at start-up and every refresh period; the pipeline then
ranks such a user as it ranks an anonymous session, from their history
alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from recsys.online.live_model import ServingModel


class ErasedUsers:
    """The users deleted from the store, and when; shared by the process's pipelines."""

    def __init__(self) -> None:
        self._deleted: dict[int, datetime] = {}
        self._last_audit_id = 0
        self._lock = threading.Lock()

    @property
    def last_audit_id(self) -> int:
        """The newest audit row learnt (``learn_audit`` reads after it)."""
        return self._last_audit_id

    def __len__(self) -> int:
        return len(self._deleted)

    def add(self, user_ids: Iterable[int], deleted_at: datetime) -> None:
        """Record users as deleted at a moment (naive UTC); a later deletion of one wins."""
        with self._lock:
            deleted = dict(self._deleted)
            for user in user_ids:
                previous = deleted.get(int(user))
                deleted[int(user)] = deleted_at if previous is None else max(previous, deleted_at)
            self._deleted = deleted  # replaced whole: readers take no lock

    def learn_audit(self, rows: Iterable[tuple[int, int, datetime]]) -> None:
        """Record the deletions of audit rows ``(id, user_id, deleted_at)`` in id order."""
        rows = list(rows)
        for _, user, at in rows:
            self.add([user], at)
        if rows:
            with self._lock:
                self._last_audit_id = max(self._last_audit_id, max(row[0] for row in rows))

    def deleted_since(self, user_id: int, moment: datetime) -> bool:
        """Return whether the user was deleted at or after a moment (naive UTC).

        A row about them made before then (an exposure waiting to be written)
        must not outlive the deletion.
        """
        deleted_at = self._deleted.get(user_id)
        return deleted_at is not None and deleted_at >= moment

    def forgets(self, user_id: int, version: ServingModel) -> bool:
        """Return whether a version must not use the user's training-time row.

        True when the user was deleted after the version's training began:
        the rows it read may have held their events.
        """
        deleted_at = self._deleted.get(user_id)
        return deleted_at is not None and deleted_at >= version.training_began
