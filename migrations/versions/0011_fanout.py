"""transcriber fan-out: a long recording's chunks and their assembly state

Revision ID: 0007_fanout
Revises: 0004_faults_redrives
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_fanout"
down_revision: Union[str, None] = "0007_speakers"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "transcript_fanouts",
        sa.Column("session_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("plan", postgresql.JSONB(), nullable=False),
        sa.Column("language", sa.Text()),
        sa.Column("notes_backend", sa.Text()),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("traceparent", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "transcript_chunks",
        sa.Column("session_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("transcript_fanouts.session_id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("audio_uri", sa.Text(), nullable=False),
        sa.Column("result_uri", sa.Text()),
        sa.Column("worker", sa.Text()),
        sa.Column("processing_s", sa.Float()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("session_id", "idx"),
    )


def downgrade() -> None:
    op.drop_table("transcript_chunks")
    op.drop_table("transcript_fanouts")
