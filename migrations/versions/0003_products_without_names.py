"""Let products have no name, category or price: a log without its catalog shows ids.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (("name", sa.String(200)), ("category", sa.String(100)), ("price", sa.Float()))


def upgrade() -> None:
    # batch mode: SQLite cannot alter a column in place, so Alembic copies the table.
    with op.batch_alter_table("products") as batch:
        for name, kind in _COLUMNS:
            batch.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        for name, kind in _COLUMNS:
            batch.alter_column(name, existing_type=kind, nullable=False)
