"""therapist_voices: a therapist's enrolled voice, as a speaker embedding (issue 14 item 4)

The gateway writes a pending row with the decoded sample; the diarizer, which owns the
embedding model, replaces the sample with its embedding (ADR 0010). Deleting the therapist
deletes the row (ON DELETE CASCADE).

Revision ID: 0007_speakers
Revises: 0004_faults_redrives
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_speakers"
down_revision: Union[str, None] = "0007_quality"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "therapist_voices",
        sa.Column("therapist_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("therapists.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("sample_pcm", sa.LargeBinary(), nullable=True),
        sa.Column("sample_s", sa.Float(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_therapist_voices_pending", "therapist_voices", ["requested_at"],
                    postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_therapist_voices_pending", table_name="therapist_voices")
    op.drop_table("therapist_voices")
