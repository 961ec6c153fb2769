"""catalog: the capture record of scanned objects (scanner, resolution, operator, date, paper)

Revision ID: 0020_scan_chain
Revises: 0019_identification
Create Date: 2026-12-06

``data_objects.scan_chain`` (JSON, nullable): how a scan was made, from its manifest's
``Metadata/Image`` MIX record (``sae deposit``'s scan columns; NF Z42-026's capture record).
Objects archived before it have none: nothing recorded one (their manifests' ``Metadata``
was not read), so NULL is what they hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_scan_chain"
down_revision: str | Sequence[str] | None = "0019_identification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_objects") as batch:
        batch.add_column(sa.Column("scan_chain", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_objects") as batch:
        batch.drop_column("scan_chain")
