"""accounts and sign-in sessions: roles, deactivation, refresh-token families, audit targets

Revision ID: 0004_auth_accounts
Revises: 0003

therapists.role (therapist or admin) and therapists.active; token_families (one per
sign-in, revocable) and refresh_tokens (SHA-256 of each issued refresh token, used_at set
when exchanged, so a replay is detected); audit_log.target_id (the account an admin acted on).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_auth_accounts"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("therapists", sa.Column("role", sa.Text(), server_default="therapist", nullable=False))
    op.add_column("therapists", sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False))
    op.add_column("audit_log", sa.Column("target_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_table(
        "token_families",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("therapist_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("therapists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.Text()),
    )
    op.create_index("ix_token_families_therapist_id", "token_families", ["therapist_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text(), primary_key=True),
        sa.Column("family_id", postgresql.UUID(as_uuid=True),
                  sa.ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])


def downgrade() -> None:
    op.drop_table("refresh_tokens")
    op.drop_table("token_families")
    op.drop_column("audit_log", "target_id")
    op.drop_column("therapists", "active")
    op.drop_column("therapists", "role")
