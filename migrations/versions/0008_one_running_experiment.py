"""Let one experiment run at a time: a unique index over the rows whose status is running.

Servers that started experiments at the same moment could each find none
running and start their own; the database now refuses the second. A store
where several already run keeps the one started last (the name breaks a
tie) and stops the others as of now: their stopped_at says when, their
reports stay as they were, and the migration logs each name it stopped.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    experiments = sa.table(
        "experiments",
        sa.column("name", sa.String),
        sa.column("status", sa.String),
        sa.column("started_at", sa.DateTime),
        sa.column("stopped_at", sa.DateTime),
    )
    conn = op.get_bind()
    running = conn.execute(
        sa.select(experiments.c.name, experiments.c.started_at).where(
            experiments.c.status == "running"
        )
    ).all()
    # Never started (NULL) sorts as the oldest: the newest start is the last.
    newest_first = sorted(running, key=lambda r: (r.started_at or datetime.min, r.name))[::-1]
    stopped = [row.name for row in newest_first[1:]]
    if stopped:
        conn.execute(
            experiments.update()
            .where(experiments.c.name.in_(stopped))
            .values(status="stopped", stopped_at=datetime.now(UTC).replace(tzinfo=None))
        )
        logger.warning(
            "experiments %s were running beside %s, which started last: stopped them "
            "(one experiment runs at a time)",
            ", ".join(repr(name) for name in sorted(stopped)),
            repr(newest_first[0].name),
        )
    op.create_index(
        "uq_experiments_one_running",
        "experiments",
        ["status"],
        unique=True,
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("uq_experiments_one_running", table_name="experiments")
