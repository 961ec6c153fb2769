"""HTTP routes of retention: the referential, holds, and the disposal circuit."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from sae.auth.deps import PrincipalDep, require_role
from sae.auth.service import Principal
from sae.deps import RuntimeDep, SessionDep
from sae.downloads import attachment
from sae.errors import BadRequest, NotFound, PayloadTooLarge
from sae.retention import (
    dates,
    disposal,
    execution,
    holds,
    outgoing,
    referential,
)
from sae.retention.config import retention_settings
from sae.retention.errors import DurationBelowMinimum
from sae.retention.models import DisposalList
from sae.retention.schemas import (
    DecisionIn,
    DisposalLineOut,
    DisposalListIn,
    DisposalListOut,
    DueListsIn,
    HoldCreated,
    HoldIn,
    HoldOut,
    ImportSummary,
    OutgoingTransferIn,
    OutgoingTransferOut,
    RuleOut,
)
from sae.retention.visa import MAX_VISA_BYTES, record_visa_with_document
from sae.runtime import Runtime

router = APIRouter(tags=["rules"])
disposal_router = APIRouter(tags=["disposal"])

MAX_REFERENTIAL_BYTES = 5 * 1024 * 1024

Archivist = Annotated[Principal, Depends(require_role("archivist"))]
Reader = Annotated[Principal, Depends(require_role("archivist", "auditor"))]


@router.get("/rules", response_model=list[RuleOut])
def list_rules(session: SessionDep, principal: PrincipalDep, request: Request) -> Response:
    """The referential as JSON, as Vitam CSV with ``Accept: text/csv``, as YAML with
    ``Accept: application/yaml``."""
    rules = referential.list_rules(session)
    accept = request.headers.get("accept", "")
    if "text/csv" in accept:
        return Response(referential.export_csv(rules), media_type="text/csv; charset=utf-8")
    if "yaml" in accept:
        return Response(referential.export_yaml(rules), media_type="application/yaml")
    body = [
        RuleOut(
            id=r.id,
            type=r.type,
            value=r.value,
            description=r.description,
            duration=r.duration,
            measurement=r.measurement,
            updated_at=r.updated_at,
            meta=r.meta,
        ).model_dump(mode="json")
        for r in rules
    ]
    return Response(json.dumps(body), media_type="application/json")


@router.put(
    "/rules",
    response_model=ImportSummary,
    responses={
        200: {
            "description": "The import's summary; with ``dry_run=true``, the preview instead "
            "(``added``, ``changed``, ``removed``, ``refusals``, ``units_changed``, ``sample``)."
        }
    },
)
async def put_rules(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Archivist,
    dry_run: bool = False,
) -> Response | ImportSummary:
    """Replace the referential (Vitam CSV ``text/csv`` or YAML ``application/yaml``).

    The import replaces the referential as a whole; it is refused if a rule still used by an
    archive unit would disappear, or if a duration is below the configured minimum of its
    category (that refusal is journaled as an alert). Units using a changed rule get their end
    dates recomputed. Every problem of the file is listed.

    ``dry_run=true``: nothing is written or journaled; the answer is the preview of
    ``referential.preview_import`` (rules added, changed, removed, the refusals the import would
    meet, the units whose end dates would change: their count and a sample).
    """
    body = await request.body()
    if len(body) > MAX_REFERENTIAL_BYTES:
        raise BadRequest(f"the referential is over {MAX_REFERENTIAL_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the referential must be UTF-8") from None
    specs = referential.parse(text, request.headers.get("content-type", ""))
    if dry_run:
        preview = await run_in_threadpool(referential.preview_import, session, specs)
        return Response(json.dumps(preview.as_dict()), media_type="application/json")
    try:
        summary = referential.import_rules(
            session, specs, actor=principal, offers=runtime.offer_set.offers
        )
    except DurationBelowMinimum:
        session.commit()  # the alert must outlive the refusal
        raise
    session.commit()
    return ImportSummary(**summary)


# --- holds -------------------------------------------------------------------------------------


def _hold_out(session: Session, hold_id: str) -> HoldOut:
    found = [h for h in holds.list_holds(session) if h.id == hold_id]
    hold = found[0]
    today = dates.today()
    return HoldOut(
        id=hold.id,
        reason=hold.reason,
        owner=hold.owner,
        until=hold.until,
        created_at=hold.created_at,
        lifted_at=hold.lifted_at,
        lifted_by=hold.lifted_by,
        unit_ids=holds.units_of_hold(session, hold.id),
        active=hold.lifted_at is None and (hold.until is None or hold.until >= today),
    )


@disposal_router.post("/holds", status_code=201, response_model=HoldCreated)
def post_hold(
    body: HoldIn, session: SessionDep, runtime: RuntimeDep, principal: Archivist
) -> HoldCreated:
    """Put units (and their descendants) under a legal hold: never proposed, never destroyed."""
    hold = holds.place_hold(
        session,
        body.unit_ids,
        reason=body.reason,
        owner=body.owner or principal.actor,
        until=body.until,
        actor=principal.actor,
        offers=runtime.offer_set.offers,
    )
    session.commit()
    return HoldCreated(id=hold.id)


@disposal_router.get("/holds", response_model=list[HoldOut])
def get_holds(session: SessionDep, principal: Reader, active: bool = False) -> list[HoldOut]:
    """Holds, newest first (``active=true``: only those in force)."""
    return [_hold_out(session, h.id) for h in holds.list_holds(session, active_only=active)]


@disposal_router.get("/holds/{hold_id}", response_model=HoldOut)
def get_hold(hold_id: str, session: SessionDep, principal: Reader) -> HoldOut:
    """One hold."""
    holds_found = [h for h in holds.list_holds(session) if h.id == hold_id]
    if not holds_found:
        raise NotFound(f"no hold {hold_id}")
    return _hold_out(session, hold_id)


@disposal_router.delete("/holds/{hold_id}", response_model=HoldOut)
def delete_hold(
    hold_id: str, session: SessionDep, runtime: RuntimeDep, principal: Archivist
) -> HoldOut:
    """Lift a hold (kept in the history, journaled ``hold.lifted``)."""
    holds.lift_hold(session, hold_id, actor=principal.actor, offers=runtime.offer_set.offers)
    session.commit()
    return _hold_out(session, hold_id)


# --- disposal lists ----------------------------------------------------------------------------


def _list_out(session: Session, d: DisposalList) -> DisposalListOut:
    lines = disposal.lines_of(session, d.id)
    return DisposalListOut(
        id=d.id,
        reference=d.reference,
        state=d.state,
        final_action=d.final_action,
        producer=d.producer,
        due_before=d.due_before,
        units=[ln.unit_id for ln in lines],
        created_at=d.created_at,
        created_by=d.created_by,
        decided_at=d.decided_at,
        decided_by=d.decided_by,
        decision_comment=d.decision_comment,
        visa_reference=d.visa_reference,
        visa_decision_date=d.visa_decision_date,
        visa_object_id=d.visa_object_id,
        executed_at=d.executed_at,
        executed_by=d.executed_by,
        certificate_object_id=d.certificate_object_id,
        notification_object_ids=list(d.notification_object_ids or []),
        lines=[
            DisposalLineOut(
                unit_id=ln.unit_id,
                state=ln.state,
                producer=ln.producer,
                title=ln.title,
                date_start=ln.date_start,
                date_end=ln.date_end,
                bytes=ln.bytes,
                object_count=ln.object_count,
                rule_ids=list(ln.rule_ids),
                dua=ln.dua,
                legal_reference=ln.legal_reference,
                appraisal_end=ln.appraisal_end,
                sampling_note=ln.sampling_note,
                exclusion_reason=ln.exclusion_reason,
            )
            for ln in lines
        ],
        bordereau_url=f"/api/v1/disposal-lists/{d.id}/bordereau",
        certificate_url=(
            f"/api/v1/disposal-lists/{d.id}/certificate" if d.certificate_object_id else None
        ),
    )


@disposal_router.post("/disposal-lists", status_code=201, response_model=DisposalListOut)
def post_disposal_list(
    body: DisposalListIn, session: SessionDep, principal: Archivist
) -> DisposalListOut:
    """Build a draft list from the due, unheld units with this final action (``Destroy``: a
    bordereau d'élimination; ``Keep``: permanent keeping). An empty selection still makes an
    (empty) list."""
    d = disposal.build_list(
        session,
        final_action=body.final_action,
        producer=body.producer,
        due_before=body.due_before,
        actor=principal.actor,
    )
    session.commit()
    return _list_out(session, d)


@disposal_router.post("/disposal-lists/due", status_code=201, response_model=list[DisposalListOut])
def post_due_lists(
    body: DueListsIn, session: SessionDep, principal: Archivist
) -> list[DisposalListOut]:
    """Build every list that is due: one draft list per producing service with due, unheld
    units, for the final action given or both (what ``sae retention run`` does). An empty
    answer means nothing is due."""
    made = disposal.build_due_lists(
        session,
        actor=principal.actor,
        final_actions=disposal.FINAL_ACTIONS if body.final_action is None else [body.final_action],
        producer=body.producer,
        due_before=body.due_before,
    )
    session.commit()
    return [_list_out(session, d) for d in made]


@disposal_router.get("/disposal-lists", response_model=list[DisposalListOut])
def get_disposal_lists(
    session: SessionDep, principal: Reader, state: str | None = None
) -> list[DisposalListOut]:
    """Lists, newest first."""
    return [_list_out(session, d) for d in disposal.list_lists(session, state=state)]


@disposal_router.get("/disposal-lists/{list_id}", response_model=DisposalListOut)
def get_disposal_list(list_id: str, session: SessionDep, principal: Reader) -> DisposalListOut:
    """A list with its lines, state and decisions."""
    return _list_out(session, disposal.get_list(session, list_id))


@disposal_router.post("/disposal-lists/{list_id}/submit", response_model=DisposalListOut)
def submit_list(
    list_id: str, body: DecisionIn, session: SessionDep, principal: Archivist
) -> DisposalListOut:
    """Draft → submitted (sent to the producing service for review)."""
    d = disposal.get_list(session, list_id, for_update=True)
    disposal.submit(session, d, actor=principal.actor, comment=body.comment)
    session.commit()
    return _list_out(session, d)


@disposal_router.post("/disposal-lists/{list_id}/approve", response_model=DisposalListOut)
def approve_list(
    list_id: str, body: DecisionIn, session: SessionDep, principal: Archivist, runtime: RuntimeDep
) -> DisposalListOut:
    """The archivist approves the list (its units' rules and holds are fingerprinted). A
    destruction list is not approved by the one who built or submitted it (409
    ``disposal.four_eyes``; ``SAE_DISPOSAL_FOUR_EYES``)."""
    d = disposal.get_list(session, list_id, for_update=True)
    disposal.approve(
        session,
        d,
        actor=principal.actor,
        comment=body.comment,
        four_eyes=runtime.settings.disposal_four_eyes,
    )
    session.commit()
    return _list_out(session, d)


@disposal_router.post("/disposal-lists/{list_id}/reject", response_model=DisposalListOut)
def reject_list(
    list_id: str, body: DecisionIn, session: SessionDep, principal: Archivist
) -> DisposalListOut:
    """Reject the list, with a reason; its units become free for a later list."""
    d = disposal.get_list(session, list_id, for_update=True)
    disposal.reject(session, d, actor=principal.actor, comment=body.comment)
    session.commit()
    return _list_out(session, d)


@disposal_router.post("/disposal-lists/{list_id}/visa", response_model=DisposalListOut)
def visa_list(
    list_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Archivist,
    document: Annotated[UploadFile, File(description="The signed visa (PDF).")],
    reference: Annotated[str, Form(description="The decision's reference.")],
    decision_date: Annotated[date, Form(description="Date of the decision (ISO).")],
    excluded: Annotated[list[str] | None, Form(description="Unit ids refused by the visa.")] = None,
) -> DisposalListOut:
    """Record the departmental archives' visa: the signed document is archived as a record of
    the archives service; lines the visa refuses are excluded."""
    d = record_visa_with_document(
        session,
        settings=runtime.settings,
        offers=runtime.strategy_offers,
        actor=principal.actor,
        list_id=list_id,
        reference=reference,
        decision_date=decision_date,
        excluded=excluded or [],
        document=document.file.read(MAX_VISA_BYTES + 1),
    )
    session.commit()
    return _list_out(session, d)


def _context(runtime: Runtime) -> execution.ExecutionContext:
    return execution.ExecutionContext(
        sessions=runtime.sessions,
        settings=runtime.settings,
        offers=runtime.offer_set.offers,
        strategy=runtime.strategy_offers,
    )


@disposal_router.post("/disposal-lists/{list_id}/execute", response_model=DisposalListOut)
async def execute(list_id: str, runtime: RuntimeDep, principal: Archivist) -> DisposalListOut:
    """Execute the list: destroy every copy of every accepted unit's objects (tombstones,
    SEDA destruction notification, certificate), or keep the units permanently. Refused (409)
    unless approved and visa'd, or when a unit became held or changed. Idempotent; resumes an
    interrupted execution."""
    d = await run_in_threadpool(execution.execute_list, _context(runtime), list_id, principal)
    with runtime.sessions() as session:
        return _list_out(session, disposal.get_list(session, d.id))


@disposal_router.post(
    "/disposal-lists/{list_id}/outgoing-transfer",
    status_code=201,
    response_model=OutgoingTransferOut,
)
def post_outgoing_transfer(
    list_id: str,
    body: OutgoingTransferIn,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Archivist,
) -> OutgoingTransferOut:
    """Build the outgoing SEDA ArchiveTransfer (zip) of an executed permanent-keeping list, for
    another archive (e.g. the departmental archives). Nothing is purged before its reply."""
    d = disposal.get_list(session, list_id, for_update=True)
    outgoing.build_outgoing_sip(
        session,
        d,
        settings=runtime.settings,
        offers=runtime.offer_set.offers,
        archival_agency=body.archival_agency,
        config=retention_settings(),
        actor=principal.actor,
    )
    session.commit()
    return OutgoingTransferOut(list_id=d.id, **(d.outgoing_transfer or {}))


@disposal_router.get("/disposal-lists/{list_id}/outgoing-transfer")
def get_outgoing_transfer(
    list_id: str, session: SessionDep, runtime: RuntimeDep, principal: Reader
) -> FileResponse:
    """The outgoing SIP (zip: ``manifest.xml`` + ``Content/…``) to send to the other archive."""
    d = disposal.get_list(session, list_id)
    path = outgoing.outgoing_sip(
        session,
        d,
        settings=runtime.settings,
        offers=runtime.offer_set.offers,
        config=retention_settings(),
    )
    return FileResponse(path, media_type="application/zip", filename=f"versement-{d.reference}.zip")


@disposal_router.post(
    "/disposal-lists/{list_id}/outgoing-transfer/reply", response_model=OutgoingTransferOut
)
async def post_outgoing_reply(
    list_id: str, request: Request, runtime: RuntimeDep, principal: Archivist
) -> OutgoingTransferOut:
    """Record the other archive's ArchiveTransferReply (XML body). OK: the reply is archived
    and the local copies are purged where their locks allow (those still locked are listed;
    call again later). KO: nothing is purged."""
    body = await request.body()
    if len(body) > MAX_REFERENTIAL_BYTES:
        raise PayloadTooLarge(f"the reply is over {MAX_REFERENTIAL_BYTES} bytes")

    def work() -> OutgoingTransferOut:
        with runtime.sessions() as session:
            d = disposal.get_list(session, list_id, for_update=True)
            result = outgoing.acknowledge(
                session,
                d,
                body,
                settings=runtime.settings,
                offers=runtime.offer_set.offers,
                strategy=runtime.strategy_offers,
                config=retention_settings(),
                actor=principal.actor,
            )
            session.commit()
            return OutgoingTransferOut(
                list_id=d.id, **{**(d.outgoing_transfer or {}), "purged": result["purged"]}
            )

    return await run_in_threadpool(work)


@disposal_router.get("/disposal-lists/{list_id}/bordereau")
def bordereau(
    list_id: str, session: SessionDep, principal: Reader, format: str = "pdf"
) -> Response:
    """The bordereau, ``format=pdf`` (default) or ``format=csv``."""
    content, media_type, filename = disposal.bordereau_document(
        session, disposal.get_list(session, list_id), format
    )
    return attachment(content, media_type, filename)


@disposal_router.get("/disposal-lists/{list_id}/certificate")
def certificate(
    list_id: str, session: SessionDep, runtime: RuntimeDep, principal: Reader
) -> Response:
    """The destruction certificate (PDF), as archived (the read is journaled)."""
    data, filename = disposal.read_certificate(
        session,
        runtime.offer_set.offers,
        disposal.get_list(session, list_id),
        actor=principal.actor,
    )
    session.commit()
    return attachment(data, "application/pdf", filename)
