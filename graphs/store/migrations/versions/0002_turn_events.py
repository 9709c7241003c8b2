"""Turn events: what the live session learns of a turn after its graph has run it (discarded, heard),
appended beside the graph's task records instead of rewriting them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KINDS = ("discarded", "heard")


def upgrade() -> None:
    op.create_table(
        "turn_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("track_id", sa.String(length=160), nullable=False),
        sa.Column("task_ids", sa.JSON(), nullable=False),
        sa.Column("kind", sa.Enum(*KINDS, name="turneventkind", native_enum=False, length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_turn_events_track_id", "turn_events", ["track_id"])


def downgrade() -> None:
    op.drop_index("ix_turn_events_track_id", table_name="turn_events")
    op.drop_table("turn_events")
