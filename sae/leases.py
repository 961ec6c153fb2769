"""Leases: background work that one process of the whole installation does at a time.

Several ``sae serve`` processes (``SAE_WORKERS``), on one machine or several, share one
database. Each runs the same background threads (:mod:`sae.background`); some of that work must
be done by one of them only: a tree head is time-stamped once per spacing for the installation
(a qualified TSA bills each token), one auditor runs the rounds (quarantine ends, scheduled
audits, the restore drill), one process talks to the witnesses (their back-off after a refusal
is the archive's, not each process's).

A lease is a row of ``leases``: its name, its owner (``host:pid:random``, one per thread that
asks) and when it expires. It is taken — or renewed by its owner — with one conditional
``UPDATE … WHERE name = :name AND (owner = :me OR expires_at <= :now)``: the database makes one
of two concurrent takers win (PostgreSQL re-checks the condition after the first's commit,
SQLite lets one writer at a time), on SQLite and PostgreSQL alike.

Why a row rather than PostgreSQL advisory locks (plus a lock file for SQLite): a lock lives as
long as a connection or a transaction, and the work it guards lasts minutes to hours (an audit,
a drill). A transaction held open that long on PostgreSQL holds back VACUUM and is cut by
``idle_in_transaction_session_timeout``; a session lock pins a pooled connection and is lost,
silently, when that connection is recycled. A lease needs no connection between its renewals,
says who holds it (logs, ``/health``), and can outlast its holder on purpose: the sealer keeps
the ``journal.sealer`` lease until the spacing after its head is over, which is exactly "one
head per spacing for the installation". Its price is the expiry: a holder that dies leaves the
work undone until its lease expires (the time-to-live says how long), and the machines' clocks
must agree to well within a time-to-live (NTP; the TSA's times are compared to them anyway).
A holder that stalls past its expiry may overlap with the next one for a moment: every guarded
act is still safe twice (a head of the same size is refused by the database, quarantine
batches and audits are claimed row by row); the lease only keeps that from being the rule.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import String, case, literal, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from sae.db import Base, UTCDateTime, transaction, utcnow


class Lease(Base):
    """Who does a piece of background work for the installation, until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    #: The owner holds the lease until then; anyone may take it from that moment.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    #: When the current owner took it (renewals keep it): how long it has held the work.
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))


def new_owner() -> str:
    """A holder's name: the machine and process (for the logs), and a random part so that two
    holders in one process (two runtimes, a test) are two owners."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def take(
    sessions: sessionmaker[Session],
    name: str,
    owner: str,
    ttl: timedelta,
    *,
    now: datetime | None = None,
) -> bool:
    """Take the lease ``name`` for ``ttl`` if it is free or expired, or renew it if ``owner``
    holds it; whether ``owner`` holds it now. Its own transaction, never waiting for a holder."""
    moment = now or utcnow()
    with transaction(sessions) as session:
        if _take(session, name, owner, moment, moment + ttl):
            return True
        if session.get(Lease, name) is not None:
            return False
        # The first taker of this name ever: a concurrent first taker makes the insert fail.
        try:
            with session.begin_nested():
                session.add(Lease(name=name, owner=owner, expires_at=moment + ttl, taken_at=moment))
                session.flush()
        except IntegrityError:
            return False
        return True


def _take(session: Session, name: str, owner: str, now: datetime, until: datetime) -> bool:
    # SET reads the row as it was: an owner renewing keeps its taken_at.
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.owner == owner, Lease.expires_at <= now))
        .values(
            owner=owner,
            expires_at=until,
            taken_at=case(
                (Lease.owner == owner, Lease.taken_at),
                else_=literal(now, UTCDateTime(timezone=True)),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return _changed(result)


def _changed(result: object) -> bool:
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


def release(
    sessions: sessionmaker[Session], name: str, owner: str, *, until: datetime | None = None
) -> bool:
    """Let the lease go — now, or at ``until`` (the owner keeps it till then: the sealer's
    spacing); whether ``owner`` still held it. A lease someone else took is left alone."""
    with transaction(sessions) as session:
        return _changed(
            session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.owner == owner)
                .values(expires_at=until or utcnow())
                .execution_options(synchronize_session=False)
            )
        )


def holder(sessions: sessionmaker[Session], name: str) -> tuple[str, datetime] | None:
    """Who holds ``name`` and until when (an expired lease too); None if never taken."""
    with sessions() as session:
        row = session.execute(
            select(Lease.owner, Lease.expires_at).where(Lease.name == name)
        ).first()
    return (row[0], row[1]) if row is not None else None
