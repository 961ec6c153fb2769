"""leases: background work one process of the installation does at a time

Revision ID: 0014_leases
Revises: 0012_alerts
Create Date: 2026-12-06

The sealer (one head per spacing for the installation), the auditor's round and the witnesses'
round take a lease (``sae.leases``) instead of each server process doing them on its own.
The table starts empty: each lease's row is made by its first taker.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0014_leases"
down_revision: str | Sequence[str] | None = "0012_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
