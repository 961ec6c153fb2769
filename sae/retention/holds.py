"""Legal holds (gel) placed through the API: a held unit is never proposed, never destroyed.

A hold covers the units named and every descendant at placement time (a file under hold holds
its pieces). On offers that support it (S3 Object Lock) a legal hold is also set on the
objects' copies, so that even a direct call to the storage cannot delete them; it is lifted
only when no other hold in force still covers the object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae import db
from sae.catalog.errors import UnitNotFound
from sae.catalog.models import ArchiveUnit
from sae.journal.service import append_event
from sae.retention import dates
from sae.retention.errors import HoldNotFound, InvalidHold, WrongState
from sae.retention.models import Hold, HoldUnit
from sae.storage.base import StorageOffer
from sae.storage.models import ObjectCopy
from sae.storage.repository import copies_of_groups
from sae.storage.service import hold_copies


def _copies_of_units(session: Session, unit_ids: Sequence[str]) -> list[ObjectCopy]:
    groups = {
        g
        for g in session.scalars(
            select(ArchiveUnit.data_object_group_id).where(ArchiveUnit.id.in_(unit_ids))
        )
        if g
    }
    if not groups:
        return []
    return copies_of_groups(session, sorted(groups), active_only=True)


def _set_legal_hold(
    offers: Mapping[str, StorageOffer], copies: Sequence[ObjectCopy], on: bool
) -> list[str]:
    # The catalogue hold is what the disposal circuit obeys; a copy that could not be held on
    # its offer is reported (and logged by the storage), not fatal.
    return [
        f"{o.offer}: offer not configured" if o.error is None else f"{o.offer}: {o.error.detail}"
        for o in hold_copies(copies, offers, on)
        if not o.ok
    ]


def place_hold(
    session: Session,
    unit_ids: Sequence[str],
    *,
    reason: str,
    owner: str,
    until: date | None,
    actor: str,
    offers: Mapping[str, StorageOffer] | None = None,
) -> Hold:
    """Hold ``unit_ids`` and their descendants (flush, no commit); journaled ``hold.placed``."""
    wanted = list(dict.fromkeys(unit_ids))
    if not wanted:
        raise InvalidHold("a hold needs at least one archive unit")
    found = set(session.scalars(select(ArchiveUnit.id).where(ArchiveUnit.id.in_(wanted))))
    missing = [u for u in wanted if u not in found]
    if missing:
        raise UnitNotFound(f"no archive unit {', '.join(missing)}", unit_ids=missing)
    if until is not None and until < dates.today():
        raise InvalidHold(f"a hold cannot end in the past ({until.isoformat()})")
    hold = Hold(id=db.new_id(), reason=reason, owner=owner, until=until, created_at=db.utcnow())
    covered = cover(session, hold, wanted)
    failures = _set_legal_hold(offers or {}, _copies_of_units(session, sorted(covered)), True)
    append_event(
        session,
        type="hold.placed",
        actor=actor,
        payload={
            "hold_id": hold.id,
            "reason": reason,
            "owner": owner,
            "until": until.isoformat() if until else None,
            "units": wanted,
            "covered": len(covered),
            "storage_failures": failures,
            "created_at": hold.created_at.isoformat(),
        },
    )
    return hold


def cover(session: Session, hold: Hold, unit_ids: Sequence[str]) -> set[str]:
    """Add ``hold`` and its units: ``unit_ids`` (direct) and all their descendants now (flush,
    no commit); the live placement and its replay both write the rows here. Returns the units
    covered."""
    session.add(hold)
    session.flush()
    covered = dates.descendants(session, unit_ids)
    for uid in sorted(covered):
        session.add(HoldUnit(hold_id=hold.id, unit_id=uid, direct=uid in unit_ids))
    session.flush()
    return covered


def lift_hold(
    session: Session,
    hold_id: str,
    *,
    actor: str,
    offers: Mapping[str, StorageOffer] | None = None,
) -> Hold:
    """Lift a hold (flush, no commit); storage legal holds go where nothing else holds them."""
    hold = session.get(Hold, hold_id)
    if hold is None:
        raise HoldNotFound(f"no hold {hold_id}")
    if hold.lifted_at is not None:
        raise WrongState(f"hold {hold_id} was already lifted")
    hold.lifted_at = db.utcnow()
    hold.lifted_by = actor
    session.flush()
    covered = list(session.scalars(select(HoldUnit.unit_id).where(HoldUnit.hold_id == hold_id)))
    still = dates.held_units(session, covered)
    release = [u for u in covered if u not in still]
    failures = _set_legal_hold(offers or {}, _copies_of_units(session, release), False)
    append_event(
        session,
        type="hold.lifted",
        actor=actor,
        payload={
            "hold_id": hold_id,
            "released": len(release),
            "storage_failures": failures,
            "lifted_at": hold.lifted_at.isoformat(),
        },
    )
    return hold


def list_holds(session: Session, *, active_only: bool = False) -> list[Hold]:
    """Holds, newest first."""
    stmt = select(Hold).order_by(Hold.created_at.desc())
    if active_only:
        stmt = stmt.where(dates.active_hold_clause(dates.today()))
    return list(session.scalars(stmt))


def units_of_hold(session: Session, hold_id: str) -> list[str]:
    """The units a hold names directly."""
    return list(
        session.scalars(
            select(HoldUnit.unit_id).where(HoldUnit.hold_id == hold_id, HoldUnit.direct.is_(True))
        )
    )
