"""access: dérogations (Code du patrimoine L213-3) and the units they open to a reader

Revision ID: 0017_derogations
Revises: 0016_accounts
Create Date: 2026-12-06

Two new tables, empty at upgrade: ``derogations`` (a reader's request and the archivist's
decision) and ``derogation_units`` (a granted dérogation's units, with the reader and the last
day, indexed for the checks of every search and read).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0017_derogations"
down_revision: str | Sequence[str] | None = "0016_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "derogations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("units", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("decided_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_derogations")),
    )
    op.create_index(op.f("ix_derogations_user_id"), "derogations", ["user_id"])
    op.create_index(op.f("ix_derogations_state"), "derogations", ["state"])
    op.create_table(
        "derogation_units",
        sa.Column("derogation_id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["derogation_id"],
            ["derogations.id"],
            name=op.f("fk_derogation_units_derogation_id_derogations"),
        ),
        sa.PrimaryKeyConstraint("derogation_id", "unit_id", name=op.f("pk_derogation_units")),
    )
    op.create_index("ix_derogation_units_open", "derogation_units", ["user_id", "unit_id", "until"])


def downgrade() -> None:
    op.drop_index("ix_derogation_units_open", table_name="derogation_units")
    op.drop_table("derogation_units")
    op.drop_index(op.f("ix_derogations_state"), table_name="derogations")
    op.drop_index(op.f("ix_derogations_user_id"), table_name="derogations")
    op.drop_table("derogations")
