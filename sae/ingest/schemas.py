"""API shapes of transfers (distinct from the table)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class FaultOut(BaseModel):
    code: str
    message: str
    where: str | None = None


class TransferUnitOut(BaseModel):
    id: str
    sip_id: str
    title: str


class TransferObjectOut(BaseModel):
    id: str
    sip_id: str
    sha512: str | None
    size: int | None
    mime_type: str | None = None
    #: The PRONOM format identified from the content (None: no signature matched).
    format_puid: str | None = None
    url: str


class JournalRef(BaseModel):
    """Where a transfer stands in the journal, and the signed head that covers it."""

    leaf_index: int | None = None
    tree_size: int | None = None
    root_hash: str | None = None
    timestamp: str | None = None
    head_url: str | None = None


class TransferReply(BaseModel):
    """The JSON answer to a deposit (the ATR is the XML one)."""

    transfer_id: str
    status: str
    atr_url: str
    message_identifier: str | None = None
    units: list[TransferUnitOut] = []
    objects: list[TransferObjectOut] = []
    warnings: list[FaultOut] = []
    errors: list[FaultOut] = []
    journal: JournalRef | None = None


class TransferOut(BaseModel):
    """A transfer's record: status, counts, errors."""

    id: str
    status: str
    message_identifier: str | None
    transferring_agency: str | None
    archival_agency: str | None
    producer: str | None
    seda_version: str | None
    received_at: datetime
    completed_at: datetime | None
    sip_size: int | None
    sip_sha512: str | None
    unit_count: int
    object_count: int
    total_bytes: int
    atr_url: str
    errors: list[FaultOut]
    warnings: list[FaultOut]
    journal: JournalRef


class WithdrawalIn(BaseModel):
    """Why the transfer is withdrawn (kept in the journal)."""

    reason: str = Field(min_length=3, max_length=2000)


class WithdrawnCopy(BaseModel):
    offer: str
    key: str


class WithdrawalOut(BaseModel):
    """A transfer withdrawn within its quarantine: every copy deleted, journaled."""

    transfer_id: str
    status: str
    withdrawn_at: datetime
    units: int
    objects: int
    copies_deleted: list[WithdrawnCopy]
