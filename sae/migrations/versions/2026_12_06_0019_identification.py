"""identification: the PRONOM format identified from each object's content

Revision ID: 0019_identification
Revises: 0018_contracts
Create Date: 2026-12-06

``data_objects`` gains the format the ingest identifies from the content against PRONOM
(``sae.ingest.identify``): its PUID, name and version. Objects catalogued before stay NULL:
they were not identified (the declared FormatId, if any, is in ``declared_format_id``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_identification"
down_revision: str | Sequence[str] | None = "0018_contracts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_objects") as batch:
        batch.add_column(sa.Column("format_puid", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("format_name", sa.Text(), nullable=True))
        batch.add_column(sa.Column("format_version", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_objects") as batch:
        batch.drop_column("format_version")
        batch.drop_column("format_name")
        batch.drop_column("format_puid")
