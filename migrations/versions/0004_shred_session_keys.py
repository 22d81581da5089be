"""session_keys: per-session data keys for crypto-shredding; outbox index for pruning

Revision ID: 0004_shred_session_keys
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_shred_session_keys"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "session_keys",
        sa.Column("session_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("data_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    # Pruning sent rows and deleting a session's unsent ones.
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_index("ix_outbox_key", "outbox", ["key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_key", table_name="outbox")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("session_keys")
