"""API shapes of the referential."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class RuleOut(BaseModel):
    id: str
    type: str
    value: str
    description: str
    duration: int | None
    measurement: str | None
    updated_at: datetime


class ImportSummary(BaseModel):
    added: int
    changed: int
    removed: int
    total: int
