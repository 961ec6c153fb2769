"""Replays of the storage, integrity, access and withdrawal events (see
:mod:`sae.recovery.replay`; the table is in docs/recovery.md, "Replay of storage, access and
token events").

Each replay writes back, from what the leaf carries, the rows the act changed: the copies'
states (``object_copies``, ``metadata_copies``), the audits and their problems as
``GET /api/v1/audits/{id}`` shows them, objects flagged by a failed read, and a withdrawal.
A copy is found by what names it on every database — its object, offer and key — never by
its integer id, which a rebuild numbers again.

Leaves written before their payloads carried these keys replay what they can: a missing date
is left as the transfer's record gave it, and the rebuild's report says so (``notes``).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sae.catalog.models import ArchiveUnit, DataObject
from sae.recovery.replay import LeafEvent, ReplayContext, changes_no_state, replays
from sae.storage.audit import entry_copy
from sae.storage.models import Audit, AuditProblem, MetadataCopy, ObjectCopy

# --- reads, and what no rebuild restores -------------------------------------------------------

# access.object_read and access.dip_exported: replayed by sae.access.replay (the register).
changes_no_state(
    "storage.orphan_removed",
    "an object no catalogue row knew (left by a crash before a commit) removed from an offer",
)


def _at(value: Any) -> datetime | None:
    """A date a payload carries (ISO 8601), or None."""
    return None if value is None else datetime.fromisoformat(str(value))


def _copy(session: Session, object_id: str | None, offer: str, key: str) -> ObjectCopy | None:
    query = select(ObjectCopy).where(ObjectCopy.offer == offer, ObjectCopy.key == key)
    if object_id is not None:
        query = query.where(ObjectCopy.object_id == object_id)
    return session.scalars(query.order_by(ObjectCopy.id).limit(1)).first()


def _missing(context: ReplayContext, event: LeafEvent, what: str) -> None:
    context.notes.append(f"leaf {event.index} ({event.type}): {what}")


# --- quarantines -------------------------------------------------------------------------------


@replays("storage.quarantine_ended")
def _quarantine_ended(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    copy = _copy(context.session, event.object_id, data["offer"], data["key"])
    if copy is None:
        _missing(context, event, f"no copy {data['offer']}:{data['key']} to seal")
        return
    # Sealed into COMPLIANCE: no end of quarantine any more (the key is absent from leaves
    # written before it was carried; they were all sealed for good).
    copy.quarantine_ends_at = _at(data.get("quarantine_ends_at"))


# --- offers filled (sae fsck --repair) ---------------------------------------------------------


@replays("storage.copy_filled")
def _copy_filled(context: ReplayContext, event: LeafEvent) -> None:
    """The copy row ``sae.storage.fill`` recorded, column by column."""
    data = event.payload
    session = context.session
    stored_at = _at(data["stored_at"])
    ends = _at(data["quarantine_ends_at"])
    if data["kind"] == "object":
        copy = _copy(session, event.object_id, data["offer"], data["key"])
        if copy is None:
            if event.object_id is None or session.get(DataObject, event.object_id) is None:
                _missing(context, event, f"no object {event.object_id} for a filled copy")
                return
            copy = ObjectCopy(object_id=event.object_id, offer=data["offer"], key=data["key"])
            session.add(copy)
        copy.version_id = data["version_id"]
        copy.size = data["size"]
        copy.sha512 = data["sha512"]
        copy.stored_at = stored_at or event.occurred_at
        copy.quarantine_ends_at = ends
        copy.last_checked_at = stored_at
        copy.last_check_ok = True
    else:
        meta = session.scalars(
            select(MetadataCopy).where(
                MetadataCopy.offer == data["offer"], MetadataCopy.key == data["key"]
            )
        ).first()
        if meta is None:
            meta = MetadataCopy(offer=data["offer"], key=data["key"])
            session.add(meta)
        meta.kind = data["kind"]
        meta.tree_size = data["tree_size"]
        meta.transfer_id = data["transfer_id"]
        meta.sha512 = data["sha512"]
        meta.size = data["size"]
        meta.stored_at = stored_at or event.occurred_at
        meta.quarantine_ends_at = ends
    session.flush()


# --- fixity audits -----------------------------------------------------------------------------


def _audit(session: Session, audit_id: str, columns: dict[str, Any], status: str) -> Audit:
    """The audit row, created at its first event (its creation is not journaled) and brought
    up to what the event says."""
    audit = session.get(Audit, audit_id)
    if audit is None:
        audit = Audit(id=audit_id, cursor=0, claimed_by=None, heartbeat_at=None)
        session.add(audit)
    audit.status = status
    if columns:
        audit.requested_by = columns["requested_by"]
        audit.offers = columns["offers"]
        audit.sample_rate = columns["sample_rate"]
        audit.repair = columns["repair"]
        audit.created_at = _at(columns["created_at"]) or audit.created_at
        audit.started_at = _at(columns["started_at"])
        audit.finished_at = _at(columns["finished_at"])
        audit.checked = columns["checked"]
        audit.unreachable = columns["unreachable"]
        audit.error = columns["error"]
    session.flush()
    return audit


@replays("storage.copies_checked")
def _copies_checked(context: ReplayContext, event: LeafEvent) -> None:
    """The copies a batch of an audit found healthy: each one's ``last_checked_at`` the
    batch's date, ``last_check_ok`` true, as ``sae.storage.audit._check_copy`` set them."""
    data = event.payload
    session = context.session
    checked_at = _at(data["checked_at"])
    for offer, entries in data["copies"].items():
        wanted = [entry_copy(entry) for entry in entries]
        # A few hundred copies per leaf: looked up per offer, by their objects, a statement per
        # 400 (a year of daily audits is millions of copies to replay, not millions of queries).
        ids = sorted({object_id for object_id, _ in wanted})
        found: dict[tuple[str, str], ObjectCopy] = {}
        for start in range(0, len(ids), 400):
            for copy in session.scalars(
                select(ObjectCopy)
                .where(
                    ObjectCopy.offer == offer, ObjectCopy.object_id.in_(ids[start : start + 400])
                )
                .order_by(ObjectCopy.id)
            ):
                # The first by id, as ``_copy`` finds one.
                found.setdefault((copy.object_id, copy.key), copy)
        absent: list[str] = []
        for name in wanted:
            checked = found.get(name)
            if checked is None:
                absent.append(name[0])
                continue
            checked.last_checked_at = checked_at
            checked.last_check_ok = True
        # A copy whose object is not (yet) in the catalogue is no loss: a transfer withdrawn
        # after the audit comes back with its ``transfer.withdrawn`` leaf, without copies. One
        # whose object is there but not the copy is said.
        lost = [i for i in absent if session.get(DataObject, i) is not None]
        if lost:
            _missing(context, event, f"{len(lost)} checked copies on {offer} not in the catalogue")
    session.flush()


