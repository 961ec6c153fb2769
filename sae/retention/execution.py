"""Executing a disposal list: the only path by which SAE destroys an archive.

This is a job runner, not a request-scoped service: it owns its transactions (one to claim the
list, one per unit, one to finish) because a destruction cannot be rolled back — copies deleted
from an offer are gone whatever the database does next — so progress must be durable unit by
unit, and an interrupted execution must resume where it stopped. Each step is idempotent: a
copy already gone counts as deleted, a record already archived is found again.

Guards, all re-checked at execution time, on every unit:

* the list is a Destroy list with the departmental visa recorded (a Keep list: approved);
* no unit is held (API hold or SEDA HoldRule in force);
* no unit's rules, final action, end dates or holds changed since approval (fingerprint);
* every unit is due today (its appraisal end date has passed) and still active.

Concurrency: the claim is one conditional UPDATE, the first statement of its transaction, so
two executions of the same list cannot both win it — on PostgreSQL as on SQLite. A claim left
by a crashed executor can be taken over once ``execution_lease_seconds`` have passed without a
step (each step renews the lease).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

import seda
from sae import db
from sae.auth.service import SYSTEM, Principal
from sae.catalog.models import ArchiveUnit, DataObject, UnitLink
from sae.catalog.objecttext import refresh_groups
from sae.config import Settings
from sae.journal.service import append_event
from sae.retention import dates, disposal, records
from sae.retention.config import RetentionSettings, retention_settings
from sae.retention.errors import (
    ExecutionInProgress,
    ExecutionRefused,
    ListNotFound,
    StorageRefused,
)
from sae.retention.models import (
    DisposalLine,
    DisposalList,
    Tombstone,
    object_tombstone,
    unit_tombstone,
)
from sae.storage.base import PERMANENT_RETAIN_UNTIL, StorageOffer
from sae.storage.models import ObjectCopy
from sae.storage.repository import copies_of_groups, copies_of_objects
from sae.storage.service import delete_copies, extend_copies

if TYPE_CHECKING:  # fpdf (23 MiB a process) is imported where a PDF is written
    from sae.retention import documents

log = logging.getLogger("sae.retention.execution")


@dataclass
class ExecutionContext:
    """What an execution needs: sessions, every configured offer, the strategy, settings."""

    sessions: sessionmaker[Session]
    settings: Settings
    offers: Mapping[str, StorageOffer]
    strategy: Sequence[StorageOffer]
    config: RetentionSettings = field(default_factory=retention_settings)

    @property
    def parties(self) -> documents.Parties:
        from sae.retention import documents  # fpdf: imported by the processes that write PDFs

        return documents.Parties(
            self.config.archives_service,
            self.config.archives_service_name,
            self.config.control_authority,
        )


PENDING = ("proposed", "sampled")


def recheck(session: Session, d: DisposalList) -> list[dict[str, str]]:
    """Every pending line checked again now: held, changed since approval, not due, gone."""
    problems: list[dict[str, str]] = []
    today = dates.today()
    lines = [ln for ln in disposal.lines_of(session, d.id) if ln.state in PENDING]
    held = dates.held_units(session, [ln.unit_id for ln in lines])
    for line in lines:
        unit = session.get(ArchiveUnit, line.unit_id)
        if unit is None or unit.status != "active":
            problems.append(
                {
                    "unit_id": line.unit_id,
                    "reason": "not_active",
                    "detail": f"unit is {unit.status if unit else 'missing'}",
                }
            )
            continue
        if line.unit_id in held and (d.final_action == "Destroy" and line.state == "proposed"):
            problems.append(
                {"unit_id": line.unit_id, "reason": "held", "detail": "the unit is under a hold"}
            )
            continue
        if dates.fingerprint(session, line.unit_id) != line.fingerprint:
            problems.append(
                {
                    "unit_id": line.unit_id,
                    "reason": "changed",
                    "detail": "its rules, end dates or holds changed since approval",
                }
            )
            continue
        results = dates.compute_units(session, [line.unit_id])[line.unit_id]
        appraisal = results.get("AppraisalRule")
        end = appraisal.end if appraisal is not None else None
        action = dates.final_action_of(appraisal) if appraisal is not None else "Keep"
        if end is None or end >= today or action != d.final_action:
            problems.append(
                {
                    "unit_id": line.unit_id,
                    "reason": "not_due",
                    "detail": f"appraisal end {end}, final action {action}",
                }
            )
    return problems


def _claim(ctx: ExecutionContext, list_id: str, token: str) -> bool:
    now = db.utcnow()
    stale_before = now - timedelta(seconds=ctx.config.execution_lease_seconds)
    with db.transaction(ctx.sessions) as session:
        # First statement of the transaction: on SQLite it takes the write lock before reading
        # anything, so the loser waits and then sees the winner's state.
        result = session.execute(
            update(DisposalList)
            .where(
                DisposalList.id == list_id,
                or_(
                    and_(
                        DisposalList.final_action == "Destroy",
                        DisposalList.state == "visa_recorded",
                    ),
                    and_(DisposalList.final_action == "Keep", DisposalList.state == "approved"),
                    and_(
                        DisposalList.state == "executing",
                        or_(
                            DisposalList.execution_token.is_(None),
                            DisposalList.execution_started_at < stale_before,
                        ),
                    ),
                ),
            )
            .values(state="executing", execution_token=token, execution_started_at=now)
            .execution_options(synchronize_session=False)
        )
        won = bool(getattr(result, "rowcount", 0) == 1)
    return won


def _heartbeat(session: Session, list_id: str, token: str) -> None:
    """First statement of every step's transaction: prove the claim is still ours and renew
    its lease. Writing first also takes SQLite's write lock before anything is read, so a
    concurrent writer (another request, the journal sealer) makes this step wait, not fail."""
    result = session.execute(
        update(DisposalList)
        .where(DisposalList.id == list_id, DisposalList.execution_token == token)
        .values(execution_started_at=db.utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise ExecutionInProgress(f"the execution of list {list_id} was taken over")


def _release(
    ctx: ExecutionContext,
    list_id: str,
    token: str,
    *,
    back_to: str | None,
    refusal: tuple[DisposalList, str, list[dict[str, str]]] | None = None,
) -> None:
    """Give the claim up (the list put ``back_to`` a state); with ``refusal`` (the list, the
    actor, the problems), journal the refusal in the same transaction: a list put back is a
    change of state, and its leaf must not be lost to a crash between the two."""
    with db.transaction(ctx.sessions) as session:
        values: dict[str, object] = {"execution_token": None}
        if back_to is not None:
            values["state"] = back_to
        session.execute(
            update(DisposalList)
            .where(DisposalList.id == list_id, DisposalList.execution_token == token)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if refusal is not None:
            d, actor, problems = refusal
            _refusal_event(session, d, actor, "recheck_failed", problems, back_to=back_to)


def _journal_refusal(
    ctx: ExecutionContext,
    d: DisposalList,
    actor: str,
    reason: str,
    problems: list[dict[str, str]],
    *,
    back_to: str | None = None,
) -> None:
    with db.transaction(ctx.sessions) as session:
        _refusal_event(session, d, actor, reason, problems, back_to=back_to)


def _refusal_event(
    session: Session,
    d: DisposalList,
    actor: str,
    reason: str,
    problems: list[dict[str, str]],
    *,
    back_to: str | None,
) -> None:
    append_event(
        session,
        type="disposal.execution_refused",
        actor=actor,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "reason": reason,
            "problems": problems[:200],
            # The state the list was put back in (None: it was not claimed, unchanged).
            "back_to": back_to,
        },
    )


def execute_list(ctx: ExecutionContext, list_id: str, principal: Principal) -> DisposalList:
    """Execute a list (destruction, or permanent keeping); see the module docstring.

    Returns the list, executed. Raises :class:`ExecutionRefused` (not visa'd, held, changed,
    not due), :class:`ExecutionInProgress` (another execution holds the list),
    :class:`StorageRefused` (an offer kept a copy; nothing more was done, resume later).
    """
    actor = principal.actor
    token = db.new_id()
    if not _claim(ctx, list_id, token):
        with ctx.sessions() as session:
            d = session.get(DisposalList, list_id)
            if d is None:
                raise ListNotFound(f"no disposal list {list_id}")
            if d.state == "executed":
                return d  # idempotent: executing an executed list changes nothing
            if d.state == "executing":
                raise ExecutionInProgress(
                    f"list {d.reference} is being executed by another process", state=d.state
                )
            needed = "approved and visa'd" if d.final_action == "Destroy" else "approved"
            reason = f"list {d.reference} is {d.state}: it must be {needed} before execution"
        _journal_refusal(ctx, d, actor, "wrong_state", [])
        raise ExecutionRefused(reason, state=d.state)
    try:
        with db.transaction(ctx.sessions) as session:
            _heartbeat(session, list_id, token)
            d = disposal.get_list(session, list_id)
            problems = recheck(session, d)
            reference = d.reference
            if not problems and d.executed_by is None:
                append_event(
                    session,
                    type="disposal.execution_started",
                    actor=actor,
                    payload={"list_id": d.id, "reference": d.reference},
                )
        if problems:
            back = "visa_recorded" if d.final_action == "Destroy" else "approved"
            _release(ctx, list_id, token, back_to=back, refusal=(d, actor, problems))
            raise ExecutionRefused(
                f"list {reference} cannot be executed: "
                + "; ".join(f"{p['unit_id']} {p['reason']}" for p in problems[:10]),
                problems=problems,
            )
        with db.transaction(ctx.sessions) as session:
            _heartbeat(session, list_id, token)
            pending = _children_first(
                session,
                [
                    (ln.id, ln.state, ln.unit_id)
                    for ln in disposal.lines_of(session, list_id)
                    if ln.state in PENDING
                ],
            )
            final_action = disposal.get_list(session, list_id).final_action
        for line_id, state in pending:
            with db.transaction(ctx.sessions) as session:
                _heartbeat(session, list_id, token)
                d = disposal.get_list(session, list_id)
                line = session.get(DisposalLine, line_id)
                assert line is not None
                if final_action == "Destroy" and state == "proposed":
                    if _still_destroyable(session, d, line, actor):
                        _destroy_unit(ctx, session, d, line, actor)
                else:
                    _keep_unit(ctx, session, d, line, actor)
        return _finish(ctx, list_id, token, principal)
    except StorageRefused:
        _release(ctx, list_id, token, back_to=None)
        raise
    except ExecutionInProgress:
        raise
    except ExecutionRefused:
        raise
    except BaseException:
        # Anything unexpected: leave the list resumable at once rather than after the lease.
        _release(ctx, list_id, token, back_to=None)
        raise


def _children_first(session: Session, lines: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """Lines ordered deepest units first, so a file is reached after its pieces."""
    units = [u for _, _, u in lines]
    parents = dates.parents_closure(session, units)
    depth: dict[str, int] = {}

    def depth_of(unit: str, seen: frozenset[str] = frozenset()) -> int:
        if unit not in depth:
            ups = [p for p in parents.get(unit, []) if p not in seen]
            depth[unit] = 1 + max((depth_of(p, seen | {unit}) for p in ups), default=-1)
        return depth[unit]

    ordered = sorted(lines, key=lambda item: (-depth_of(item[2]), item[0]))
    return [(line_id, state) for line_id, state, _ in ordered]


def _still_destroyable(session: Session, d: DisposalList, line: DisposalLine, actor: str) -> bool:
    """Checked again just before the unit goes: a hold placed or a rule changed while the
    execution runs, or a child that stays, excludes the line (destroying less than the visa
    allows is lawful; more never is)."""
    reason = None
    children = session.scalars(
        select(ArchiveUnit.status)
        .join(UnitLink, UnitLink.child_id == ArchiveUnit.id)
        .where(UnitLink.parent_id == line.unit_id)
    ).all()
    if dates.held_units(session, [line.unit_id]):
        reason = "Gelé pendant l'exécution"
    elif dates.fingerprint(session, line.unit_id) != line.fingerprint:
        reason = "Règles modifiées pendant l'exécution"
    elif any(status != "destroyed" for status in children):
        # Vitam's NON_DESTROYABLE_HAS_CHILD_UNITS: a file whose pieces stay, stays.
        reason = "Une sous-unité est conservée (exclue, gelée ou hors bordereau)"
    if reason is None:
        return True
    line.state = "excluded"
    line.exclusion_reason = reason
    line.done_at = db.utcnow()
    session.flush()
    append_event(
        session,
        type="disposal.line_excluded",
        actor=actor,
        unit_id=line.unit_id,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "reason": reason,
            "done_at": line.done_at.isoformat(),
        },
    )
    return False


def _objects_to_destroy(session: Session, d: DisposalList, unit: ArchiveUnit) -> list[DataObject]:
    if unit.data_object_group_id is None:
        return []
    sharing = session.scalars(
        select(ArchiveUnit).where(
            ArchiveUnit.data_object_group_id == unit.data_object_group_id,
            ArchiveUnit.id != unit.id,
        )
    ).all()
    on_list = {
        ln.unit_id
        for ln in disposal.lines_of(session, d.id)
        if ln.state in ("proposed", "destroyed")
    }
    if any(u.status != "destroyed" and u.id not in on_list for u in sharing):
        # The group is also described by a unit that stays: its objects stay with it.
        return []
    return list(
        session.scalars(
            select(DataObject).where(
                DataObject.group_id == unit.data_object_group_id,
                DataObject.status != "destroyed",
            )
        )
    )


def _delete_object_copies(ctx: ExecutionContext, session: Session, obj: DataObject) -> list[str]:
    """Delete an object's copies, stopping at the first one that does not go; the offers it
    is gone from (a copy already missing counts: a resumed execution)."""
    copies = copies_of_objects(session, [obj.id])
    outcomes = delete_copies(copies, ctx.offers, stop_at_failure=True)
    for outcome in outcomes:
        if not outcome.configured:
            raise StorageRefused(
                f"offer {outcome.offer!r} holding a copy of {obj.id} is not configured; "
                "nothing more was destroyed",
                object_id=obj.id,
                offer=outcome.offer,
            )
        if outcome.error is not None:
            raise StorageRefused(
                f"offer {outcome.offer!r} refused to delete {obj.id}: {outcome.error.detail}; "
                "nothing more was destroyed, execute again to resume",
                object_id=obj.id,
                offer=outcome.offer,
            ) from outcome.error
    return [outcome.offer for outcome in outcomes]


def _destroy_unit(
    ctx: ExecutionContext, session: Session, d: DisposalList, line: DisposalLine, actor: str
) -> None:
    unit = session.get(ArchiveUnit, line.unit_id)
    assert unit is not None
    now = db.utcnow()
    for obj in _objects_to_destroy(session, d, unit):
        deleted_from = _delete_object_copies(ctx, session, obj)
        event = append_event(
            session,
            type="disposal.object_destroyed",
            actor=actor,
            unit_id=unit.id,
            object_id=obj.id,
            object_digests={obj.id: obj.sha512} if obj.sha512 else {},
            payload={
                "list_id": d.id,
                "reference": d.reference,
                "visa": d.visa_reference,
                "offers": deleted_from,
                "size": obj.size,
                "destroyed_at": now.isoformat(),
            },
        )
        destroy_object(session, unit, obj, d, at=now, leaf_index=event.leaf_index)
    event = append_event(
        session,
        type="disposal.unit_destroyed",
        actor=actor,
        unit_id=unit.id,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "visa": d.visa_reference,
            "title": unit.title,
            "destroyed_at": now.isoformat(),
        },
    )
    destroy_unit(session, unit, line, d, at=now, leaf_index=event.leaf_index)


def destroy_object(
    session: Session,
    unit: ArchiveUnit,
    obj: DataObject,
    d: DisposalList,
    *,
    at: datetime,
    leaf_index: int,
) -> None:
    """The catalogue side of an object whose copies are gone (destroyed, or transferred and
    purged; the live act and its replay): ``destroyed``, no copies, a tombstone naming its
    leaf (flush, no commit)."""
    obj.status = "destroyed"
    session.execute(delete(ObjectCopy).where(ObjectCopy.object_id == obj.id))
    session.add(object_tombstone(unit, obj, d, at=at, leaf_index=leaf_index))
    session.flush()  # a trigger deletes its extracted text (migration 0021_object_text)
    # Its text leaves the search document of the units that stay (the others forget theirs).
    refresh_groups(session, [obj.group_id])


def destroy_unit(
    session: Session,
    unit: ArchiveUnit,
    line: DisposalLine,
    d: DisposalList,
    *,
    at: datetime,
    leaf_index: int,
) -> None:
    """The catalogue side of a destroyed unit (the live act and its replay): ``destroyed``,
    its description forgotten, a tombstone naming its leaf, its line done (flush, no commit)."""
    unit.status = "destroyed"
    # The descriptive metadata goes with the record; the tombstone keeps what proves it existed.
    unit.forget_description()
    session.add(unit_tombstone(unit, d, at=at, leaf_index=leaf_index))
    line.state = "destroyed"
    line.done_at = at
    session.flush()


def _keep_unit(
    ctx: ExecutionContext, session: Session, d: DisposalList, line: DisposalLine, actor: str
) -> None:
    """Permanent keeping: status ``permanent``, copies locked to the far future, access
    re-evaluated."""
    unit = session.get(ArchiveUnit, line.unit_id)
    assert unit is not None
    now = db.utcnow()
    failures = []
    if unit.data_object_group_id is not None:
        copies = copies_of_groups(session, [unit.data_object_group_id], active_only=False)
        failures = [
            f"{o.offer}: not configured" if o.error is None else f"{o.offer}: {o.error.detail}"
            for o in extend_copies(copies, ctx.offers, PERMANENT_RETAIN_UNTIL)
            if not o.ok
        ]
    # The description of its transfer is kept as long as the unit it describes.
    failures += dates.extend_transfer_records(
        session, [unit.transfer_id], ctx.offers, PERMANENT_RETAIN_UNTIL
    )
    keep_unit(session, unit, line, at=now)
    append_event(
        session,
        type="retention.permanent",
        actor=actor,
        unit_id=unit.id,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "sampled": line.state == "sampled",
            "storage_failures": failures,
            # The time of the line and of the unit's recomputed end dates.
            "done_at": now.isoformat(),
        },
    )
    line.state = "kept"
    session.flush()


def keep_unit(session: Session, unit: ArchiveUnit, line: DisposalLine, *, at: datetime) -> None:
    """The catalogue side of permanent keeping (the live act, and its replay): the unit is
    ``permanent``, its end dates recomputed, its line done (flush, no commit; the line's state
    is set by the caller, after the event that reads the state it had)."""
    unit.status = "permanent"
    dates.refresh_units(session, [unit.id], computed_at=at)
    line.done_at = at
    session.flush()


def _principal_for_records(principal: Principal) -> Principal:
    # SAE deposits the documents it produces itself (the ingest events say "system"); the
    # disposal events around them name the archivist who acted.
    return SYSTEM


def _finish(ctx: ExecutionContext, list_id: str, token: str, principal: Principal) -> DisposalList:
    actor = principal.actor
    with db.transaction(ctx.sessions) as session:
        _heartbeat(session, list_id, token)
        d = disposal.get_list(session, list_id)
        lines = disposal.lines_of(session, list_id)
        destroyed = [ln for ln in lines if ln.state == "destroyed"]
        now = db.utcnow()
        notification_ids: list[str] = []
        if d.final_action == "Destroy" and destroyed:
            for producer in sorted({ln.producer for ln in destroyed}):
                xml = seda.write_archive_destruction_notification(
                    seda.ArchiveDestructionNotification(
                        version=seda.SedaVersion("2.2"),
                        message_identifier=f"{d.reference}-ADN-{producer}",
                        date=now.replace(microsecond=0),
                        authorization_request_reply_identifier=d.visa_reference or d.reference,
                        unit_identifiers=[
                            ln.unit_id for ln in destroyed if ln.producer == producer
                        ],
                        archival_agency_identifier=ctx.config.archives_service,
                        originating_agency_identifier=producer,
                        comments=[f"Bordereau d'élimination {d.reference}"],
                        code_list_versions=dict(records.CODE_LISTS),
                    )
                )
                _validate(ctx.settings, xml)
                record = records.archive_record(
                    session,
                    settings=ctx.settings,
                    offers=ctx.strategy,
                    principal=_principal_for_records(principal),
                    archives_service=ctx.config.archives_service,
                    message_id=f"{d.reference}-ADN-{producer}",
                    title=f"Notification d'élimination {d.reference} ({producer})",
                    description=f"SEDA ArchiveDestructionNotification du bordereau {d.reference}"
                    f", visa {d.visa_reference}",
                    filename=f"notification-elimination-{d.reference}-{producer}.xml",
                    data=xml,
                    mime="application/xml",
                )
                notification_ids.append(record.object_id)
        executed = append_event(
            session,
            type="disposal.executed",
            actor=actor,
            payload={
                "list_id": d.id,
                "reference": d.reference,
                "final_action": d.final_action,
                "visa": d.visa_reference,
                "destroyed_units": [ln.unit_id for ln in destroyed],
                "kept_units": [ln.unit_id for ln in lines if ln.state == "kept"],
                "excluded_units": [ln.unit_id for ln in lines if ln.state == "excluded"],
                "notifications": notification_ids,
                "executed_at": now.isoformat(),
            },
        )
        if d.final_action == "Destroy":
            from sae.retention import documents  # see ``parties``

            tombstones = session.scalars(
                select(Tombstone)
                .where(Tombstone.list_id == d.id, Tombstone.kind == "object")
                .order_by(Tombstone.id)
            ).all()
            pdf = documents.certificate_pdf(
                d,
                lines,
                [
                    documents.DestroyedObject(
                        t.unit_id, t.title, t.object_id or "", t.size, t.sha512, t.leaf_index
                    )
                    for t in tombstones
                ],
                ctx.parties,
                executed_at=now,
                executed_by=actor,
                executed_leaf=executed.leaf_index,
                four_eyes=ctx.settings.disposal_four_eyes,
                approved_alone=disposal.same_hands(session, d, d.decided_by or ""),
            )
            record = records.archive_record(
                session,
                settings=ctx.settings,
                offers=ctx.strategy,
                principal=_principal_for_records(principal),
                archives_service=ctx.config.archives_service,
                message_id=f"{d.reference}-CERTIFICAT",
                title=f"Certificat de destruction {d.reference}",
                description=f"Certificat de destruction du bordereau {d.reference}, "
                f"visa {d.visa_reference}",
                filename=f"certificat-destruction-{d.reference}.pdf",
                data=pdf,
                mime="application/pdf",
            )
            d.certificate_object_id = record.object_id
            # The certificate names the leaf above, so it is archived after it: this leaf says
            # which record it became (a rebuild sets the list's certificate from it).
            append_event(
                session,
                type="disposal.certificate_archived",
                actor=actor,
                transfer_id=record.transfer_id,
                unit_id=record.unit_id,
                object_id=record.object_id,
                object_digests={record.object_id: record.sha512},
                payload={"list_id": d.id, "reference": d.reference},
            )
        d.notification_object_ids = notification_ids
        d.state = "executed"
        d.executed_at = now
        d.executed_by = actor
        d.execution_token = None
        session.flush()
        return d


def _validate(settings: Settings, xml: bytes) -> None:
    """Check the notification against the official XSD when the service has it."""
    xsd_dir = settings.seda_xsd_dir
    if xsd_dir is None or not Path(xsd_dir).is_dir():
        return
    faults = seda.XsdValidator(xsd_dir).validate(seda.safe_parse(xml), "2.2")
    if faults:
        raise records.RecordNotArchived(
            "the destruction notification is not valid SEDA 2.2: "
            + "; ".join(f.message for f in faults[:5])
        )
