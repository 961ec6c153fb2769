"""pastell_replay: Pastell's mailbox is rebuilt from the journal

Revision ID: 0025_pastell_replay
Revises: 0024_register
Create Date: 2026-12-06

A rebuild replays ``pastell.received`` / ``pastell.accepted`` / ``pastell.rejected`` into
``pastell_messages`` (docs/pastell.md, "Après une reconstruction"), but accounts are not rebuilt:
``account_id`` becomes nullable (a message waits there for its account to be created again),
``login`` (the login that sent it, which binds it again) and ``sender_id`` (the account id at
receipt, which the journal and the ingest's ``transfers.submitted_by`` name) are filled from the
existing rows; ``archival_agency`` (the ACK's and ATR's sender) stays empty for them and is read
from their bordereau.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_pastell_replay"
down_revision: str | Sequence[str] | None = "0024_register"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pastell_messages", sa.Column("login", sa.String(length=255), nullable=True))
    op.add_column("pastell_messages", sa.Column("sender_id", sa.String(length=36), nullable=True))
    op.add_column(
        "pastell_messages", sa.Column("archival_agency", sa.String(length=255), nullable=True)
    )
    op.execute(
        "UPDATE pastell_messages SET sender_id = account_id, "
        "login = (SELECT users.login FROM users WHERE users.id = pastell_messages.account_id)"
    )
    with op.batch_alter_table("pastell_messages") as batch:
        batch.alter_column("account_id", existing_type=sa.String(length=36), nullable=True)
        batch.alter_column("login", existing_type=sa.String(length=255), nullable=False)
        batch.alter_column("sender_id", existing_type=sa.String(length=36), nullable=False)


def downgrade() -> None:
    # Messages rebuilt and not bound to an account again have nowhere to go.
    op.execute("DELETE FROM pastell_messages WHERE account_id IS NULL")
    with op.batch_alter_table("pastell_messages") as batch:
        batch.alter_column("account_id", existing_type=sa.String(length=36), nullable=False)
        batch.drop_column("archival_agency")
        batch.drop_column("sender_id")
        batch.drop_column("login")
