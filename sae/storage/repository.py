"""Queries of the storage domain, as typed ``select()``s."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Row, Select, or_, select, update
from sqlalchemy.orm import Session

from sae.catalog.models import GONE, DataObject
from sae.storage.models import Audit, AuditProblem, MetadataCopy, ObjectCopy


def audit_candidates(
    session: Session, *, worker: str, stale_before: datetime, audit_id: str | None
) -> list[str]:
    """Ids of running audits nobody (alive) works on, oldest first, rows locked SKIP LOCKED.

    On PostgreSQL the ``FOR UPDATE SKIP LOCKED`` lets several instances look for work at once
    without waiting on, or taking, each other's audit; SQLite ignores it (one writer anyway).
    """
    query = (
        select(Audit.id)
        .where(
            Audit.status == "running",
            or_(
                Audit.claimed_by.is_(None),
                Audit.claimed_by == worker,
                Audit.heartbeat_at < stale_before,
            ),
        )
        .order_by(Audit.created_at)
        .limit(5)
        .with_for_update(skip_locked=True)
    )
    if audit_id is not None:
        query = query.where(Audit.id == audit_id)
    return list(session.scalars(query))


def take_audit(
    session: Session, audit_id: str, *, worker: str, now: datetime, stale_before: datetime
) -> bool:
    """Claim ``audit_id`` for ``worker`` with a conditional UPDATE (atomic on every database)."""
    result = session.execute(
        update(Audit)
        .where(
            Audit.id == audit_id,
            Audit.status == "running",
            or_(
                Audit.claimed_by.is_(None),
                Audit.claimed_by == worker,
                Audit.heartbeat_at < stale_before,
            ),
        )
        .values(claimed_by=worker, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def copies_after(
    session: Session, *, cursor: int, offers: Sequence[str] | None, limit: int
) -> Sequence[Row[ObjectCopy, DataObject]]:
    """The next ``limit`` copies of live objects after ``cursor``, in id order."""
    query = (
        select(ObjectCopy, DataObject)
        .join(DataObject, DataObject.id == ObjectCopy.object_id)
        .where(ObjectCopy.id > cursor, DataObject.status.not_in(GONE))
        .order_by(ObjectCopy.id)
        .limit(limit)
    )
    if offers:
        query = query.where(ObjectCopy.offer.in_(list(offers)))
    return session.execute(query).all()


def other_copies(session: Session, copy: ObjectCopy) -> Sequence[ObjectCopy]:
    """The other copies of the same object (candidates to repair from)."""
    return session.scalars(
        select(ObjectCopy)
        .where(ObjectCopy.object_id == copy.object_id, ObjectCopy.id != copy.id)
        .order_by(ObjectCopy.last_check_ok.desc(), ObjectCopy.id)
    ).all()


def audit_problems(session: Session, audit_id: str) -> Sequence[AuditProblem]:
    """Problems an audit found, in the order found."""
    return session.scalars(
        select(AuditProblem).where(AuditProblem.audit_id == audit_id).order_by(AuditProblem.id)
    ).all()


def copies_on_offer(session: Session, offer: str) -> Sequence[Row[ObjectCopy, str]]:
    """Every recorded copy on ``offer`` with its object's status."""
    return session.execute(
        select(ObjectCopy, DataObject.status)
        .join(DataObject, DataObject.id == ObjectCopy.object_id)
        .where(ObjectCopy.offer == offer)
        .order_by(ObjectCopy.id)
    ).all()


def referenced_keys(session: Session) -> dict[str, str]:
    """Every storage key the catalog knows, with the status of the object it belongs to."""
    keys: dict[str, str] = {}
    for key, status in session.execute(
        select(ObjectCopy.key, DataObject.status).join(
            DataObject, DataObject.id == ObjectCopy.object_id
        )
    ):
        keys[key] = status if keys.get(key, "destroyed") in GONE else keys[key]
    for storage_key, status in session.execute(
        select(DataObject.storage_key, DataObject.status).where(DataObject.storage_key.is_not(None))
    ):
        if storage_key is not None and keys.get(storage_key, "destroyed") in GONE:
            keys[storage_key] = status
    return keys


def live_objects_without_copy(session: Session, offer: str) -> Sequence[Row[str, str | None]]:
    """Live binary objects with no recorded copy on ``offer`` (under-replicated)."""
    has_copy = select(ObjectCopy.object_id).where(ObjectCopy.offer == offer)
    return session.execute(
        select(DataObject.id, DataObject.storage_key).where(
            DataObject.status == "active",
            DataObject.kind == "binary",
            DataObject.id.not_in(has_copy),
        )
    ).all()


def _copies() -> Select[ObjectCopy]:
    return (
        select(ObjectCopy)
        .join(DataObject, DataObject.id == ObjectCopy.object_id)
        .order_by(ObjectCopy.id)
    )


def copies_of_objects(session: Session, object_ids: Sequence[str]) -> list[ObjectCopy]:
    """The recorded copies of these objects, in id order."""
    return list(session.scalars(_copies().where(ObjectCopy.object_id.in_(list(object_ids)))))


def copies_of_groups(
    session: Session, group_ids: Iterable[str], *, active_only: bool
) -> list[ObjectCopy]:
    """The recorded copies of the objects of these groups (of the active objects only, with
    ``active_only``), in id order."""
    query = _copies().where(DataObject.group_id.in_(list(group_ids)))
    if active_only:
        query = query.where(DataObject.status == "active")
    return list(session.scalars(query))


def copies_of_transfer(session: Session, transfer_id: str) -> list[ObjectCopy]:
    """The recorded copies of every object of a transfer, in id order."""
    return list(session.scalars(_copies().where(DataObject.transfer_id == transfer_id)))


def metadata_keys_on_offer(session: Session, offer: str) -> Sequence[str]:
    """The keys of every metadata copy (journal segments…) recorded on ``offer``."""
    return session.scalars(select(MetadataCopy.key).where(MetadataCopy.offer == offer)).all()


def copies_of_transfer_records(session: Session, transfer_ids: Iterable[str]) -> list[MetadataCopy]:
    """The recorded copies of these transfers' descriptions (``transfers/<id>.zip``), in id
    order."""
    ids = sorted(set(transfer_ids))
    if not ids:
        return []
    return list(
        session.scalars(
            select(MetadataCopy).where(MetadataCopy.transfer_id.in_(ids)).order_by(MetadataCopy.id)
        )
    )
