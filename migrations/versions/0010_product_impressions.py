"""Add product_impressions, how often each product was shown, and exposures.explored_ids.

Exploration gives products that were rarely shown a slot; each
serving process counts what it shows and adds its counts here in batches.
An A/B test's exposures name the explored products of each list, so its
report can tell them apart (null for lists served before this migration).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_impressions",
        sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
    )
    op.add_column("exposures", sa.Column("explored_ids", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exposures") as batch:
        batch.drop_column("explored_ids")
    op.drop_table("product_impressions")
