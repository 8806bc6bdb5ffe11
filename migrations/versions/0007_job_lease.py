"""Add training_jobs.heartbeat_at: the lease of a job a worker has claimed.

A worker beats (sets the column to now) while it holds a job; a running job
whose last beat is older than the lease is failed by the next worker poll or
retrain request, so a worker killed mid-job no longer blocks retraining until
someone restarts a worker. The column is nullable and existing rows keep every
value: a job claimed before this revision has no beat, and is closed as before
by the next start that finds the training lock free.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("heartbeat_at")
