"""contracts: ingest contracts and archival profiles (issue 20, item 5)

Revision ID: 0018_contracts
Revises: 0017_derogations
Create Date: 2026-12-06

Both tables start empty: an archive upgraded to this revision has no contract, and deposits as
before (docs/contracts.md, "Without a contract").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0018_contracts"
down_revision: str | Sequence[str] | None = "0017_derogations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("producers", sa.JSON(), nullable=False),
        sa.Column("profiles", sa.JSON(), nullable=False),
        sa.Column("record_types", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
        sa.Column("max_transfer_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_object_bytes", sa.BigInteger(), nullable=True),
        sa.Column("ocr_required", sa.Boolean(), nullable=False),
        sa.Column("antivirus_required", sa.Boolean(), nullable=False),
        sa.Column("created_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
    )
    op.create_table(
        "archival_profiles",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archival_profiles")),
    )


def downgrade() -> None:
    op.drop_table("archival_profiles")
    op.drop_table("contracts")
