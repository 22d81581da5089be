"""Corrections and therapist decisions kept on the session row (gateway-owned):
edited segment texts (with the original kept), and a cancellation with its reason.

Revision ID: 0007_web
Revises: 0004_faults_redrives
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_web"
down_revision: Union[str, None] = "0004_faults_redrives"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("segment_edits", postgresql.JSONB(), server_default="{}", nullable=False))
    op.add_column("sessions", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sessions", sa.Column("cancel_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "cancel_reason")
    op.drop_column("sessions", "cancelled_at")
    op.drop_column("sessions", "segment_edits")
