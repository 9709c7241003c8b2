"""The trace store's schema as it was before migrations: tracks, tasks, audio and annotations.

Databases made by the store's earlier create_all are stamped with this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("pending", "started", "completed", "failed", "cancelled")


def upgrade() -> None:
    op.create_table(
        "tracks",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("cluster", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tracks_cluster", "tracks", ["cluster"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("track_id", sa.String(length=160), nullable=False),
        sa.Column("cluster", sa.String(length=120), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("task_name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.Enum(*STATUSES, name="taskstatus", native_enum=False, length=16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("result_profile", sa.JSON(), nullable=False),
        sa.Column("latency_profile", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("track_id", "turn", "position"),
    )
    op.create_index("ix_tasks_track_id", "tasks", ["track_id"])
    op.create_table(
        "audio",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("track_id", sa.String(length=160), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audio_track_id", "audio", ["track_id"])
    op.create_table(
        "annotations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("track_id", sa.String(length=160), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=120), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_annotations_track_id", "annotations", ["track_id"])


def downgrade() -> None:
    for table in ("annotations", "audio", "tasks", "tracks"):
        op.drop_table(table)
