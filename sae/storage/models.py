"""Where each copy of each data object lives, and what its last check found."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


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


Index("ix_object_copies_offer_key", ObjectCopy.offer, ObjectCopy.key)
