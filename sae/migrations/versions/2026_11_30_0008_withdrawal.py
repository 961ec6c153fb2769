"""ingest: a transfer may be withdrawn within its quarantine (status WITHDRAWING, WITHDRAWN)

Revision ID: 0008_withdrawal
Revises: 0007_search_text
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_withdrawal"
down_revision: str | Sequence[str] | None = "0007_search_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.alter_column(
            "status", existing_type=sa.String(length=8), type_=sa.String(length=16)
        )


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.alter_column(
            "status", existing_type=sa.String(length=16), type_=sa.String(length=8)
        )
