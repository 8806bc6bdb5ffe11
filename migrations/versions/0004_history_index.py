"""Index a user's interactions by time, for GET /users/<id>/history (newest first, paged).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_interactions_user_created", "interactions", ["user_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_interactions_user_created", table_name="interactions")
