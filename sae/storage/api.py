"""HTTP routes of the storage domain: fixity audits."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, BackgroundTasks, Depends

from sae.auth.deps import require_role
from sae.auth.service import Principal
from sae.deps import RuntimeDep, SessionDep
from sae.storage.audit import create_audit, get_audit, run_audit
from sae.storage.schemas import AuditCreated, AuditOut, AuditProblemOut, AuditRequest

router = APIRouter(tags=["audits"])

AuditorDep = Annotated[Principal, Depends(require_role("auditor", "archivist"))]


@router.post("/audits", status_code=202, response_model=AuditCreated)
def request_audit(
    body: AuditRequest,
    background: BackgroundTasks,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: AuditorDep,
) -> AuditCreated:
    """Start a fixity audit of every copy (or of ``offers``, or a ``sample_rate`` share).

    Answers 202 at once; the audit runs in the background (any SAE instance may take it up)
    and ``GET /api/v1/audits/{id}`` says how far it got and what it found.
    """
    audit = create_audit(
        session,
        runtime.offer_set,
        offers=body.offers,
        sample_rate=body.sample_rate,
        repair=body.repair,
        requested_by=principal.actor,
    )
    session.commit()
    background.add_task(run_audit, runtime.sessions, runtime.offer_set, audit.id)
    return AuditCreated(id=audit.id, url=f"/api/v1/audits/{audit.id}")


@router.get("/audits/{audit_id}", response_model=AuditOut)
def read_audit(audit_id: str, session: SessionDep, principal: AuditorDep) -> AuditOut:
    """Status, number of copies checked, and every problem found (with repair outcome)."""
    audit, problems = get_audit(session, audit_id)
    return AuditOut(
        id=audit.id,
        status=cast(Literal["running", "done", "failed"], audit.status),
        checked=audit.checked,
        problems=[
            AuditProblemOut(
                object_id=p.object_id,
                offer=p.offer,
                kind=cast(Literal["missing", "corrupt"], p.kind),
                repaired=p.repaired,
                key=p.key,
                detail=p.detail,
            )
            for p in problems
        ],
        unreachable=audit.unreachable,
        offers=audit.offers,
        sample_rate=audit.sample_rate,
        created_at=audit.created_at,
        finished_at=audit.finished_at,
        error=audit.error,
    )
