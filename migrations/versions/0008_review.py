"""Review and sign-off of clinical notes: every version of a session's notes (the machine's
first, then each human edit), the review state (current version, signature) and addenda.
All three hang off the session row with ON DELETE CASCADE, so DELETE /api/sessions/{id}
removes them in its own transaction (docs/adr/0008-notes-review-and-sign-off.md).

Revision ID: 0007_review
Revises: 0004_faults_redrives
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_review"
down_revision: Union[str, None] = "0007_web"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _session_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "note_reviews",
        sa.Column("session_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("signed_version", sa.Integer(), nullable=True),
        sa.Column("signed_by", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("signed_by_name", sa.Text(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accept_machine_after", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
        _session_fk(),
    )
    op.create_table(
        "note_versions",
        sa.Column("session_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("notes", postgresql.JSONB(), nullable=False),
        sa.Column("author_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("author_name", sa.Text(), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("changes", postgresql.JSONB(), server_default="[]", nullable=False),
        sa.Column("source_digest", sa.Text(), nullable=True),
        sa.Column("engine", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "version"),
        _session_fk(),
    )
    op.create_table(
        "note_addenda",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("author_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        _session_fk(),
    )
    op.create_index("ix_note_addenda_session", "note_addenda", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_note_addenda_session", table_name="note_addenda")
    op.drop_table("note_addenda")
    op.drop_table("note_versions")
    op.drop_table("note_reviews")
