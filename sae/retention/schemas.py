"""API shapes of the referential, holds and disposal lists (INTERFACE.md names are fixed)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class RuleOut(BaseModel):
    id: str
    type: str
    value: str
    description: str
    duration: int | None
    measurement: str | None
    updated_at: datetime
    meta: dict[str, Any] | None = None


class ImportSummary(BaseModel):
    added: int
    changed: int
    removed: int
    total: int
    recomputed_units: int = 0
    warnings: list[str] = Field(default_factory=list)


class HoldIn(BaseModel):
    """``POST /holds``: the units to hold, why, and until when (none: until lifted)."""

    unit_ids: list[str] = Field(min_length=1)
    reason: str = Field(min_length=1)
    until: date | None = None
    owner: str | None = None


class HoldCreated(BaseModel):
    id: str


class HoldOut(BaseModel):
    id: str
    reason: str
    owner: str
    until: date | None
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    unit_ids: list[str]
    active: bool


class DisposalListIn(BaseModel):
    """``POST /disposal-lists``."""

    final_action: Literal["Destroy", "Keep"]
    producer: str | None = None
    due_before: date | None = None


class DueListsIn(BaseModel):
    """``POST /disposal-lists/due``: every list that is due, one per producing service."""

    #: None: both final actions (destruction lists first, then permanent keeping).
    final_action: Literal["Destroy", "Keep"] | None = None
    producer: str | None = None
    due_before: date | None = None


class DecisionIn(BaseModel):
    """``POST /disposal-lists/{id}/approve`` and ``/reject``."""

    comment: str = ""


class DisposalLineOut(BaseModel):
    unit_id: str
    state: str
    producer: str
    title: str
    date_start: str | None
    date_end: str | None
    bytes: int
    object_count: int
    rule_ids: list[str]
    dua: str
    legal_reference: str
    appraisal_end: date | None
    sampling_note: str | None
    exclusion_reason: str | None


class DisposalListOut(BaseModel):
    id: str
    reference: str
    state: str
    final_action: str
    producer: str | None
    due_before: date
    units: list[str]
    created_at: datetime
    created_by: str
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_comment: str | None = None
    visa_reference: str | None = None
    visa_decision_date: date | None = None
    visa_object_id: str | None = None
    executed_at: datetime | None = None
    executed_by: str | None = None
    certificate_object_id: str | None = None
    notification_object_ids: list[str] = Field(default_factory=list)
    lines: list[DisposalLineOut] = Field(default_factory=list)
    bordereau_url: str
    certificate_url: str | None = None


class OutgoingTransferIn(BaseModel):
    """``POST /disposal-lists/{id}/outgoing-transfer``: the receiving archive."""

    archival_agency: str = Field(min_length=1)


class OutgoingTransferOut(BaseModel):
    """Where an outgoing transfer stands."""

    list_id: str
    state: str
    message_identifier: str
    archival_agency: str
    sent_at: str
    sip_sha512: str
    sip_size: int
    units: list[str]
    reply_code: str | None = None
    reply_identifier: str | None = None
    locked: list[str] = Field(default_factory=list)
    purged: list[str] = Field(default_factory=list)
