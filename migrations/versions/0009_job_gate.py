"""Add training_jobs.gate: the quality gate's record of the version a job trained.

A job now ends ``rejected`` when the gate kept its version from going live;
the record holds the decision, the metric, the tolerance, the candidate's and
the live version's figures and the split they were measured on. The column is
nullable: jobs recorded before this revision have no gate record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("gate", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("gate")
