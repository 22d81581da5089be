"""session_results.quality_warnings: the transcript quality checks of the latest merge
(kinds, times and numbers only, no transcript text: PHI-free, so stored as it is)

Revision ID: 0007_quality
Revises: 0004_faults_redrives
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_quality"
down_revision: Union[str, None] = "0007_review"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("session_results", sa.Column("quality_warnings", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("session_results", "quality_warnings")
