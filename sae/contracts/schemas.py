"""API shapes of contracts and archival profiles."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class ContractIn(BaseModel):
    """A contract as the archivist writes it. Empty lists do not restrict."""

    id: str = Field(description="The ArchivalAgreement value SIPs carry.")
    name: str
    producers: list[str] = Field(description="Producing services (OriginatingAgencyIdentifier).")
    description: str = ""
    status: str = Field(default="active", description="active | inactive")
    valid_from: date | None = None
    valid_until: date | None = None
    profiles: list[str] = Field(
        default_factory=list, description="Archival profile ids; non-empty: a SIP must name one."
    )
    record_types: list[str] = Field(
        default_factory=list,
        description="Record types of the schedule (or AppraisalRule ids) the units may have.",
    )
    rules: list[str] = Field(default_factory=list, description="Rule ids the SIP may name.")
    formats: list[str] = Field(
        default_factory=list, description="PRONOM ids (fmt/354) and MIME types (application/pdf)."
    )
    max_transfer_bytes: int | None = None
    max_object_bytes: int | None = None
    ocr_required: bool = False
    antivirus_required: bool = False


class ContractOut(ContractIn):
    created_at: datetime
    updated_at: datetime


class ProfileOut(BaseModel):
    id: str = Field(description="The ArchivalProfile value SIPs carry.")
    name: str
    kind: str
    filename: str
    sha512: str
    size: int
    status: str
    created_at: datetime
    updated_at: datetime
    document_url: str
