"""The server's OCR jobs (``SAE_OCR``): one row per archived scan looked at."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class OcrJob(Base):
    """The OCR of one master scan: ``done`` (its PDF/A is ``derived_id``), ``failed`` (tried
    ``attempts`` times, ``error`` says why; tried again at ``next_try_at`` until
    :data:`sae.extraction.ocr.MAX_ATTEMPTS`), ``skipped`` (its group already has a
    dissemination version, e.g. from ``sae deposit --ocr``)."""

    __tablename__ = "ocr_jobs"

    object_id: Mapped[str] = mapped_column(
        ForeignKey("data_objects.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    derived_id: Mapped[str | None] = mapped_column(String(36))
    next_try_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
