"""Contract and archival profile tables (archival configuration, replayed from the journal)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow

#: The clauses of a contract, in the order its answers and journal leaves give them.
CLAUSE_KEYS = (
    "id",
    "name",
    "description",
    "status",
    "valid_from",
    "valid_until",
    "producers",
    "profiles",
    "record_types",
    "rules",
    "formats",
    "max_transfer_bytes",
    "max_object_bytes",
    "ocr_required",
    "antivirus_required",
)


class Contract(Base):
    """An ingest contract. Its id is the value SIPs carry in ``ArchivalAgreement``.

    The list clauses are JSON lists; an empty list means the clause does not restrict.
    """

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    #: ``active`` or ``inactive`` (a disabled contract refuses every SIP naming it).
    status: Mapped[str] = mapped_column(String(16), default="active")
    valid_from: Mapped[date | None]
    valid_until: Mapped[date | None]
    #: Producing services (OriginatingAgencyIdentifier) the contract is for.
    producers: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Archival profile ids a SIP may name (``ArchivalProfile``); non-empty: one is required.
    profiles: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Record types (a schedule's ``record_type`` or an AppraisalRule id) the units may have.
    record_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Rule ids (of any category) the SIP may name.
    rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Accepted formats: PRONOM ids (``fmt/354``) and MIME types (``application/pdf``).
    formats: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_transfer_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_object_bytes: Mapped[int | None] = mapped_column(BigInteger)
    ocr_required: Mapped[bool] = mapped_column(default=False)
    antivirus_required: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def clauses(self) -> dict[str, Any]:
        """The contract as plain values (the journal's payload and the API's answer)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "producers": list(self.producers),
            "profiles": list(self.profiles),
            "record_types": list(self.record_types),
            "rules": list(self.rules),
            "formats": list(self.formats),
            "max_transfer_bytes": self.max_transfer_bytes,
            "max_object_bytes": self.max_object_bytes,
            "ocr_required": self.ocr_required,
            "antivirus_required": self.antivirus_required,
        }


class ArchivalProfile(Base):
    """An archival profile (RelaxNG), stored whole with its digest. Its id is the value SIPs
    carry in ``ArchivalProfile``. The document is also in its journal leaf (on the offers)."""

    __tablename__ = "archival_profiles"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    #: ``rng`` (RelaxNG); the only kind applied at ingest.
    kind: Mapped[str] = mapped_column(String(16), default="rng")
    filename: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[bytes] = mapped_column(LargeBinary)
    sha512: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
