"""alerts: standing conditions sent by mail or webhook, and the journal cursor they read from

Revision ID: 0012_alerts
Revises: 0011_witnessing
Create Date: 2026-12-06

The cursor starts empty: the first round of the alert worker sets it at the journal's end, so
an upgraded archive is not alerted about its whole history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0012_alerts"
down_revision: str | Sequence[str] | None = "0011_witnessing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("condition", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("condition", "subject", name=op.f("uq_alerts_condition")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_pending"), ["pending"], unique=False)
    op.create_table(
        "alert_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_cursor")),
    )


def downgrade() -> None:
    op.drop_table("alert_cursor")
    op.drop_table("alerts")
