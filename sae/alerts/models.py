"""The alerts' tables: one row per condition and subject, and where the journal was read to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class Alert(Base):
    """A condition that needs a person (``condition``: ``copy_damaged``, ``offer_down``…) about
    one subject (an offer, a copy, a witness; empty for the TSA): standing while ``active``.

    The row is the deduplication that survives restarts: a condition already standing is not
    sent again before ``SAE_ALERT_REPEAT_HOURS`` (then a reminder), and once cleared the next
    occurrence is a new alert. ``pending`` rows are what the background worker sends, retried
    with a growing delay (``next_attempt_at``) while a channel fails; ``delivered`` names the
    channels that took the current notification, so a retry does not send it twice to one.
    """

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("condition", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    condition: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]
    #: How many notifications were sent for this standing condition (1: the alert, then
    #: reminders).
    notifications: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertCursor(Base):
    """The first journal leaf the alerts have not read yet (one row, ``name='journal'``)."""

    __tablename__ = "alert_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(BigInteger)
