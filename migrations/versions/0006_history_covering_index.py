"""Cover a user's purchase read with an index: (user_id, product_id, purchased).

Every uncached /recommend reads which products a user touched and bought;
with every column it reads in the index, the read never visits the table
(SQLite: a covering index; PostgreSQL: an index-only scan). It replaces the
index on user_id alone, whose work the new index's first column does, so a
write still updates the same number of indexes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_interactions_user_products", "interactions", ["user_id", "product_id", "purchased"]
    )
    op.drop_index("ix_interactions_user_id", table_name="interactions")


def downgrade() -> None:
    op.create_index("ix_interactions_user_id", "interactions", ["user_id"])
    op.drop_index("ix_interactions_user_products", table_name="interactions")
