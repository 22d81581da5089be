"""session_status re-drive accounting, and the outbox looked up by session and topic
(the progress reconciler re-publishes a stranded session's events from it)

Revision ID: 0004_faults_redrives
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_faults_redrives"
down_revision: Union[str, None] = "0004_shred_session_keys"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("session_status", sa.Column("redrives", postgresql.JSONB(), server_default="{}", nullable=False))
    op.add_column("session_status", sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_key_topic", "outbox", ["key", "topic", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_key_topic", table_name="outbox")
    op.drop_column("session_status", "redriven_at")
    op.drop_column("session_status", "redrives")
