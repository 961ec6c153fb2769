"""The management-rule referential (Vitam CSV shape: RuleId, RuleType, RuleValue, …)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class Rule(Base):
    """One rule of the referential. FinalAction is not here: it belongs to the unit (SEDA)."""

    __tablename__ = "rules"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    value: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # None with measurement None: no duration ("unlimited", or a HoldRule without one).
    duration: Mapped[int | None]
    measurement: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
