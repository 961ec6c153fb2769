"""The transfers table: one row per SIP received, accepted or refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class Transfer(Base):
    """A SIP received. A refused one is kept (with its errors) as evidence of the refusal."""

    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_identifier: Mapped[str | None] = mapped_column(String(255))
    transferring_agency: Mapped[str | None] = mapped_column(String(255))
    archival_agency: Mapped[str | None] = mapped_column(String(255))
    producer: Mapped[str | None] = mapped_column(String(255), index=True)
    seda_version: Mapped[str | None] = mapped_column(String(8))
    # OK | KO (the ATR's ReplyCode); WITHDRAWING, WITHDRAWN (``sae.ingest.withdrawal``)
    status: Mapped[str] = mapped_column(String(16), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    submitted_by: Mapped[str | None] = mapped_column(String(36))
    sip_size: Mapped[int | None] = mapped_column(BigInteger)
    sip_sha512: Mapped[str | None] = mapped_column(String(128))
    unit_count: Mapped[int] = mapped_column(default=0)
    object_count: Mapped[int] = mapped_column(default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    atr: Mapped[bytes | None] = mapped_column(LargeBinary)


# The newest reception: whether deposits are arriving (sae.extraction.worker); lists, newest first.
Index("ix_transfers_received_at", Transfer.received_at)

# The same MessageIdentifier from the same transferring agency may be accepted once; a refused
# transfer can be corrected and sent again under the same identifier.
Index(
    "uq_transfers_accepted_message",
    Transfer.transferring_agency,
    Transfer.message_identifier,
    unique=True,
    sqlite_where=text("status = 'OK'"),
    postgresql_where=text("status = 'OK'"),
)
