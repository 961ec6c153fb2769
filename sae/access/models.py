"""Dérogations (Code du patrimoine L213-3): a reader's request to consult units before their
access delay ends, the archivist's decision, and the grants that open those units to that
reader until a date.

Dérogations are archival decisions: rebuilt from the journal (``sae.access.replay``). They name
the reader by account id and login as plain text, not a foreign key: accounts are not rebuilt.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class Derogation(Base):
    """A request and its decision. States: ``requested`` → ``granted`` | ``refused``."""

    __tablename__ = "derogations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The reader's account (``users.id``) and login when the request was made.
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    login: Mapped[str] = mapped_column(String(255))
    #: The units asked for, as given (ids).
    units: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True, default="requested")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    #: Granted: the last day the units are open to the reader, and the authorisation's
    #: reference (e.g. the SIAF's decision number).
    until: Mapped[date | None]
    reference: Mapped[str | None] = mapped_column(String(255))
    #: Refused: why.
    reason: Mapped[str | None] = mapped_column(Text)


class DerogationUnit(Base):
    """One unit a granted dérogation opens to one reader, through ``until`` (inclusive): what
    search and every read check, inside their queries."""

    __tablename__ = "derogation_units"

    derogation_id: Mapped[str] = mapped_column(ForeignKey("derogations.id"), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    until: Mapped[date]


Index(
    "ix_derogation_units_open", DerogationUnit.user_id, DerogationUnit.unit_id, DerogationUnit.until
)


class Communication(Base):
    """One entry of the register of communications: a unit's metadata, an object's bytes or a
    DIP communicated to a reader or a depositor, and on what basis (``law``: communicable
    today; ``derogation``: opened by ``derogation_id``; ``producer``: the depositor of its
    producing service).

    A projection of the journal: written in the transaction of the read's event
    (``access.unit_read``, ``access.object_read``, ``access.dip_exported``), from that event's
    payload, and rebuilt from it by the replay — ``leaf`` is that event's leaf, the entry's
    proof. A read concerning several units (a DIP, an object shared by units) is one entry per
    unit.
    """

    __tablename__ = "communications"

    leaf: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    unit_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    #: ``metadata`` (the unit's page), ``content`` (an object's bytes), ``dip``.
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str | None] = mapped_column(String(36))
    #: The reader's account and login (a bare token has no account: its actor is the login).
    user_id: Mapped[str | None] = mapped_column(String(36))
    login: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(16))
    basis: Mapped[str] = mapped_column(String(16), index=True)
    derogation_id: Mapped[str | None] = mapped_column(String(36))
    #: ``api``, ``console``.
    via: Mapped[str] = mapped_column(String(16))


Index("ix_communications_unit_id", Communication.unit_id)
