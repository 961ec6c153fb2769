"""Where each copy of each data object lives, and what its last check found."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow

if TYPE_CHECKING:
    from sae.storage.base import StoredObject


class ObjectCopy(Base):
    """One copy of a data object on one storage offer."""

    __tablename__ = "object_copies"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("data_objects.id"), index=True)
    offer: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    version_id: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha512: Mapped[str] = mapped_column(String(128))
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_checked_at: Mapped[datetime | None]
    last_check_ok: Mapped[bool | None]
    #: While the copy is locked in GOVERNANCE (the offer's quarantine): when the lock may be
    #: sealed into COMPLIANCE (``sae.storage.quarantine``). None once sealed, or never locked so.
    quarantine_ends_at: Mapped[datetime | None] = mapped_column(index=True)


Index("ix_object_copies_offer_key", ObjectCopy.offer, ObjectCopy.key)


class MetadataCopy(Base):
    """One copy, on one offer, of something SAE writes beside the content so that the offers
    alone can rebuild the archive: the journal's segments (``kind`` = ``journal_segment``,
    ``tree_size`` = the head the segment ends with) and each accepted transfer's description
    (``kind`` = ``transfer``, ``transfer_id``: ``transfers/<id>.zip``,
    ``sae.ingest.transfer_record``); later kinds (records of state) go through the same table
    (issue 17).

    The offer is the copy's truth; this row says it was written, read back and checked, and when
    its quarantine ends, exactly as ``object_copies`` does for content.
    """

    __tablename__ = "metadata_copies"
    __table_args__ = (UniqueConstraint("offer", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    offer: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    tree_size: Mapped[int | None] = mapped_column(BigInteger)
    #: The transfer a ``transfer`` copy describes (its locks and holds follow its objects').
    transfer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    sha512: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: As ``ObjectCopy.quarantine_ends_at``: when the GOVERNANCE lock may become COMPLIANCE.
    quarantine_ends_at: Mapped[datetime | None] = mapped_column(index=True)

    @classmethod
    def of_copy(
        cls,
        offer: str,
        key: str,
        stored: StoredObject | None,
        *,
        kind: str,
        sha512: str,
        size: int,
        tree_size: int | None = None,
        transfer_id: str | None = None,
    ) -> MetadataCopy:
        """The row of the copy ``offer`` holds under ``key``, dated as the offer reports it
        (``stored``, its head; now when the offer gives no date, or no head)."""
        return cls(
            offer=offer,
            key=key,
            kind=kind,
            tree_size=tree_size,
            transfer_id=transfer_id,
            sha512=sha512,
            size=size,
            stored_at=(stored.stored_at if stored is not None else None) or utcnow(),
            quarantine_ends_at=stored.quarantine_ends_at if stored is not None else None,
        )


# The publisher's watermark: the last segment recorded on an offer.
Index(
    "ix_metadata_copies_offer_kind_tree_size",
    MetadataCopy.offer,
    MetadataCopy.kind,
    MetadataCopy.tree_size,
)


class Audit(Base):
    """A fixity audit: a job row claimed by one worker, resumable from ``cursor``.

    ``status`` is ``running`` from creation until ``done`` or ``failed``; a worker owns it while
    ``claimed_by`` is set and its ``heartbeat_at`` is fresh, so another instance takes over an
    audit whose worker died, from the last committed ``cursor`` (an ``object_copies.id``).
    """

    __tablename__ = "audits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    offers: Mapped[list[str] | None] = mapped_column(JSON)
    sample_rate: Mapped[float] = mapped_column(Float, default=1.0)
    repair: Mapped[bool] = mapped_column(Boolean, default=True)
    requested_by: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    checked: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class AuditProblem(Base):
    """A copy found missing or corrupt by an audit, and whether it was repaired."""

    __tablename__ = "audit_problems"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id"), index=True)
    object_id: Mapped[str] = mapped_column(String(36))
    copy_id: Mapped[int | None] = mapped_column(BigInteger)
    offer: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # missing | corrupt
    repaired: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[str] = mapped_column(Text, default="")
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
