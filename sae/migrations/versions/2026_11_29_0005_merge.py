"""Merge the journal, storage and retention branches into one head.

Revision ID: 0005_merge
Revises: 0002_journal, 0003_storage, 0004_retention
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005_merge"
down_revision: str | Sequence[str] | None = ("0002_journal", "0003_storage", "0004_retention")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to do: the three branches touch different tables."""


def downgrade() -> None:
    """Nothing to undo."""
