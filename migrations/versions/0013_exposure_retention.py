"""Index the A/B exposures by the moment they were served.

``prune-events`` deletes the exposures served before the retention's cutoff
as it deletes the events: with this index each of its transactions finds the
next thousand of them without reading the whole table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_exposures_served_at", "exposures", ["served_at"])


def downgrade() -> None:
    op.drop_index("ix_exposures_served_at", table_name="exposures")
