"""API shapes of dérogations."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class DerogationIn(BaseModel):
    """A reader's request: the units (ids) and what the consultation is for."""

    units: list[str] = Field(min_length=1, max_length=500)
    purpose: str = Field(min_length=1, max_length=5000)


class GrantIn(BaseModel):
    #: The last day the units are open to the reader (inclusive).
    until: date
    #: The authorisation's reference (e.g. the decision of the administration des archives).
    reference: str = Field(min_length=1, max_length=255)


class RefuseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=5000)


class DerogationOut(BaseModel):
    id: str
    user_id: str
    login: str
    units: list[str]
    purpose: str
    state: str
    requested_at: datetime
    requested_by: str
    decided_at: datetime | None
    decided_by: str | None
    until: date | None
    reference: str | None
    reason: str | None
    url: str


class CommunicationOut(BaseModel):
    """One entry of the register of communications."""

    at: datetime
    login: str
    user_id: str | None
    role: str
    unit_id: str
    #: The unit's title as the catalogue has it today (null once erased by a destruction).
    title: str | None
    #: ``metadata``, ``content`` or ``dip``.
    kind: str
    object_id: str | None
    #: ``law``, ``derogation`` or ``producer``.
    basis: str
    derogation_id: str | None
    via: str
    #: The journal leaf of the read: the entry's proof.
    leaf: int


class CommunicationPage(BaseModel):
    items: list[CommunicationOut]
    next_cursor: str | None = None
