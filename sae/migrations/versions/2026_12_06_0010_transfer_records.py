"""storage: metadata_copies.transfer_id, the copies of each accepted transfer's description

Revision ID: 0010_transfer_records
Revises: 0009_metadata_copies
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_transfer_records"
down_revision: str | Sequence[str] | None = "0009_metadata_copies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Transfers accepted before this revision get no description on the offers (and no rows):
    # writing them afterwards is `sae fsck --repair`'s filling of offers, a later piece.
    with op.batch_alter_table("metadata_copies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transfer_id", sa.String(length=36), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_metadata_copies_transfer_id"), ["transfer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("metadata_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metadata_copies_transfer_id"))
        batch_op.drop_column("transfer_id")
