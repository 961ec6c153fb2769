"""pastell: the transfers Pastell's connectors sent, chunked uploads

Revision ID: 0022_pastell
Revises: 0021_object_text
Create Date: 2026-12-06

Pastell's as@lae connector deposits through ``$SAE_PASTELL_PREFIX`` (docs/pastell.md):
``pastell_messages`` (each transfer received, its upload on disk, its ACK and ATR; also the
queue of the worker that ingests them) and ``pastell_chunk_sessions`` (chunked uploads under
way), both bound to the service account (``users``) that sent them. The tables start empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0022_pastell"
down_revision: str | Sequence[str] | None = "0021_object_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pastell_chunk_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("security_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("number_of_chunks", sa.Integer(), nullable=True),
        sa.Column("next_index", sa.Integer(), nullable=False),
        sa.Column("received_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["users.id"],
            name=op.f("fk_pastell_chunk_sessions_account_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pastell_chunk_sessions")),
    )
    op.create_index(
        op.f("ix_pastell_chunk_sessions_message_id"),
        "pastell_chunk_sessions",
        ["message_id"],
        unique=False,
    )
    op.create_table(
        "pastell_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("agency", sa.String(length=255), nullable=False),
        sa.Column("transfer_identifier", sa.String(length=255), nullable=False),
        sa.Column("seda_version", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bordereau", sa.LargeBinary(), nullable=False),
        sa.Column("bordereau_sha256", sa.String(length=64), nullable=False),
        sa.Column("attachments", sa.String(length=80), nullable=True),
        sa.Column("attachments_bytes", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("completed_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("transfer_id", sa.String(length=36), nullable=True),
        sa.Column("ack", sa.LargeBinary(), nullable=True),
        sa.Column("atr", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["users.id"], name=op.f("fk_pastell_messages_account_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pastell_messages")),
        sa.UniqueConstraint(
            "account_id",
            "agency",
            "transfer_identifier",
            name=op.f("uq_pastell_messages_account_id"),
        ),
    )
    op.create_index(
        op.f("ix_pastell_messages_account_id"), "pastell_messages", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_pastell_messages_status"), "pastell_messages", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pastell_messages_status"), table_name="pastell_messages")
    op.drop_index(op.f("ix_pastell_messages_account_id"), table_name="pastell_messages")
    op.drop_table("pastell_messages")
    op.drop_index(
        op.f("ix_pastell_chunk_sessions_message_id"), table_name="pastell_chunk_sessions"
    )
    op.drop_table("pastell_chunk_sessions")
