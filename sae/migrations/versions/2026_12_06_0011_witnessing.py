"""journal: each head's checkpoint note, and the witnesses' cosignatures

Revision ID: 0011_witnessing
Revises: 0010_transfer_records
Create Date: 2026-12-06

Heads sealed before this revision keep no note (``note`` NULL): they were never offered to a
witness, and signing them now would claim a note the archive did not publish at the time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0011_witnessing"
down_revision: str | Sequence[str] | None = "0010_transfer_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tree_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.LargeBinary(), nullable=True))
    op.create_table(
        "head_cosignatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("cosigned_at", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("received_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_head_cosignatures")),
        sa.UniqueConstraint("tree_size", "witness", name=op.f("uq_head_cosignatures_tree_size")),
    )
    with op.batch_alter_table("head_cosignatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_head_cosignatures_tree_size"), ["tree_size"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_head_cosignatures_witness"), ["witness"], unique=False)


def downgrade() -> None:
    op.drop_table("head_cosignatures")
    with op.batch_alter_table("tree_heads", schema=None) as batch_op:
        batch_op.drop_column("note")
