"""session_keys: per-session data keys for crypto-shredding; outbox index for pruning

Revision ID: 0004_shred_session_keys
Revises: 0003
"""
from typing import Sequence, Union

import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_shred_session_keys"
down_revision: Union[str, None] = "0004_auth_accounts"
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
    # Sessions uploaded before keys existed get one now, so their later events are sealed
    # (a session without a key counts as deleted). Their earlier, clear events stay as they were.
    connection = op.get_bind()
    keys = sa.table("session_keys", sa.column("session_id", postgresql.UUID(as_uuid=True)),
                    sa.column("data_key", sa.LargeBinary()))
    existing = [row.id for row in connection.execute(sa.text("SELECT id FROM sessions"))]
    if existing:
        op.bulk_insert(keys, [{"session_id": sid, "data_key": os.urandom(32)} for sid in existing])
    # Pruning sent rows and deleting a session's unsent ones.
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_index("ix_outbox_key", "outbox", ["key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_key", table_name="outbox")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("session_keys")
