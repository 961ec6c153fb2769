"""storage: when each copy's quarantine (GOVERNANCE lock) may be sealed into COMPLIANCE

Revision ID: 0006_quarantine
Revises: 0005_merge
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0006_quarantine"
down_revision: str | Sequence[str] | None = "0005_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("object_copies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quarantine_ends_at", sae.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_object_copies_quarantine_ends_at"), ["quarantine_ends_at"], unique=False
        )
    # Copies written before this revision: what their lock is was not recorded. Each is due at
    # once; the sealer asks its offer, seals what is still in GOVERNANCE past its window, and
    # clears the others.
    copies = sa.table(
        "object_copies",
        sa.column("stored_at", sae.db.UTCDateTime(timezone=True)),
        sa.column("quarantine_ends_at", sae.db.UTCDateTime(timezone=True)),
    )
    op.execute(copies.update().values(quarantine_ends_at=copies.c.stored_at))


def downgrade() -> None:
    with op.batch_alter_table("object_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_object_copies_quarantine_ends_at"))
        batch_op.drop_column("quarantine_ends_at")
