"""Event types, event ids and imported files: interactions.type, .value, .event_id.

Every existing row becomes a click or a purchase, as its ``purchased`` says
(nothing else changes, so no event is lost and every rating stays as it
was). The column is added with the default ``click`` (constant: PostgreSQL
adds it without rewriting the table, SQLite without copying it), then the
purchases are updated. The history index gains the type and value it now
reads; ``event_id`` is unique where given; ``imported_files`` keeps the
SHA-256 of each log imported without event ids.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "interactions",
        sa.Column("type", sa.String(16), nullable=False, server_default="click"),
    )
    op.add_column("interactions", sa.Column("value", sa.SmallInteger, nullable=True))
    op.add_column("interactions", sa.Column("event_id", sa.String(64), nullable=True))
    op.execute(sa.text("UPDATE interactions SET type = 'purchase' WHERE purchased"))
    op.create_index(
        "ix_interactions_user_product_types",
        "interactions",
        ["user_id", "product_id", "type", "value"],
    )
    op.drop_index("ix_interactions_user_products", table_name="interactions")
    op.create_index("uq_interactions_event_id", "interactions", ["event_id"], unique=True)
    op.create_table(
        "imported_files",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("imported_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    # Types other than click and purchase have no place in the older schema:
    # a downgrade keeps their rows as clicks (purchased stays as it is).
    op.drop_table("imported_files")
    op.drop_index("uq_interactions_event_id", table_name="interactions")
    op.create_index(
        "ix_interactions_user_products", "interactions", ["user_id", "product_id", "purchased"]
    )
    op.drop_index("ix_interactions_user_product_types", table_name="interactions")
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("event_id")
        batch.drop_column("value")
        batch.drop_column("type")
