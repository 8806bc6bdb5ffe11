"""The history index covers each event's time: serving reads a product's latest.

A model that weights a user's recent products (EASE's ``recency``) needs,
per product, when the user last had an event with it. The history read of
every uncached answer takes ``max(created_at)`` per product and type; with
``created_at`` in the index that read stays on the index alone, as it was.
The new index is built before the old one is dropped, so the read is
covered throughout.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_interactions_user_product_history",
        "interactions",
        ["user_id", "product_id", "type", "value", "created_at"],
    )
    op.drop_index("ix_interactions_user_product_types", table_name="interactions")


def downgrade() -> None:
    op.create_index(
        "ix_interactions_user_product_types",
        "interactions",
        ["user_id", "product_id", "type", "value"],
    )
    op.drop_index("ix_interactions_user_product_history", table_name="interactions")
