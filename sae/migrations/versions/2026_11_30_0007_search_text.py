"""catalog: each unit's searchable text, without case or accents

Revision ID: 0007_search_text
Revises: 0006_quarantine
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sae.catalog.text import search_text

revision: str = "0007_search_text"
down_revision: str | Sequence[str] | None = "0006_quarantine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000


def upgrade() -> None:
    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        # A default in the database too: a row written by other means than the catalogue
        # (an import script, raw SQL) is simply not found by ``q`` until it is folded.
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    # The units already catalogued: folded here, as the ingest now does for new ones.
    units = sa.table(
        "archive_units",
        sa.column("id", sa.String()),
        sa.column("title", sa.Text()),
        sa.column("description", sa.Text()),
        sa.column("sip_id", sa.String()),
        sa.column("search_text", sa.Text()),
    )
    bind = op.get_bind()
    update = (
        units.update()
        .where(units.c.id == sa.bindparam("unit_id"))
        .values(search_text=sa.bindparam("text"))
    )
    last = ""
    while True:  # keyset batches: nothing held open while the table is written
        batch = bind.execute(
            sa.select(units.c.id, units.c.title, units.c.description, units.c.sip_id)
            .where(units.c.id > last)
            .order_by(units.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        bind.execute(
            update,
            [{"unit_id": r.id, "text": search_text(r.title, r.description, r.sip_id)} for r in batch],
        )
        last = batch[-1].id


def downgrade() -> None:
    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        batch_op.drop_column("search_text")
