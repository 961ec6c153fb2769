"""API shapes of the storage domain (INTERFACE.md "POST /audits", "GET /audits/{id}")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditRequest(BaseModel):
    """``{}`` audits every copy of every object on every offer."""

    model_config = ConfigDict(extra="forbid")

    offers: list[str] | None = Field(default=None, description="Offers to audit (default: all).")
    sample_rate: float = Field(default=1.0, gt=0, le=1, description="Share of objects checked.")
    repair: bool = Field(default=True, description="Rewrite damaged copies from healthy ones.")


class AuditCreated(BaseModel):
    """The audit was recorded; follow it at ``url``."""

    id: str
    url: str


class AuditProblemOut(BaseModel):
    """A copy found missing or corrupt."""

    object_id: str
    offer: str
    kind: Literal["missing", "corrupt"]
    repaired: bool
    key: str
    detail: str


class AuditOut(BaseModel):
    """Where an audit stands and what it found."""

    id: str
    status: Literal["running", "done", "failed"]
    checked: int
    problems: list[AuditProblemOut]
    unreachable: int = Field(description="Copies that could not be read (offer down).")
    offers: list[str] | None
    sample_rate: float
    created_at: datetime
    finished_at: datetime | None
    error: str | None