@replays("storage.copy_damaged")
def _copy_damaged(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    session = context.session
    columns = data.get("audit") or {}
    if not columns:
        _missing(context, event, "the audit's columns are not in the leaf")
    audit = session.get(Audit, data["audit_id"])
    if audit is None or audit.status == "running":
        # Still running as far as the journal knows: done or failed comes in a later leaf.
        _audit(session, data["audit_id"], columns, "running")
    copy = _copy(session, event.object_id, data["offer"], data["key"])
    found_at = _at(data.get("found_at")) or event.occurred_at
    session.add(
        AuditProblem(
            audit_id=data["audit_id"],
            object_id=event.object_id or "",
            copy_id=copy.id if copy is not None else None,
            offer=data["offer"],
            key=data["key"],
            kind=data["kind"],
            repaired=bool(data.get("repaired", False)),
            detail=data.get("detail", ""),
            found_at=found_at,
        )
    )
    if copy is not None:
        copy.last_checked_at = found_at
        copy.last_check_ok = bool(data.get("last_check_ok", False))
    session.flush()


@replays("storage.copy_repaired")
def _copy_repaired(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    session = context.session
    copy = _copy(session, event.object_id, data["offer"], data["key"])
    if copy is None:
        _missing(context, event, f"no copy {data['offer']}:{data['key']} repaired")
        return
    copy.version_id = data.get("version_id")
    if "size" in data:
        copy.size = data["size"]
        copy.quarantine_ends_at = _at(data["quarantine_ends_at"])
        copy.last_checked_at = _at(data["checked_at"])
    else:
        _missing(context, event, "the repaired copy's size and dates are not in the leaf")
    copy.last_check_ok = True
    problem = session.scalars(
        select(AuditProblem)
        .where(
            AuditProblem.audit_id == data["audit_id"],
            AuditProblem.offer == data["offer"],
            AuditProblem.key == data["key"],
        )
        .order_by(AuditProblem.id.desc())
        .limit(1)
    ).first()
    if problem is not None:
        problem.repaired = True
    session.flush()


@replays("storage.audit_completed", "storage.audit_failed")
def _audit_ended(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    columns = data.get("audit") or {}
    if not columns:
        _missing(context, event, "the audit's columns are not in the leaf")
    status = "done" if event.type == "storage.audit_completed" else "failed"
    audit = _audit(context.session, data["audit_id"], columns, status)
    if not columns:
        audit.requested_by = event.actor
        audit.offers = data.get("offers")
        audit.checked = data.get("checked", 0)
        audit.error = data.get("error")
        audit.finished_at = event.occurred_at
    context.session.flush()


# --- failed reads ------------------------------------------------------------------------------


@replays("integrity.failed")
def _integrity_failed(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    key = data.get("key")
    if key is None:
        _missing(context, event, "the copy's key is not in the leaf")
        return
    copy = _copy(context.session, event.object_id, data["offer"], key)
    if copy is None:
        _missing(context, event, f"no copy {data['offer']}:{key} to flag")
        return
    copy.last_checked_at = _at(data.get("checked_at")) or event.occurred_at
    copy.last_check_ok = False
    context.session.flush()


@replays("integrity.no_healthy_copy")
def _no_healthy_copy(context: ReplayContext, event: LeafEvent) -> None:
    obj = context.session.get(DataObject, event.object_id) if event.object_id else None
    if obj is not None and obj.status == "active":
        obj.status = "integrity_failed"
        context.session.flush()


# --- withdrawals (sae.ingest.withdrawal) -------------------------------------------------------


@replays("transfer.withdrawal_started")
def _withdrawal_started(context: ReplayContext, event: LeafEvent) -> None:
    from sae.ingest.models import Transfer
    from sae.ingest.withdrawal import WITHDRAWING

    transfer = context.session.get(Transfer, event.transfer_id) if event.transfer_id else None
    if transfer is None:
        # Its description left the offers with its objects: the transfer comes back with
        # its ``transfer.withdrawn`` leaf, which carries its rows.
        return
    if transfer.status == "OK":
        transfer.status = WITHDRAWING
        context.session.flush()


@replays("transfer.withdrawn")
def _withdrawn(context: ReplayContext, event: LeafEvent) -> None:
    """What ``sae.ingest.withdrawal._finish`` writes, from the same rows."""
    from sae.ingest.models import Transfer
    from sae.ingest.withdrawal import WITHDRAWN
    from sae.retention.models import UnitComputedRule

    session = context.session
    transfer = session.get(Transfer, event.transfer_id) if event.transfer_id else None
    if transfer is None:
        # Its description left the offers with its objects: the leaf carries the rows that
        # stay (``sae.ingest.withdrawal.withdrawn_record``).
        transfer = _rows_of_withdrawn(session, event)
        if transfer is None:
            _missing(context, event, f"no transfer {event.transfer_id} and no record in the leaf")
            return
    its_objects = select(DataObject.id).where(DataObject.transfer_id == transfer.id)
    its_units = select(ArchiveUnit.id).where(ArchiveUnit.transfer_id == transfer.id)
    session.execute(delete(ObjectCopy).where(ObjectCopy.object_id.in_(its_objects)))
    session.execute(delete(MetadataCopy).where(MetadataCopy.transfer_id == transfer.id))
    session.execute(delete(UnitComputedRule).where(UnitComputedRule.unit_id.in_(its_units)))
    for unit in session.scalars(select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer.id)):
        unit.status = "withdrawn"
        unit.forget_description()
    for obj in session.scalars(select(DataObject).where(DataObject.transfer_id == transfer.id)):
        obj.status = "withdrawn"
    transfer.status = WITHDRAWN
    session.flush()


def _rows_of_withdrawn(session: Session, event: LeafEvent) -> Any:
    from sae.catalog.records import rows_from_record
    from sae.catalog.rows import write_catalogue

    record = event.payload.get("record")
    if record is None:
        return None
    atr = event.payload.get("atr")
    transfer, rows, _ = rows_from_record(record, atr=None if atr is None else base64.b64decode(atr))
    session.add(transfer)
    write_catalogue(session, rows)
    return transfer
