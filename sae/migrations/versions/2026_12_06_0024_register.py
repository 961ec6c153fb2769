"""access: the register of communications (Code du patrimoine L213-3 and the annual report)

Revision ID: 0024_register
Revises: 0023_search_perf
Create Date: 2026-12-06

One new table, empty at upgrade: ``communications``, one row per unit communicated to a reader
or a depositor (metadata, object, DIP) with its basis, written with the read's journal event and
replayed from it. Reads journaled before this revision carry no basis: they stay in the journal
and are not in the register.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0024_register"
down_revision: str | Sequence[str] | None = "0023_search_perf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "communications",
        sa.Column("leaf", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("derogation_id", sa.String(length=36), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("leaf", "unit_id", name=op.f("pk_communications")),
    )
    op.create_index(op.f("ix_communications_at"), "communications", ["at"])
    op.create_index(op.f("ix_communications_login"), "communications", ["login"])
    op.create_index(op.f("ix_communications_basis"), "communications", ["basis"])
    op.create_index("ix_communications_unit_id", "communications", ["unit_id"])


def downgrade() -> None:
    op.drop_index("ix_communications_unit_id", table_name="communications")
    op.drop_index(op.f("ix_communications_basis"), table_name="communications")
    op.drop_index(op.f("ix_communications_login"), table_name="communications")
    op.drop_index(op.f("ix_communications_at"), table_name="communications")
    op.drop_table("communications")
