"""transfers_received: an index on ``transfers.received_at``

Revision ID: 0026_transfers_received
Revises: 0025_pastell_replay
Create Date: 2026-12-06

The background text reader waits while deposits arrive (``SAE_TEXT_WAIT_MINUTES``): it asks for
the newest transfer's reception at each round, an index look-up instead of a scan of every
transfer. The console's and the API's lists of transfers, newest first, use it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026_transfers_received"
down_revision: str | Sequence[str] | None = "0025_pastell_replay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_transfers_received_at", "transfers", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_transfers_received_at", table_name="transfers")
