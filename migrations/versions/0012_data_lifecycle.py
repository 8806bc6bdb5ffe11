"""Add products.available, the user_deletions audit table and indexes by user.

An unavailable product is never recommended (``PUT /products`` with
``available: false``); every existing product stays available. Deleting a
user leaves one audit row: who deleted them, when, and how many rows of each
table went (never the data). Exposures and their events gain an index by user
so that a deletion finds them without reading the whole tables.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
# 0011 (event types, on another branch) comes between: at merge this becomes "0011".
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(
            sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true())
        )
    op.create_table(
        "user_deletions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=False),
        sa.Column("deleted_by", sa.String(64), nullable=False),
        sa.Column("rows", sa.JSON, nullable=False),
    )
    op.create_index("ix_exposures_user", "exposures", ["user_id"])
    op.create_index("ix_exposure_events_user", "exposure_events", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_exposure_events_user", table_name="exposure_events")
    op.drop_index("ix_exposures_user", table_name="exposures")
    op.drop_table("user_deletions")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("available")
