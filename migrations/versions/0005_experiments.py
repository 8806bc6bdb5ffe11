"""Add experiments, exposures and exposure_events: A/B tests and what they served.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("baseline_rate", sa.Float, nullable=False),
        sa.Column("mde", sa.Float, nullable=False),
        sa.Column("planned_per_variant", sa.Integer, nullable=False),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("stopped_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "exposures",
        sa.Column("recommendation_id", sa.String(32), primary_key=True),
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("product_ids", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("strategy", sa.String(32), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("failed", sa.Boolean, nullable=False),
        sa.Column("served_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_exposures_experiment_user", "exposures", ["experiment", "user_id"])
    op.create_table(
        "exposure_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("recommendation_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("purchased", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_exposure_events_recommendation", "exposure_events", ["recommendation_id"])


def downgrade() -> None:
    op.drop_index("ix_exposure_events_recommendation", table_name="exposure_events")
    op.drop_table("exposure_events")
    op.drop_index("ix_exposures_experiment_user", table_name="exposures")
    op.drop_table("exposures")
    op.drop_table("experiments")
