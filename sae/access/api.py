"""HTTP route serving an object's bytes."""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from sae.access import derogations, register
from sae.access.models import Derogation
from sae.access.reading import open_for_reading
from sae.access.schemas import (
    CommunicationOut,
    CommunicationPage,
    DerogationIn,
    DerogationOut,
    GrantIn,
    RefuseIn,
)
from sae.auth.deps import PrincipalDep, require_role
from sae.auth.service import Principal
from sae.db import utcnow
from sae.deps import RuntimeDep, SessionDep
from sae.downloads import download_headers

router = APIRouter(tags=["access"])


@router.get(
    "/objects/{object_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes."}},
)
async def get_content(
    object_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> StreamingResponse:
    """The object's bytes, streamed from the first healthy copy, SHA-512 checked on the way.

    ``Repr-Digest`` (RFC 9530) and ``Digest`` carry the SHA-512. A mismatch found at the end
    of a large stream aborts the response (the client sees a truncated transfer, never a
    complete damaged file) and is journaled as ``integrity.failed``.
    """
    stream = await run_in_threadpool(
        open_for_reading,
        runtime.sessions,
        runtime.offer_set.offers,
        principal,
        object_id,
    )
    obj = stream.obj
    assert obj.sha512 is not None
    b64 = base64.b64encode(bytes.fromhex(obj.sha512)).decode()
    headers = download_headers(
        obj.filename or obj.sip_id,
        {
            "Repr-Digest": f"sha-512=:{b64}:",
            "Digest": f"sha-512={b64}",
            "Content-Length": str(obj.size),
        },
    )
    return StreamingResponse(
        iter(stream), media_type=obj.mime_type or "application/octet-stream", headers=headers
    )


@router.get(
    "/units/{unit_id}/dip",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The DIP (zip)."}},
)
async def get_dip(unit_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> FileResponse:
    """The DIP of a unit: a SEDA ArchiveDeliveryRequestReply manifest (each unit's Content as
    received), the objects of the unit and its descendants (SHA-512 checked while copied), and
    a proof bundle per object under ``proofs/``. Journaled as ``access.dip_exported``.
    """
    from sae.access.dip import build_dip

    dip = await run_in_threadpool(
        build_dip,
        runtime.sessions,
        runtime.settings,
        runtime.offer_set.offers,
        principal,
        unit_id,
    )
    return FileResponse(
        dip.path,
        media_type="application/zip",
        filename=f"dip-{unit_id}.zip",
        background=BackgroundTask(dip.path.unlink, missing_ok=True),
    )


# --- dérogations (L213-3) ----------------------------------------------------------------------

Requester = Annotated[Principal, Depends(require_role("reader", "depositor"))]
Archivist = Annotated[Principal, Depends(require_role("archivist"))]


def _out(d: Derogation) -> DerogationOut:
    return DerogationOut(
        id=d.id,
        user_id=d.user_id,
        login=d.login,
        units=list(d.units),
        purpose=d.purpose,
        state=d.state,
        requested_at=d.requested_at,
        requested_by=d.requested_by,
        decided_at=d.decided_at,
        decided_by=d.decided_by,
        until=d.until,
        reference=d.reference,
        reason=d.reason,
        url=f"/api/v1/derogations/{d.id}",
    )


@router.post("/derogations", response_model=DerogationOut, status_code=201)
def request_derogation(
    body: DerogationIn, session: SessionDep, principal: Requester
) -> DerogationOut:
    """A reader asks to consult units before their access delay ends (Code du patrimoine
    L213-3), saying what for. The units are not checked here (that would tell which exist);
    the archivist grants or refuses."""
    d = derogations.request(session, principal, unit_ids=body.units, purpose=body.purpose)
    session.commit()
    return _out(d)


@router.get("/derogations", response_model=list[DerogationOut])
def list_derogations(
    session: SessionDep,
    principal: PrincipalDep,
    state: Annotated[str | None, Query(max_length=16)] = None,
    login: Annotated[str | None, Query(max_length=255)] = None,
) -> list[DerogationOut]:
    """Dérogations, the newest first: all for archivists and auditors, a reader's own."""
    found = derogations.list_derogations(session, principal, state=state, login=login)
    return [_out(d) for d in found]


@router.get("/derogations/{derogation_id}", response_model=DerogationOut)
def get_derogation(
    derogation_id: str, session: SessionDep, principal: PrincipalDep
) -> DerogationOut:
    return _out(derogations.get(session, principal, derogation_id))


@router.post("/derogations/{derogation_id}/grant", response_model=DerogationOut)
def grant_derogation(
    derogation_id: str, body: GrantIn, session: SessionDep, principal: Archivist
) -> DerogationOut:
    """Grant: the units are open to that reader through ``until`` (inclusive), under the
    authorisation ``reference``. Every unit must exist (422 naming those that do not)."""
    d = derogations.get(session, principal, derogation_id)
    derogations.grant(session, d, actor=principal.actor, until=body.until, reference=body.reference)
    session.commit()
    return _out(d)


@router.post("/derogations/{derogation_id}/refuse", response_model=DerogationOut)
def refuse_derogation(
    derogation_id: str, body: RefuseIn, session: SessionDep, principal: Archivist
) -> DerogationOut:
    """Refuse, with the reason."""
    d = derogations.get(session, principal, derogation_id)
    derogations.refuse(session, d, actor=principal.actor, reason=body.reason)
    session.commit()
    return _out(d)


# --- the register of communications ------------------------------------------------------------

Registrar = Annotated[Principal, Depends(require_role("archivist", "auditor"))]


def _register_query(
    login: Annotated[str | None, Query(max_length=255, description="The reader's login")] = None,
    unit: Annotated[str | None, Query(max_length=36, description="A unit id")] = None,
    date_from: Annotated[date | None, Query(alias="from", description="First day (UTC)")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last day (UTC)")] = None,
    basis: Annotated[
        str | None, Query(max_length=16, description="law, derogation or producer")
    ] = None,
    kind: Annotated[
        str | None, Query(max_length=16, description="metadata, content or dip")
    ] = None,
) -> register.RegisterQuery:
    return register.RegisterQuery(
        login=login or None,
        unit_id=unit or None,
        date_from=date_from,
        date_to=date_to,
        basis=basis or None,
        kind=kind or None,
    )


RegisterQueryDep = Annotated[register.RegisterQuery, Depends(_register_query)]


def _communication(e: register.Entry) -> CommunicationOut:
    r = e.row
    return CommunicationOut(
        at=r.at,
        login=r.login,
        user_id=r.user_id,
        role=r.role,
        unit_id=r.unit_id,
        title=e.title,
        kind=r.kind,
        object_id=r.object_id,
        basis=r.basis,
        derogation_id=r.derogation_id,
        via=r.via,
        leaf=r.leaf,
    )


@router.get("/communications", response_model=CommunicationPage)
def list_communications(
    session: SessionDep,
    principal: Registrar,
    query: RegisterQueryDep,
    limit: Annotated[int, Query(ge=1, le=register.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> CommunicationPage:
    """The register of communications (units communicated to readers and depositors, with the
    basis of each), the newest first; ``next_cursor`` gives the following page."""
    entries, next_cursor = register.list_page(session, query, limit=limit, cursor=cursor)
    return CommunicationPage(items=[_communication(e) for e in entries], next_cursor=next_cursor)


@router.get(
    "/communications/export",
    responses={
        200: {
            "content": {"text/csv": {}, "application/pdf": {}},
            "description": "The register, as CSV or as the annual report's PDF (French).",
        }
    },
)
def export_communications(
    session: SessionDep,
    principal: Registrar,
    query: RegisterQueryDep,
    format: Annotated[str, Query(pattern="^(csv|pdf)$")] = "csv",
) -> Response:
    """The register filtered as ``GET /communications``, every entry, the oldest first: CSV
    (UTF-8), or a French PDF for the annual report (counts by basis, kind and month, then the
    list)."""
    entries = list(register.all_entries(session, query))
    if format == "pdf":
        body = register.pdf(
            entries,
            query,
            archives_service_name=register.service_name(),
            created=utcnow(),
        )
        return Response(
            body,
            media_type="application/pdf",
            headers=download_headers("registre-communications.pdf", {}),
        )
    return Response(
        "".join(register.csv_lines(entries)),
        media_type="text/csv; charset=utf-8",
        headers=download_headers("registre-communications.csv", {}),
    )
