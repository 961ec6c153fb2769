"""Dérogations (Code du patrimoine L213-3): a reader asks to consult units before their access
delay ends (which units, for what purpose); the archivist grants it until a date, naming the
authorisation, or refuses it with a reason. A grant opens exactly those units to that reader
through that date (inclusive); the day after, they are closed again — no job runs, every read
and search compares the date (``sae.catalog.service.closed_on``).

Every step is journaled (``derogation.requested``, ``derogation.granted``,
``derogation.refused``) with what its replay needs (``sae.access.replay``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae import db
from sae.access.errors import DerogationDecided, DerogationNotFound, InvalidDerogation
from sae.access.models import Derogation, DerogationUnit
from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit
from sae.catalog.service import ALL_SEEING
from sae.journal.service import append_event

#: At most this many units in one request.
MAX_UNITS = 500


def reader_of(principal: Principal) -> tuple[str, str]:
    """The account (id, login) a request is made for: a dérogation opens units to a person."""
    user_id = getattr(principal, "user_id", None)
    if not user_id:
        raise InvalidDerogation("a dérogation is asked for by a reader's account, not a bare token")
    return str(user_id), str(getattr(principal, "login", "") or user_id)


def request(
    session: Session,
    principal: Principal,
    *,
    unit_ids: Sequence[str],
    purpose: str,
    at: datetime | None = None,
    reader: tuple[str, str] | None = None,
) -> Derogation:
    """A reader's request. The units are not checked against the catalogue here: telling the
    reader which ids exist would reveal what the delays hide; the archivist sees them.
    ``reader`` (account id, login): a request the archivist records for a reader (a letter,
    ``sae derogation request --login``); else the caller's own account."""
    user_id, login = reader or reader_of(principal)
    units = list(dict.fromkeys(u.strip() for u in unit_ids if u.strip()))
    if not units:
        raise InvalidDerogation("name at least one archive unit")
    if len(units) > MAX_UNITS or any(len(u) > 36 for u in units):
        raise InvalidDerogation(f"at most {MAX_UNITS} unit ids of at most 36 characters")
    if not purpose.strip():
        raise InvalidDerogation("say what the consultation is for (purpose)")
    d = Derogation(
        id=db.new_id(),
        user_id=user_id,
        login=login,
        units=units,
        purpose=purpose.strip(),
        state="requested",
        requested_at=at or db.utcnow(),
        requested_by=principal.actor,
    )
    session.add(d)
    session.flush()
    append_event(
        session,
        type="derogation.requested",
        actor=principal.actor,
        payload={
            "derogation_id": d.id,
            "user_id": user_id,
            "login": login,
            "units": units,
            "purpose": d.purpose,
            "requested_at": d.requested_at.isoformat(),
        },
    )
    return d


def get(session: Session, principal: Principal, derogation_id: str) -> Derogation:
    """A dérogation: archivists, auditors and admins see all, a reader only its own."""
    d = session.get(Derogation, derogation_id)
    if d is None or not _may_see(principal, d):
        raise DerogationNotFound(f"no dérogation {derogation_id}")
    return d


def _may_see(principal: Principal, d: Derogation) -> bool:
    return principal.role in ALL_SEEING or getattr(principal, "user_id", None) == d.user_id


def _open(d: Derogation, action: str) -> None:
    if d.state != "requested":
        raise DerogationDecided(f"dérogation {d.id} is already {d.state}: no {action}")


def grant(
    session: Session,
    d: Derogation,
    *,
    actor: str,
    until: date,
    reference: str,
    at: datetime | None = None,
) -> Derogation:
    """Grant: the units are open to the reader through ``until``. Every unit must exist."""
    _open(d, "grant")
    now = at or db.utcnow()
    if until < now.date():
        raise InvalidDerogation(f"the end date {until.isoformat()} is already past")
    if not reference.strip():
        raise InvalidDerogation("name the authorisation (its reference)")
    known = set(session.scalars(select(ArchiveUnit.id).where(ArchiveUnit.id.in_(d.units))))
    missing = [u for u in d.units if u not in known]
    if missing:
        raise InvalidDerogation(
            f"no archive unit {', '.join(missing)}: refuse the request, or ask for a new one",
            unit_ids=missing,
        )
    apply_grant(session, d, actor=actor, until=until, reference=reference.strip(), at=now)
    append_event(
        session,
        type="derogation.granted",
        actor=actor,
        payload={
            "derogation_id": d.id,
            "until": until.isoformat(),
            "reference": d.reference,
            "decided_at": now.isoformat(),
        },
    )
    return d


def apply_grant(
    session: Session, d: Derogation, *, actor: str, until: date, reference: str, at: datetime
) -> None:
    """The rows of a grant (the live act and its replay)."""
    d.state = "granted"
    d.until = until
    d.reference = reference
    d.decided_at = at
    d.decided_by = actor
    for unit_id in d.units:
        session.add(
            DerogationUnit(derogation_id=d.id, unit_id=unit_id, user_id=d.user_id, until=until)
        )
    session.flush()


def refuse(
    session: Session, d: Derogation, *, actor: str, reason: str, at: datetime | None = None
) -> Derogation:
    """Refuse, with the reason."""
    _open(d, "refusal")
    if not reason.strip():
        raise InvalidDerogation("a refusal needs its reason")
    now = at or db.utcnow()
    apply_refusal(d, actor=actor, reason=reason.strip(), at=now)
    session.flush()
    append_event(
        session,
        type="derogation.refused",
        actor=actor,
        payload={"derogation_id": d.id, "reason": d.reason, "decided_at": now.isoformat()},
    )
    return d


def apply_refusal(d: Derogation, *, actor: str, reason: str, at: datetime) -> None:
    d.state = "refused"
    d.reason = reason
    d.decided_at = at
    d.decided_by = actor


def list_derogations(
    session: Session,
    principal: Principal,
    *,
    state: str | None = None,
    login: str | None = None,
) -> list[Derogation]:
    """The dérogations ``principal`` may see (a reader: its own), the newest first."""
    stmt = select(Derogation).order_by(Derogation.requested_at.desc(), Derogation.id)
    if principal.role not in ALL_SEEING:
        stmt = stmt.where(Derogation.user_id == (getattr(principal, "user_id", None) or ""))
    if state:
        stmt = stmt.where(Derogation.state == state)
    if login:
        stmt = stmt.where(Derogation.login == login)
    return list(session.scalars(stmt))
