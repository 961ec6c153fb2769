"""storage: metadata_copies, what SAE writes to the offers beside the content (journal segments)

Revision ID: 0009_metadata_copies
Revises: 0008_withdrawal
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0009_metadata_copies"
down_revision: str | Sequence[str] | None = "0008_withdrawal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing journals get no rows: the publisher finds every head without a segment on an
    # offer and writes them, oldest first, over several rounds.
    op.create_table(
        "metadata_copies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("offer", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=True),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("quarantine_ends_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadata_copies")),
        sa.UniqueConstraint("offer", "key", name=op.f("uq_metadata_copies_offer")),
    )
    with op.batch_alter_table("metadata_copies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_metadata_copies_offer_kind_tree_size",
            ["offer", "kind", "tree_size"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_metadata_copies_quarantine_ends_at"),
            ["quarantine_ends_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("metadata_copies")
